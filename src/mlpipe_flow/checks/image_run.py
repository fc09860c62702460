"""Running what a Dockerfile's image would run, from its assembled files (`dockerfile_build`),
without a Docker engine: the command (ENTRYPOINT + CMD) and the HEALTHCHECK from the image's
WORKDIR with its ENV, `python`/`uvicorn`/`gunicorn` mapped to the workspace's interpreter
(shims first on PATH), absolute image paths mapped to the assembled files, the container's port
moved to a free one and every-interface binds to 127.0.0.1; what the image's `pip install` lines
install and what the API imports; the model's pickle packages and outputs (one child process)."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext
from mlpipe_flow.checks.dockerfile_build import Image, Stage

SHIMS = {"python": "exec {py} \"$@\"", "uvicorn": "exec {py} -m uvicorn \"$@\"",
         "gunicorn": "exec {py} {gunicorn} \"$@\"", "hypercorn": "exec {py} -m hypercorn \"$@\"",
         "fastapi": "exec {py} -m fastapi \"$@\"",
         "tini": 'for a; do case "$a" in --) shift; break;; -*) shift;; *) break;; esac; done; '
                 'exec "$@"'}
SHIMS["dumb-init"] = SHIMS["tini"]


PYTHON_NAME = re.compile(r"^python(\d(\.\d+)?)?$")


SERVERS = ("uvicorn", "gunicorn", "hypercorn", "fastapi")


ANY_HOST = ("0.0.0.0", "::", "[::]")  # noqa: S104 - the container's bind address, rewritten


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


def _shim_name(program: str) -> str | None:
    base = program.rsplit("/", 1)[-1]
    if PYTHON_NAME.match(base):
        return "python"
    return base if base in SHIMS else None


def command(stage: Stage) -> list[str] | None:
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


def split_words(argv: list[str]) -> list[str]:
    """The command's words, with a `sh -c` string split too."""
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in ("sh", "bash") and argv[1] == "-c":
        try:
            return argv[:2] + shlex.split(argv[2])
        except ValueError:
            return argv[:2] + argv[2].split()
    return argv


def listen_port(argv: list[str], expose: list[str]) -> str:
    words = split_words(argv)
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
    words = split_words(argv)
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


def stage_at(stage: Stage, workdir: str) -> Stage:
    return Stage(stage.index, stage.name, stage.base, stage.root, stage.env, workdir)


def show(form: list[str] | str) -> str:
    return shlex.join(form) if isinstance(form, list) else form


# --- running the image ------------------------------------------------------------------------


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
        for w in split_words(form):
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


def app_module(argv: list[str]) -> str | None:
    for w in split_words(argv):
        m = re.fullmatch(r"([A-Za-z_][\w.]*):([A-Za-z_]\w*)(\(\))?", w)
        if m and not w.startswith("-"):
            return m.group(1)
    return None


def import_roots(runner: Runner) -> list[Path]:
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
            f = image.host(path, stage_at(stage, workdir))
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


def healthcheck(runner: Runner, limit_s: float) -> tuple[int | None, str]:
    """Run the image's HEALTHCHECK command as the image would: (exit status or None on a
    timeout, its last output line)."""
    assert runner.stage.healthcheck is not None
    flags, form = runner.stage.healthcheck
    argv = runner.argv(form if isinstance(form, list) else ["/bin/sh", "-c", form])
    timeout = limit_s
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", flags.get("timeout", ""))
    if m:
        timeout = min(timeout, float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)])
    res = proc.run(argv, cwd=runner.cwd, env=runner.env, timeout_s=max(timeout, 1.0))
    if res.timed_out:
        return None, f"timed out after {timeout:.0f}s"
    tail = [ln for ln in res.output.splitlines() if ln.strip()][-1:]
    return res.returncode, " ".join(tail)[:200]


@contextmanager
def deps_probe(ctx: CheckContext, reqs: list[str], imports: list[str], model: str,
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
            "missing": missing, "unpinned": _unpinned(reqs, out.get("versions") or {})}


PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;,#]+)")
ARRAYS = {"numpy", "scipy", "pandas"}  # their pickles load across versions; the model's own do not


def _unpinned(reqs: list[str], versions: dict[str, str | None]) -> list[str]:
    """The model's own packages (e.g. scikit-learn) not pinned to the version that trained it:
    a pickle is loaded by the version that wrote it."""
    pins = {}
    for r in reqs:
        m = PIN.match(r)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    out = []
    for dist, version in sorted(versions.items()):
        if dist in ARRAYS or version is None:
            continue
        if pins.get(dist) != version:
            out.append(f"{dist}=={version}" + (f" (pinned {pins[dist]})" if dist in pins else ""))
    return out
