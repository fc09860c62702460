"""The container: the Dockerfile's structure, and whether the image it builds can serve.

No Docker engine runs where mlpipe's gates run, so `dockerfile_serves` does the honest
substitute: it assembles the image's files in a scratch folder as `docker build` would with the
workspace root as the build context (`dockerfile_build`), then runs the image's ENTRYPOINT/CMD
from its WORKDIR with its ENV, `python`/`uvicorn`/`gunicorn` mapped to the workspace's
interpreter and the port (from the command, else EXPOSE) rewritten to a free one on 127.0.0.1;
/health must answer and /predict must agree with the saved model; the HEALTHCHECK command must
succeed while the API is up and fail once it is down; the packages the image's `pip install`
lines bring in must cover what the API imports and what unpickling the model imports.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.dockerfile_build import BuildError, Image, Stage, assemble
from mlpipe_flow.models import CheckResult

SHIMS = {"python": "exec {py} \"$@\"", "uvicorn": "exec {py} -m uvicorn \"$@\"",
         "gunicorn": "exec {py} {gunicorn} \"$@\"", "hypercorn": "exec {py} -m hypercorn \"$@\"",
         "fastapi": "exec {py} -m fastapi \"$@\"",
         "tini": 'for a; do case "$a" in --) shift; break;; -*) shift;; *) break;; esac; done; '
                 'exec "$@"'}
SHIMS["dumb-init"] = SHIMS["tini"]
PYTHON_NAME = re.compile(r"^python(\d(\.\d+)?)?$")
SERVERS = ("uvicorn", "gunicorn", "hypercorn", "fastapi")
ANY_HOST = ("0.0.0.0", "::", "[::]")  # noqa: S104 - the container's bind address, rewritten
DOWNLOADERS = ("curl", "wget")
# gunicorn where the workspace's interpreter has it; else the same ASGI app under uvicorn (the
# gate cannot install packages), on the bind the command names
GUNICORN = """import os, runpy, sys
try:
    import gunicorn  # noqa: F401
except ImportError:
    args, bind, app, i = sys.argv[1:], "127.0.0.1:8000", None, 0
    while i < len(args):
        a = args[i]
        if a in ("-b", "--bind") and i + 1 < len(args):
            bind, i = args[i + 1], i + 2
            continue
        if a.startswith("--bind="):
            bind = a.split("=", 1)[1]
        elif a in ("-k", "--worker-class", "-w", "--workers", "-c", "--config", "--timeout",
                   "--threads", "--log-level", "--chdir"):
            i += 1
        elif not a.startswith("-"):
            app = a
        i += 1
    host, _, port = bind.rpartition(":")
    os.execv(sys.executable, [sys.executable, "-m", "uvicorn", app or "", "--host",
                              host or "127.0.0.1", "--port", port])
sys.argv[0] = "gunicorn"
runpy.run_module("gunicorn", run_name="__main__")
"""
INSTALL = re.compile(r"\b(?:apt-get|apt|apk|yum|dnf|microdnf)\b[^&;|]*\b(?:install|add)\b([^&;|]*)")


def _shim_name(program: str) -> str | None:
    base = program.rsplit("/", 1)[-1]
    if PYTHON_NAME.match(base):
        return "python"
    return base if base in SHIMS else None


class DockerfileParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "deployment/docker/Dockerfile"


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.split("/")[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return bool(tag) and tag != "latest" and bool(re.search(r"\d", tag))


def _command(stage: Stage) -> list[str] | None:
    """What the container runs: ENTRYPOINT + CMD, shell forms through /bin/sh -c."""
    def argv(form: list[str] | str | None) -> list[str]:
        if form is None:
            return []
        return list(form) if isinstance(form, list) else ["/bin/sh", "-c", form]

    if stage.entrypoint:
        if isinstance(stage.entrypoint, str):
            return argv(stage.entrypoint)
        return argv(stage.entrypoint) + argv(stage.cmd)
    return argv(stage.cmd) or None


def _words(argv: list[str]) -> list[str]:
    """The command's words, with a `sh -c` string split too."""
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in ("sh", "bash") and argv[1] == "-c":
        try:
            return argv[:2] + shlex.split(argv[2])
        except ValueError:
            return argv[:2] + argv[2].split()
    return argv


def listen_port(argv: list[str], expose: list[str]) -> str:
    words = _words(argv)
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w in ("--port", "-p") and nxt.isdigit():
            return nxt
        if w.startswith("--port=") and w[7:].isdigit():
            return w[7:]
        if w in ("-b", "--bind") and ":" in nxt:
            return nxt.rsplit(":", 1)[1]
        if w.startswith("--bind=") and ":" in w:
            return w.rsplit(":", 1)[1]
    if "http.server" in words:  # python -m http.server [port]
        after = words[words.index("http.server") + 1:]
        return next((w for w in after if w.isdigit()), "8000")
    return expose[0] if expose else "8000"


def bind_host(argv: list[str]) -> str | None:
    """The host a uvicorn/gunicorn command binds (None: not one of those, or not stated)."""
    words = _words(argv)
    server = next((_shim_name(w) for w in words if _shim_name(w) in SERVERS), None)
    if "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] in SERVERS:
        server = words[words.index("-m") + 1]
    if server is None:
        return None
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w == "--host" and nxt:
            return nxt
        if w.startswith("--host="):
            return w[7:]
        if w in ("-b", "--bind") and nxt:
            return nxt.rsplit(":", 1)[0]
        if w.startswith("--bind="):
            return w[7:].rsplit(":", 1)[0]
    return "127.0.0.1"  # uvicorn's and gunicorn's default


def _installs(stage_runs: list[str], tool: str) -> bool:
    return any(re.search(rf"\b{tool}\b", m.group(1)) for cmd in stage_runs
               for m in INSTALL.finditer(cmd))


def dockerfile(ctx: CheckContext, params: DockerfileParams) -> CheckResult:
    """Structure, and a build of the image's files: pinned slim base, non-root USER, EXPOSE, a
    HEALTHCHECK whose program is in the image, a server bound to all interfaces, every COPY/ADD
    source in the build context (the workspace root), every `pip install -r` file in the image."""
    p = ctx.workspace / params.path
    if not p.is_file():
        return result("failed", f"{params.path} does not exist")
    assert ctx.scratch is not None
    try:
        image = assemble(p, ctx.workspace, Path(tempfile.mkdtemp(prefix="image-", dir=ctx.scratch)))
    except BuildError as e:
        return result("failed", f"{params.path}: docker build would fail: {e}")
    final = image.final
    problems = []
    names = {s.name for s in image.stages if s.name}
    bases = [s.base for s in image.stages]
    for base in bases:
        if base.lower() not in names and base != "scratch" and not _pinned(base):
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
    argv = _command(final)
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
            if not image.host(req, _stage_at(st, workdir)).is_file():
                problems.append(f"RUN pip install -r {req}: the file is not in the image")
    ev = {"base_images": bases, "user": user, "expose": final.expose,
          "healthcheck": _show(final.healthcheck[1]) if final.healthcheck else None,
          "command": argv, "copied": image.copied[:20], "notes": image.notes}
    if problems:
        return result("failed", f"{params.path}: {'; '.join(problems)}", **ev, problems=problems)
    return result("passed", f"{params.path}: base {final.base}, user {user}, healthcheck set; "
                  f"{len(image.copied)} COPY source(s) found in the build context", **ev)


def _stage_at(stage: Stage, workdir: str) -> Stage:
    return Stage(stage.index, stage.name, stage.base, stage.root, stage.env, workdir)


def _show(form: list[str] | str) -> str:
    return shlex.join(form) if isinstance(form, list) else form


# --- running the image ------------------------------------------------------------------------

class DockerfileServesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "deployment/docker/Dockerfile"
    model: str = "artifacts/model.joblib"
    rows: int = Field(default=10, ge=1, description="test rows (and as many perturbed) predicted")
    tol: float = Field(default=1e-4, ge=0)
    startup_s: float = Field(default=60, gt=0)
    healthcheck_timeout_s: float = Field(default=10, gt=0)


class Runner:
    """Runs commands as the image would, against the assembled files (see the module doc)."""

    def __init__(self, ctx: CheckContext, image: Image, port: str, new_port: int) -> None:
        assert ctx.scratch is not None
        self.image, self.stage = image, image.final
        self.root = self.stage.root
        self.port, self.new_port = port, str(new_port)
        self.bin = Path(tempfile.mkdtemp(prefix="shims-", dir=ctx.scratch))
        gunicorn = self.bin / "gunicorn_or_uvicorn.py"
        gunicorn.write_text(GUNICORN)
        for name, body in SHIMS.items():
            shim = self.bin / name
            shim.write_text("#!/bin/sh\n" + body.format(py=shlex.quote(ctx.python),
                                                        gunicorn=shlex.quote(str(gunicorn))) + "\n")
            shim.chmod(0o755)
        for extra in ("python3", *(f"python3.{m}" for m in range(8, 15))):
            (self.bin / extra).symlink_to(self.bin / "python")
        home = Path(tempfile.mkdtemp(prefix="home-", dir=ctx.scratch))
        base = proc.scrubbed_env()
        for k in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE"):
            base.pop(k, None)
        env = {k: self.rewrite(self.map_paths(v, k)) for k, v in self.stage.env.items()
               if k != "PATH"}
        image_path = [str(self.root / e.lstrip("/")) for e in
                      self.stage.env.get("PATH", "").split(":")
                      if e.startswith("/") and (self.root / e.lstrip("/")).is_dir()]
        self.env = {**base, **env, "HOME": str(home), "PORT": self.new_port,
                    "PYTHONDONTWRITEBYTECODE": "1",
                    "PATH": ":".join([str(self.bin), *image_path, base.get("PATH", "")])}
        self.cwd = self.root / self.stage.workdir.lstrip("/")
        self.cwd.mkdir(parents=True, exist_ok=True)

    def inside(self, path: str) -> bool:
        first = path.strip("/").split("/")[0]
        return bool(first) and (self.root / first).exists()

    def map_paths(self, value: str, name: str = "") -> str:
        """Absolute image paths (colon-separated lists too) to their assembled place."""
        if name == "PATH":
            return value
        return ":".join(str(self.root / v.lstrip("/")) if v.startswith("/") and self.inside(v)
                        else v for v in value.split(":"))

    def rewrite(self, text: str) -> str:
        """The container's port to the free one; binding every interface to 127.0.0.1."""
        text = re.sub(rf"(?<=[\s:=\"'])({self.port})(?=$|[\s/\"',])", self.new_port, text)
        text = re.sub(rf"^{self.port}$", self.new_port, text)
        for host in ANY_HOST:
            text = text.replace(host + ":", "127.0.0.1:") if ":" in text else text
            text = "127.0.0.1" if text == host else text
        return text.replace(" 0.0.0.0", " 127.0.0.1").replace("=0.0.0.0", "=127.0.0.1")

    def program(self, word: str) -> str:
        shim = _shim_name(word)
        if shim:
            return str(self.bin / shim)
        if word.startswith("/") and self.inside(word):
            return str(self.root / word.lstrip("/"))
        return word

    def rewrite_scripts(self, form: list[str]) -> None:
        """A shell script of the image the command runs gets the same port/host/path rewrite."""
        for w in _words(form):
            f = self.root / w.lstrip("/") if w.startswith("/") else self.cwd / w
            if "/" not in w and not w.endswith(".sh") or not f.is_file():
                continue
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if len(text) < 65536 and (text.startswith("#!") or w.endswith(".sh")):
                text = re.sub(r"(?<![\w/.-])(/[\w./-]+)", lambda m: self.program(m.group(1)),
                              text)
                f.write_text("\n".join(self.rewrite(line) for line in text.splitlines()) + "\n")

    def argv(self, form: list[str]) -> list[str]:
        self.rewrite_scripts(form)
        if len(form) >= 3 and form[0].rsplit("/", 1)[-1] in ("sh", "bash") and form[1] == "-c":
            script = re.sub(r"(?<![\w/.-])(/[\w./-]+)",
                            lambda m: self.program(m.group(1)), form[2])
            return [form[0], "-c", self.rewrite(script), *form[3:]]
        out = [self.program(form[0])]
        for w in form[1:]:
            out.append(self.rewrite(str(self.root / w.lstrip("/")) if w.startswith("/")
                                    and self.inside(w) else w))
        return out


def _app_module(argv: list[str]) -> str | None:
    for w in _words(argv):
        m = re.fullmatch(r"([A-Za-z_][\w.]*):([A-Za-z_]\w*)(\(\))?", w)
        if m and not w.startswith("-"):
            return m.group(1)
    return None


def _import_roots(runner: Runner) -> list[Path]:
    roots = [runner.cwd]
    for entry in runner.env.get("PYTHONPATH", "").split(":"):
        if entry and Path(entry).is_dir():
            roots.append(Path(entry))
    return roots


def _local_file(module: str, roots: list[Path]) -> Path | None:
    rel = module.replace(".", "/")
    for root in roots:
        for cand in (root / f"{rel}.py", root / rel / "__init__.py"):
            if cand.is_file():
                return cand
    return None


def api_imports(module: str | None, roots: list[Path]) -> tuple[set[str], list[str]]:
    """Top-level names the app module and the local modules it imports import, beyond the
    standard library and the local modules themselves; and the local files read."""
    if module is None:
        return set(), []
    external: set[str] = set()
    read: list[str] = []
    todo, done = [module], set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        f = _local_file(name, roots)
        if f is None:
            continue
        read.append(str(f))
        try:
            tree = ast.parse(f.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                pkg = name.split(".")
                base = pkg[:len(pkg) - node.level + (1 if f.name == "__init__.py" else 0)]
                stem = ".".join(base + ([node.module] if node.module else []))
                names = [stem] + [f"{stem}.{a.name}" for a in node.names]
            for n in names:
                top = n.split(".")[0]
                if _local_file(top, roots) is not None:
                    todo.append(n)
                elif top and top not in sys.stdlib_module_names and top != "__future__":
                    external.add(top)
    return external, read


def pip_requirements(image: Image) -> tuple[list[str], list[str]]:
    """(requirement lines the image's `pip install` steps name, what could not be read)."""
    reqs: list[str] = []
    unreadable: list[str] = []
    with_value = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url",
                  "--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix",
                  "--root", "--trusted-host", "--platform", "--python-version", "--abi",
                  "--implementation", "--progress-bar", "--cache-dir", "--src", "-e",
                  "--editable", "--only-binary", "--no-binary"}
    for stage in image.stages:
        for workdir, cmd in stage.runs:
            for part in re.split(r"&&|;|\|\||\|", cmd):
                try:
                    words = shlex.split(part)
                except ValueError:
                    continue
                for i, w in enumerate(words[:-1]):
                    pip = re.fullmatch(r"(?:\S*/)?pip3?(?:\.\d+)?", w) or (
                        w == "pip" and i > 0 and words[i - 1] == "-m")
                    if pip and words[i + 1] == "install":
                        _read_install(words[i + 2:], stage, workdir, image, with_value, reqs,
                                      unreadable)
                        break
    return reqs, unreadable


def _read_install(args: list[str], stage: Stage, workdir: str, image: Image, with_value: set[str],
                  reqs: list[str], unreadable: list[str]) -> None:
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-r", "--requirement") and i + 1 < len(args) or a.startswith("--requirement="):
            path = args[i + 1] if a in ("-r", "--requirement") else a.split("=", 1)[1]
            f = image.host(path, _stage_at(stage, workdir))
            if f.is_file():
                reqs += _requirement_lines(f)
            else:
                unreadable.append(f"-r {path}")
            i += 2 if a in ("-r", "--requirement") else 1
            continue
        if a in with_value:
            if a in ("-e", "--editable"):
                unreadable.append(f"{a} {args[i + 1] if i + 1 < len(args) else ''}")
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        if a.startswith((".", "/")) or "*" in a or a.endswith((".whl", ".tar.gz")):
            unreadable.append(a)
        else:
            reqs.append(a)
        i += 1


def _requirement_lines(f: Path) -> list[str]:
    out = []
    for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            out.append(line)
    return out


def dockerfile_serves(ctx: CheckContext, params: DockerfileServesParams) -> CheckResult:
    from mlpipe_flow.checks import api_probe
    from mlpipe_flow.checks.serving import http
    from mlpipe_flow.checks.serving_checks import _compare, _probabilities, label

    p = ctx.workspace / params.path
    if not p.is_file():
        return result("failed", f"{params.path} does not exist")
    assert ctx.scratch is not None
    try:
        image = assemble(p, ctx.workspace, Path(tempfile.mkdtemp(prefix="image-", dir=ctx.scratch)))
    except BuildError as e:
        return result("failed", f"docker build would fail: {e}")
    form = _command(image.final)
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
    external, read = api_imports(_app_module(form), _import_roots(runner))
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
        with _deps_probe(ctx, reqs, sorted(external), str(ctx.workspace / params.model),
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
            return result("failed", f"the image's command {_show(form)} does not serve the API "
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
        hc_up = _healthcheck(runner, params) if image.final.healthcheck else None
        health_up = hc_up or (None, "")
    hc_down = _healthcheck(runner, params) if image.final.healthcheck else None
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
        ev["healthcheck"] = {"command": _show(image.final.healthcheck[1]),
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
    if problems:
        return result("failed", "; ".join(problems), **ev)
    return result("passed", f"the image's command serves /health and /predict (agrees with the "
                  f"saved model on {len(records)} rows) from the image's files; the HEALTHCHECK "
                  f"passes while the API is up and fails once it is down", **ev)


def _healthcheck(runner: Runner, params: DockerfileServesParams) -> tuple[int | None, str]:
    assert runner.stage.healthcheck is not None
    flags, form = runner.stage.healthcheck
    argv = runner.argv(form if isinstance(form, list) else ["/bin/sh", "-c", form])
    timeout = params.healthcheck_timeout_s
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", flags.get("timeout", ""))
    if m:
        timeout = min(timeout, float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)])
    res = proc.run(argv, cwd=runner.cwd, env=runner.env, timeout_s=max(timeout, 1.0))
    if res.timed_out:
        return None, f"timed out after {timeout:.0f}s"
    tail = [ln for ln in res.output.splitlines() if ln.strip()][-1:]
    return res.returncode, " ".join(tail)[:200]


@contextmanager
def _deps_probe(ctx: CheckContext, reqs: list[str], imports: list[str], model: str,
                features: list[str], dtypes: dict[str, str], frame: Any,
                ) -> Iterator[Callable[[], tuple[dict[str, Any], dict[str, Any] | None]]]:
    """Start `image_deps_probe.py` in the workspace's interpreter (it loads the model once: the
    packages its pickle names, and its outputs on `frame` through model_probe's own `predict`);
    the yielded function waits for it and returns (which of the API's and the model's imports
    the requirements do not provide, the model's outputs or None)."""
    assert ctx.scratch is not None
    folder = Path(tempfile.mkdtemp(prefix="deps-", dir=ctx.scratch))
    req, resp = folder / "request.json", folder / "response.json"
    rows = folder / "rows.csv"
    frame[[c for c in features if c in frame.columns]].to_csv(rows, index=False)
    req.write_text(json.dumps({"requirements": reqs, "imports": imports, "model": model,
                               "features": features, "dtypes": dtypes,
                               "ops": [{"op": "predict", "rows": str(rows), "proba": True}]}))
    env = proc.scrubbed_env(extra={"PYTHONPATH": str(ctx.workspace), "PYTHONDONTWRITEBYTECODE": "1"})
    script = Path(__file__).with_name("image_deps_probe.py")
    with proc.start_server([ctx.python, str(script), str(req), str(resp)], cwd=ctx.workspace,
                           log_path=folder / "log.txt", env=env) as server:
        def wait() -> tuple[dict[str, Any], dict[str, Any] | None]:
            try:
                server.proc.wait(timeout=min(120.0, ctx.timeout_s))
            except subprocess.TimeoutExpired:
                return {"summary": "not measured: the dependency probe did not finish"}, None
            try:
                out = json.loads(resp.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                out = {"error": f"the probe failed: {' | '.join(server.log_tail(2))}"}
            model = {"classes": out.get("classes"), "results": out["results"]} \
                if "results" in out else None
            return _missing(out, reqs, imports), model

        yield wait


def _missing(out: dict[str, Any], reqs: list[str], imports: list[str]) -> dict[str, Any]:
    if "error" in out:
        return {"summary": f"not measured: {out['error']}"}
    closure = set(out["closure"])
    provided: dict[str, list[str]] = out["imports"]
    model_needs = [m for m in out.get("model_modules", []) if m not in sys.stdlib_module_names]
    if not reqs:
        return {"summary": "the image installs no Python package",
                "missing": sorted(set(imports) | set(model_needs)) or ["any package"]}
    missing = [m for m in sorted(set(imports) | set(model_needs))
               if provided.get(m) and not closure & set(provided[m])]
    return {"summary": f"{len(reqs)} requirement(s), {len(closure)} distribution(s) with their "
                       f"dependencies; {len(imports)} third-party import(s) of the API and "
                       f"{len(model_needs)} package(s) the model's pickle names checked",
            "missing": missing}
