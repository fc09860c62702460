"""The container: the Dockerfile's structure, and whether the image it builds can serve.

No Docker engine runs where mlpipe's gates run, so `dockerfile_serves` does the honest
substitute: it assembles the image's files in a scratch folder as `docker build` would with the
workspace root as the build context (`dockerfile_build`), then runs the image's ENTRYPOINT/CMD
from its WORKDIR with its ENV, `python`/`uvicorn`/`gunicorn` mapped to the workspace's
interpreter and the port (from the command, else EXPOSE) rewritten to a free one on 127.0.0.1;
/health must answer and /predict must agree with the saved model; the HEALTHCHECK command must
succeed while the API is up and fail once it is down; the packages the image's `pip install`
lines bring in must cover what the API imports and the packages the model's pickle names.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.dockerfile_build import BuildError, Image, assemble
from mlpipe_flow.checks.image_run import (
    ANY_HOST,
    ARRAYS,
    Runner,
    api_imports,
    app_module,
    bind_host,
    command,
    deps_probe,
    healthcheck,
    import_roots,
    listen_port,
    pip_requirements,
    show,
    stage_at,
)
from mlpipe_flow.checks.manifest_checks import pinned
from mlpipe_flow.models import CheckResult

DOWNLOADERS = ("curl", "wget")
INSTALL = re.compile(r"\b(?:apt-get|apt|apk|yum|dnf|microdnf)\b[^&;|]*\b(?:install|add)\b([^&;|]*)")


class DockerfileParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "deployment/docker/Dockerfile"
    max_image_mb: float = Field(default=1500, gt=0, description="files copied into the image")

    def describe(self) -> str:
        return (f"{build_rule(self.path, self.max_image_mb)}. Its final stage must use a slim "
                "base image (`slim`, `alpine` or `distroless` in its name) and every base image "
                "must be pinned (a version tag with a digit, not `latest`, or a digest); a "
                "non-root `USER`; `EXPOSE` of the port the command listens on; a `HEALTHCHECK` "
                "whose program the image has (`curl` or `wget` only if a RUN step installs it); "
                "a CMD or ENTRYPOINT, whose uvicorn/gunicorn server binds `0.0.0.0`; and every "
                "file a `pip install -r` names must be copied into the image.")


def build_rule(path: str, max_image_mb: float) -> str:
    """How the gate builds the image without a Docker engine (`dockerfile_build.assemble`)."""
    return (f"no Docker engine runs where the gate runs: it assembles the image's files in a "
            f"scratch folder as `docker build -f {path} .` would, the build context being the "
            "workspace root: every COPY/ADD source must exist there, `.dockerignore` is "
            "honoured, RUN steps are not executed (except `mkdir`), and the files copied may not "
            f"exceed {max_image_mb:,g} MB")


def _installs(stage_runs: list[str], tool: str) -> bool:
    return any(re.search(rf"\b{tool}\b", m.group(1)) for cmd in stage_runs
               for m in INSTALL.finditer(cmd))


def _assembled(ctx: CheckContext, rel: str, max_mb: float, prefix: str = "") -> Image | CheckResult:
    """The image's files assembled in the check's scratch folder, or the failed result."""
    p = ctx.workspace / rel
    if not p.is_file():
        return result("failed", f"{rel} does not exist")
    assert ctx.scratch is not None
    try:
        return assemble(p, ctx.workspace, Path(tempfile.mkdtemp(prefix="image-", dir=ctx.scratch)),
                        int(max_mb * 10**6))
    except BuildError as e:
        return result("failed", f"{prefix}docker build would fail: {e}")


def dockerfile(ctx: CheckContext, params: DockerfileParams) -> CheckResult:
    """Structure, and a build of the image's files: pinned slim base, non-root USER, EXPOSE, a
    HEALTHCHECK whose program is in the image, a server bound to all interfaces, every COPY/ADD
    source in the build context (the workspace root), every `pip install -r` file in the image."""
    image = _assembled(ctx, params.path, params.max_image_mb, f"{params.path}: ")
    if isinstance(image, CheckResult):
        return image
    final = image.final
    problems = []
    names = {s.name for s in image.stages if s.name}
    bases = [s.base for s in image.stages]
    for base in bases:
        if base.lower() not in names and base != "scratch" and not pinned(base):
            problems.append(f"base image {base} is not pinned to a version")
    if not any(w in final.base for w in ("slim", "distroless", "alpine")):
        problems.append(f"final base image {final.base} is not a slim image")
    user = (final.user or "root").split(":")[0]
    if user in ("root", "0"):
        problems.append(f"the container runs as root (last USER: {final.user or 'none'})")
    if final.healthcheck is None:
        problems.append("no HEALTHCHECK" + (" (HEALTHCHECK NONE)" if final.healthcheck_none else ""))
    else:
        hc = final.healthcheck[1]
        first = (hc[0] if isinstance(hc, list) and hc else str(hc).split()[0] if str(hc).split()
                 else "").rsplit("/", 1)[-1]
        runs = [cmd for s in image.stages for _, cmd in s.runs]
        slim = any(w in final.base for w in ("slim", "distroless"))
        if first in DOWNLOADERS and (slim or "python" in final.base) and not _installs(runs, first):
            problems.append(f"the HEALTHCHECK runs {first}, which {final.base} does not have and "
                            f"no RUN step installs")
    argv = command(final)
    if not final.expose:
        problems.append("no EXPOSE")
    elif argv and listen_port(argv, ["?"]) not in [*final.expose, "?"]:
        problems.append(f"the command listens on port {listen_port(argv, ['?'])}, EXPOSE says "
                        f"{', '.join(final.expose)}")
    host = bind_host(argv) if argv else None
    if not argv:
        problems.append("no CMD or ENTRYPOINT")
    elif host is not None and host not in ANY_HOST:
        problems.append(f"the server binds {host}: unreachable from outside the container "
                        f"(bind 0.0.0.0)")
    for workdir, cmd in (r for s in image.stages for r in s.runs):
        for req in re.findall(r"pip3?\s+install\b[^&;|]*?(?:-r|--requirement)[ =]+(\S+)", cmd):
            st = next(s for s in image.stages if (workdir, cmd) in s.runs)
            if not image.host(req, stage_at(st, workdir)).is_file():
                problems.append(f"RUN pip install -r {req}: the file is not in the image")
    ev = {"base_images": bases, "user": user, "expose": final.expose,
          "healthcheck": show(final.healthcheck[1]) if final.healthcheck else None,
          "command": argv, "copied": image.copied[:20], "notes": image.notes}
    if problems:
        return result("failed", f"{params.path}: {'; '.join(problems)}", **ev, problems=problems)
    return result("passed", f"{params.path}: base {final.base}, user {user}, healthcheck set; "
                  f"{len(image.copied)} COPY source(s) found in the build context", **ev)


class DockerfileServesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "deployment/docker/Dockerfile"
    model: str = "artifacts/model.joblib"
    rows: int = Field(default=10, ge=1, description="test rows (and as many perturbed) predicted")
    tol: float = Field(default=1e-4, ge=0)
    startup_s: float = Field(default=60, gt=0)
    healthcheck_timeout_s: float = Field(default=10, gt=0)
    max_image_mb: float = Field(default=1500, gt=0, description="files copied into the image")

    def describe(self) -> str:
        return (f"{build_rule(self.path, self.max_image_mb)}. It then runs the image's "
                "ENTRYPOINT/CMD from its WORKDIR with its ENV, `python`/`uvicorn`/`gunicorn` "
                "mapped to the workspace's interpreter and the container's port (from "
                "`--port`/`--bind`, else EXPOSE) moved to a free one on 127.0.0.1. Within "
                f"{self.startup_s:g} s `/health` must answer 200 with a JSON object, and "
                f"`/predict` on {self.rows} test rows and a perturbed copy of each must agree "
                f"with the saved `{self.model}` (equal labels, probabilities or predictions "
                f"within {self.tol:g}), using only the image's files. The HEALTHCHECK command "
                "must exit 0 while the API is up and fail once it is down (each run given "
                f"{self.healthcheck_timeout_s:g} s, or its own --timeout if shorter). The "
                "packages the image's `pip install` lines bring in (with their dependencies) "
                "must provide every third-party module the API's code imports and every "
                "package the model's pickle names, and pin the model's own packages (all "
                f"but {', '.join(sorted(ARRAYS))}) with `==` to the versions installed in the "
                "workspace, which trained it.")


def dockerfile_serves(ctx: CheckContext, params: DockerfileServesParams) -> CheckResult:
    from mlpipe_flow.checks import api_probe
    from mlpipe_flow.checks.serving import http
    from mlpipe_flow.checks.serving_checks import _compare, _probabilities, label

    image = _assembled(ctx, params.path, params.max_image_mb)
    if isinstance(image, CheckResult):
        return image
    assert ctx.scratch is not None
    form = command(image.final)
    if not form:
        return result("failed", f"{params.path} has no CMD or ENTRYPOINT")
    port = listen_port(form, image.final.expose)
    runner = Runner(ctx, image, port, proc.free_port())
    argv = runner.argv(form)
    ev: dict[str, Any] = {
        "engine": "none: no Docker engine here; the image's files were assembled from the build "
                  "context (the workspace root) and its command run with the workspace's "
                  "interpreter",
        "command": form, "container_port": port, "workdir": image.final.workdir,
        "notes": image.notes}
    try:
        meta = json.loads((ctx.workspace / "artifacts" / "model_meta.json").read_text("utf-8"))
        features = [str(c) for c in meta["feature_columns"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return result("failed", f"cannot read artifacts/model_meta.json: {e}")
    got: dict[str, Any] = {}
    external, read = api_imports(app_module(form), import_roots(runner))
    reqs, unreadable = pip_requirements(image)
    ev["app_files"] = ["/" + Path(r).relative_to(runner.root).as_posix() for r in read][:10]

    def prepare() -> None:  # while the image's command starts
        try:
            got["probe"] = probe = api_probe.build(ctx.workspace / "data" / "splits", features,
                                                   params.rows, 0, 0)
        except (OSError, ValueError, KeyError, TypeError) as e:
            got["error"] = f"cannot make probe rows from the splits: {e}"
            return
        dtypes = {c: ("number" if c in probe.numeric else "text") for c in features}
        with deps_probe(ctx, reqs, sorted(external), str(ctx.workspace / params.model),
                         features, dtypes, probe.frame) as deps:
            got["deps"], got["model"] = deps()
        if got["model"] is None:
            got["error"] = f"the gate could not run the saved model: {got['deps']['summary']}"

    log = ctx.scratch / "image-command.log"
    health_up: tuple[int | None, str] = (None, "")
    with proc.start_server(argv, cwd=runner.cwd, log_path=log, env=runner.env) as server:
        prepare()
        base = f"http://127.0.0.1:{runner.new_port}"
        deadline = time.monotonic() + params.startup_s
        status, body = 0, b""
        first_answer: float | None = None
        while time.monotonic() < deadline and server.alive():
            try:
                status, body = http("GET", f"{base}/health", timeout=2)
                if status == 200:
                    break
                first_answer = first_answer or time.monotonic()
                if status in (404, 405) and time.monotonic() - first_answer > 3:
                    break  # a server that has no /health, not one still loading
            except OSError:
                pass
            time.sleep(0.25)
        tail = " | ".join(server.log_tail(4))[-400:]
        if status != 200:
            why = (f"exited with status {server.proc.returncode}" if not server.alive()
                   else f"/health answered {status or 'nothing'}" + (
                       f" within {params.startup_s:.0f}s" if status not in (404, 405) else ""))
            return result("failed", f"the image's command {show(form)} does not serve the API "
                          f"from the image's files: {why}; log: {tail}", **ev)
        if "error" in got:
            return result("error", got["error"], **ev)
        try:
            health = json.loads(body)
        except ValueError:
            health = None
        if not isinstance(health, dict):
            return result("failed", f"the image's /health is not a JSON object: "
                          f"{body[:120].decode(errors='replace')}", **ev)
        probe, out = got["probe"], got["model"]
        records = probe.records()
        s, b = http("POST", f"{base}/predict", json.dumps({"records": records}).encode(),
                    timeout=60)
        answer = json.loads(b) if s == 200 else {}
        hc_up = healthcheck(runner, params.healthcheck_timeout_s) if image.final.healthcheck else None
        health_up = hc_up or (None, "")
    hc_down = healthcheck(runner, params.healthcheck_timeout_s) if image.final.healthcheck else None
    model_out = out["results"][0]
    regression = meta.get("problem_type") == "regression"
    classes = None if regression else [label(c) for c in (out.get("classes") or [])]
    pred = answer.get("predictions") if isinstance(answer, dict) else None
    if s != 200 or not isinstance(pred, list) or len(pred) != len(records):
        return result("failed", f"the image's /predict on {len(records)} records answered HTTP "
                      f"{s} with {len(pred) if isinstance(pred, list) else 'no'} predictions",
                      **ev)
    proba = None
    if classes and model_out.get("probabilities") is not None:
        proba = _probabilities(answer.get("probabilities"), len(records), classes)
    cmp = _compare(model_out, pred, proba, classes, params.tol)
    ev.update({"predict_rows": len(records), "predict_disagreeing": cmp.agree.count(False)})
    if cmp.agree.count(False):
        return result("failed", f"the image's /predict disagrees with the saved model on "
                      f"{cmp.agree.count(False)} of {len(records)} rows", **ev)
    problems = []
    if image.final.healthcheck:
        ev["healthcheck"] = {"command": show(image.final.healthcheck[1]),
                             "exit_while_up": health_up[0], "exit_while_down":
                             hc_down[0] if hc_down else None}
        if health_up[0] != 0:
            problems.append(f"the HEALTHCHECK fails while the API is up (exit {health_up[0]}: "
                            f"{health_up[1]})")
        if hc_down is not None and hc_down[0] == 0:
            problems.append("the HEALTHCHECK succeeds while the API is down (it does not "
                            "check the API)")
    else:
        problems.append("no HEALTHCHECK")
    deps = got.get("deps") or {}
    ev["dependencies"] = deps.get("summary")
    if unreadable:
        ev["dependencies"] = f"not verified: pip installs the gate cannot read: {unreadable[:3]}"
    elif deps.get("missing"):
        problems.append(f"the image's pip install does not provide {', '.join(deps['missing'])} "
                        f"(imported by the API or the model)")
    elif deps.get("unpinned"):
        problems.append(f"the image does not pin the model's packages to the versions that "
                        f"trained it: {', '.join(deps['unpinned'])}")
    if problems:
        return result("failed", "; ".join(problems), **ev)
    return result("passed", f"the image's command serves /health and /predict (agrees with the "
                  f"saved model on {len(records)} rows) from the image's files; the HEALTHCHECK "
                  f"passes while the API is up and fails once it is down", **ev)

