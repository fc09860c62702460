"""A Dockerfile read and its image's files assembled the way `docker build` would, with the
workspace root as the build context, without a Docker engine (none runs where mlpipe's gates
run): every stage's filesystem is a scratch folder; FROM, ARG, ENV, WORKDIR, COPY and ADD
(local sources, `--from` an earlier stage, heredocs), `.dockerignore`, USER, EXPOSE, CMD,
ENTRYPOINT and HEALTHCHECK are applied; RUN steps are not executed (their `mkdir` is), so files
a RUN step would create are missing - the report says so. A COPY whose source is not in the
context fails, as `docker build` does.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_COPY_BYTES = 1_500_000_000  # an image assembled bigger than this is refused (add a .dockerignore)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(Exception):
    """`docker build` would fail here (the message says where and why)."""


@dataclass
class Instruction:
    word: str
    args: str
    line: int
    heredocs: list[tuple[str, str]] = field(default_factory=list)  # (name, body)


@dataclass
class Stage:
    index: int
    name: str | None
    base: str
    root: Path
    env: dict[str, str]
    workdir: str = "/"
    user: str | None = None
    expose: list[str] = field(default_factory=list)
    cmd: list[str] | str | None = None  # list: exec form; str: shell form
    entrypoint: list[str] | str | None = None
    healthcheck: tuple[dict[str, str], list[str] | str] | None = None  # (options, command)
    healthcheck_none: bool = False
    runs: list[tuple[str, str]] = field(default_factory=list)  # (workdir, command)


@dataclass
class Image:
    stages: list[Stage]
    notes: list[str]
    copied: list[str]  # "<source> -> <dest>" per COPY/ADD of the final stage

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def host(self, path: str, stage: Stage | None = None) -> Path:
        """The scratch path of an absolute path inside the image."""
        st = stage or self.final
        return st.root / _abs(path, st.workdir).lstrip("/")


def _abs(path: str, workdir: str) -> str:
    p = PurePosixPath(workdir) / path if not path.startswith("/") else PurePosixPath(path)
    parts: list[str] = []
    for part in p.parts[1:]:
        if part == "..":
            if parts:
                parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/" + "/".join(parts)


# --- parsing ----------------------------------------------------------------------------------

HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined, comments dropped, heredoc bodies attached."""
    lines = text.splitlines()
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        start = i
        i += 1
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        buf = raw.rstrip()
        while buf.endswith("\\") and i < len(lines):
            nxt = lines[i]
            i += 1
            if nxt.lstrip().startswith("#"):
                continue
            buf = buf[:-1] + " " + nxt.strip()
        word, _, rest = buf.strip().partition(" ")
        ins = Instruction(word.upper(), rest.strip(), start + 1)
        for m in HEREDOC.finditer(rest):
            body = []
            while i < len(lines) and lines[i].strip() != m.group(3):
                body.append(lines[i].lstrip("\t") if m.group(1) else lines[i])
                i += 1
            i += 1
            ins.heredocs.append((m.group(3), "\n".join(body) + "\n"))
        out.append(ins)
    return out


VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def substitute(text: str, env: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        value = env.get(name, "")
        if m.group(2) == "-":
            return value or m.group(3)
        if m.group(2) == "+":
            return m.group(3) if value else ""
        return value

    return VAR.sub(repl, text)


def exec_or_shell(args: str) -> list[str] | str:
    """The JSON (exec) form as a list, else the shell form as a string."""
    s = args.strip()
    if s.startswith("["):
        try:
            value = json.loads(s)
        except ValueError:
            return s
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return s


def _flags(args: str) -> tuple[dict[str, str], str]:
    """Leading --flag=value options of COPY/ADD/HEALTHCHECK, and the rest."""
    flags: dict[str, str] = {}
    rest = args.strip()
    while rest.startswith("--"):
        token, _, rest = rest.partition(" ")
        key, _, value = token[2:].partition("=")
        flags[key.lower()] = value
        rest = rest.strip()
    return flags, rest


def _key_values(args: str, env: dict[str, str]) -> dict[str, str]:
    """ENV / ARG / LABEL arguments: `k=v k2="v 2"` or the legacy `k v`."""
    try:
        tokens = shlex.split(args, posix=True)
    except ValueError:
        tokens = args.split()
    if tokens and "=" not in tokens[0]:
        name, _, value = args.strip().partition(" ")
        return {name: substitute(value.strip().strip('"').strip("'"), env)}
    out: dict[str, str] = {}
    for t in tokens:
        k, eq, v = t.partition("=")
        if eq:
            out[k] = substitute(v, {**env, **out})
        else:
            out[k] = env.get(k, "")
    return out


# --- the build context ------------------------------------------------------------------------

class Context:
    """The workspace as a build context, with its .dockerignore."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.patterns: list[tuple[bool, str]] = []
        ignore = root / ".dockerignore"
        if ignore.is_file():
            for line in ignore.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                neg = line.startswith("!")
                pat = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
                self.patterns.append((neg, pat))

    def ignored(self, rel: str) -> bool:
        """Docker's rule: the last pattern matching the path or one of its parents decides."""
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        excluded = False
        for neg, pat in self.patterns:
            if any(_match(pat, p) for p in prefixes):
                excluded = not neg
        return excluded

    def sources(self, src: str) -> list[Path]:
        """The context paths a COPY source names (globs expanded); BuildError when none."""
        norm = os.path.normpath(src.lstrip("/")) if src not in ("", ".", "/") else "."
        if norm.startswith(".."):
            raise BuildError(f"COPY source {src} is outside the build context")
        if any(ch in norm for ch in "*?["):
            found = sorted(self.root.glob(norm))
        else:
            found = [self.root / norm] if (self.root / norm).exists() else []
        found = [p for p in found if p == self.root or not self.ignored(self._rel(p))]
        if not found:
            why = " (excluded by .dockerignore)" if (self.root / norm).exists() else ""
            raise BuildError(f"COPY source {src} does not exist in the build context "
                             f"(the workspace root){why}")
        return found

    def _rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()


def _match(pattern: str, path: str) -> bool:
    """Go filepath.Match with `**` for any number of folders."""
    rx = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            rx += ".*"
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                rx = rx[:-2] + "(?:.*/)?"
                i += 1
            continue
        ch = pattern[i]
        rx += "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) if ch != "[" else "["
        i += 1
    try:
        return re.fullmatch(rx, path) is not None
    except re.error:
        return fnmatch.fnmatch(path, pattern)


class _Budget:
    def __init__(self, limit: int = MAX_COPY_BYTES) -> None:
        self.used = 0
        self.limit = limit

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise BuildError(f"the files copied into the image exceed {self.limit / 10**6:g} MB "
                             f"(copy only what the API needs, or add a .dockerignore)")


def _copy_tree(src: Path, dest: Path, ctx: Context | None, budget: _Budget) -> None:
    """Copy a file or the contents of a folder (docker copies a folder's contents)."""
    if src.is_file() or src.is_symlink() and not src.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_dir():
            dest = dest / src.name
        budget.take(src.stat().st_size if src.exists() else 0)
        shutil.copy2(src, dest, follow_symlinks=True)
        return
    dest.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        if ctx is not None:
            dirnames[:] = [d for d in dirnames
                           if not ctx.ignored((here / d).relative_to(ctx.root).as_posix())]
        target = dest / here.relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            f = here / name
            if ctx is not None and ctx.ignored(f.relative_to(ctx.root).as_posix()):
                continue
            if not f.exists():
                continue  # a dangling link
            budget.take(f.stat().st_size)
            shutil.copy2(f, target / name, follow_symlinks=True)


# --- assembling -------------------------------------------------------------------------------

def assemble(dockerfile: Path, context_root: Path, scratch: Path,
             max_bytes: int = MAX_COPY_BYTES) -> Image:
    """Every stage's files, as `docker build -f DOCKERFILE CONTEXT` would lay them out (refused
    when the files copied exceed `max_bytes`)."""
    ins = parse(dockerfile.read_text(encoding="utf-8", errors="replace"))
    ctx = Context(context_root)
    budget = _Budget(max_bytes)
    stages: list[Stage] = []
    notes: list[str] = []
    copied: list[str] = []
    global_args: dict[str, str] = {}
    st: Stage | None = None
    for i in ins:
        if i.word == "FROM":
            env_src = global_args if st is None else {**global_args}
            words = substitute(i.args, env_src).split()
            words = [w for w in words if not w.startswith("--platform")]
            if not words:
                raise BuildError(f"line {i.line}: FROM without an image")
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            parent = next((s for s in stages if s.name and s.name == base.lower()), None)
            root = scratch / f"stage-{len(stages)}"
            if parent is not None:
                shutil.copytree(parent.root, root, symlinks=True)
                st = Stage(len(stages), name.lower() if name else None, parent.base, root,
                           dict(parent.env), parent.workdir, parent.user, list(parent.expose),
                           parent.cmd, parent.entrypoint, parent.healthcheck,
                           parent.healthcheck_none, list(parent.runs))
            else:
                root.mkdir(parents=True)
                st = Stage(len(stages), name.lower() if name else None, base, root,
                           {"PATH": DEFAULT_PATH})
            stages.append(st)
            continue
        if st is None:
            if i.word == "ARG":
                global_args.update(_key_values(i.args, global_args))
            continue
        scope = {**global_args, **st.env}
        if i.word == "ARG":
            for k, v in _key_values(i.args, scope).items():
                st.env.setdefault(k, v)
        elif i.word == "ENV":
            st.env.update(_key_values(i.args, scope))
        elif i.word == "WORKDIR":
            st.workdir = _abs(substitute(i.args.strip(), scope), st.workdir)
            (st.root / st.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif i.word in ("COPY", "ADD"):
            _copy(i, st, stages, ctx, scope, budget, notes, copied)
        elif i.word == "RUN":
            command = substitute(i.args, scope)
            st.runs.append((st.workdir, command))
            _mkdirs(command, st)
        elif i.word == "USER":
            st.user = substitute(i.args.strip(), scope)
        elif i.word == "EXPOSE":
            st.expose += [p.split("/")[0] for p in substitute(i.args, scope).split()]
        elif i.word == "CMD":
            st.cmd = exec_or_shell(i.args)
        elif i.word == "ENTRYPOINT":
            st.entrypoint = exec_or_shell(i.args)
            st.cmd = None  # docker resets CMD when ENTRYPOINT is set after it
        elif i.word == "HEALTHCHECK":
            flags, rest = _flags(i.args)
            if rest.upper().startswith("NONE"):
                st.healthcheck, st.healthcheck_none = None, True
            else:
                word, _, command = rest.partition(" ")
                if word.upper() != "CMD":
                    raise BuildError(f"line {i.line}: HEALTHCHECK needs CMD or NONE")
                st.healthcheck, st.healthcheck_none = (flags, exec_or_shell(command)), False
    if not stages:
        raise BuildError("no FROM instruction")
    return Image(stages, notes, copied)


def _copy(i: Instruction, st: Stage, stages: list[Stage], ctx: Context, scope: dict[str, str],
          budget: _Budget, notes: list[str], copied: list[str]) -> None:
    flags, rest = _flags(substitute(i.args, scope))
    form = exec_or_shell(rest)
    parts = form if isinstance(form, list) else shlex.split(rest)
    if i.heredocs and len(parts) >= 2:  # COPY <<EOF /path
        dest = _abs(parts[-1], st.workdir)
        for _, body in i.heredocs:
            target = st.root / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")
        return
    if len(parts) < 2:
        raise BuildError(f"line {i.line}: {i.word} needs a source and a destination")
    *srcs, dest_raw = parts
    dest = _abs(dest_raw, st.workdir)
    to_dir = dest_raw.endswith("/") or len(srcs) > 1
    origin = flags.get("from")
    for src in srcs:
        if re.match(r"^[a-z]+://", src) or src.startswith("git@"):
            notes.append(f"line {i.line}: {i.word} {src} fetches over the network (not simulated)")
            continue
        if origin is not None:
            parent = next((s for s in stages[:-1] if s.name == origin.lower()
                           or str(s.index) == origin), None)
            if parent is None:
                notes.append(f"line {i.line}: COPY --from={origin} copies from another image "
                              f"(not simulated)")
                continue
            found = sorted(parent.root.glob(_abs(src, "/").lstrip("/"))) if any(
                c in src for c in "*?[") else [parent.root / _abs(src, "/").lstrip("/")]
            found = [f for f in found if f.exists()]
            if not found:
                made = any(src.split("/")[-1] in cmd or src in cmd for _, cmd in parent.runs)
                if made:
                    notes.append(f"line {i.line}: COPY --from={origin} {src}: made by a RUN step "
                                 f"(not simulated)")
                    continue
                raise BuildError(f"line {i.line}: COPY --from={origin} {src}: no such path in "
                                 f"stage {origin}")
            srcs_found, src_ctx = found, None
        else:
            srcs_found, src_ctx = ctx.sources(src), ctx
        for f in srcs_found:
            target = st.root / dest.lstrip("/")
            if f.is_dir():
                _copy_tree(f, target, src_ctx, budget)
            else:
                if to_dir or target.is_dir():
                    target = target / f.name
                _copy_tree(f, target, src_ctx, budget)
            copied.append(f"{src} -> {dest}")


def _mkdirs(command: str, st: Stage) -> None:
    """`mkdir` in a RUN step: the folders exist in the image afterwards."""
    for part in re.split(r"&&|;|\|\|", command):
        try:
            words = shlex.split(part)
        except ValueError:
            continue
        if words[:1] == ["mkdir"]:
            for w in words[1:]:
                if not w.startswith("-"):
                    (st.root / _abs(w, st.workdir).lstrip("/")).mkdir(parents=True, exist_ok=True)
