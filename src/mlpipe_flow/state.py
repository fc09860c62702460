"""The workspace's records under .mlpipe/: run state (atomic JSON), the lock, output hashes."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlpipe_flow.errors import StateError
from mlpipe_flow.models import ExpectedOutput

STATE_VERSION = 1
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".mlpipe", ".git"}
PhaseStatus = Literal["pending", "running", "passed", "failed", "stalled", "budget", "interrupted"]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PhaseRecord(Record):
    id: str
    status: PhaseStatus = "pending"
    attempts: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    duration_s: float = 0.0
    output_hashes: dict[str, str] = Field(default_factory=dict)
    reason: str = ""
    failing_checks: list[str] = Field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None


class DataRef(Record):
    kind: Literal["file", "url"]
    source: str = Field(description="the file as given (its name only, when given as an absolute "
                        "path: the workspace may move), or the URL with its password masked")
    staged: str | None = Field(default=None, description="workspace-relative copy of a file")
    sha256: str | None = None


class RunState(Record):
    version: int = STATE_VERSION
    run_id: str
    problem: str
    target: str | None = None
    data: DataRef | None = None
    runner: str
    model: str | None = None
    workflow: str = Field(description="`builtin`, or the workflow folder relative to the workspace")
    status: Literal["running", "passed", "failed", "incomplete", "interrupted"] = "running"
    progress: int = 0
    created_at: str = Field(default_factory=now)
    updated_at: str = Field(default_factory=now)
    phases: list[PhaseRecord]

    def phase(self, phase_id: str) -> PhaseRecord:
        for rec in self.phases:
            if rec.id == phase_id:
                return rec
        rec = PhaseRecord(id=phase_id)
        self.phases.append(rec)
        return rec

    @property
    def cost_usd(self) -> float:
        return sum(p.cost_usd for p in self.phases)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


def atomic_write(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, os.replace, fsync the folder: all or nothing.
    The file gets the mode a plain open() would give it (mkstemp's is 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StateStore:
    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.dir = workspace / ".mlpipe"
        self.path = self.dir / "state.json"

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> RunState | None:
        if not self.path.exists():
            return None
        hint = "inspect it, or move it aside and start over with --fresh"
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StateError(f"{self.path} is corrupt ({e}); {hint}") from None
        except OSError as e:
            raise StateError(f"{self.path}: cannot read ({e.strerror})") from None
        if isinstance(raw, dict) and isinstance(raw.get("version"), int) and raw["version"] > STATE_VERSION:
            raise StateError(f"{self.path} was written by a newer mlpipe (state version "
                             f"{raw['version']}); upgrade mlpipe to resume this run")
        try:
            return RunState.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise StateError(f"{self.path} is corrupt (field '{loc}': {first['msg']}); {hint}") from None

    def save(self, state: RunState) -> None:
        state.updated_at = now()
        atomic_write(self.path, state.model_dump_json(indent=2) + "\n")

    def set_aside(self) -> Path | None:
        """Keep a state file we will not use (corrupt or replaced by --fresh) next to it."""
        if not self.path.exists():
            return None
        dest = self.path.with_name(f"state.{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
        os.replace(self.path, dest)
        return dest

    def run_dir(self, run_id: str, phase_id: str, attempt: int) -> Path:
        d = self.dir / "runs" / run_id / phase_id / f"attempt-{attempt}"
        d.mkdir(parents=True, exist_ok=True)
        return d


@contextlib.contextmanager
def workspace_lock(workspace: Path) -> Iterator[None]:
    """An exclusive lock on the workspace for one run; the OS drops it if the process dies."""
    lock_dir = workspace / ".mlpipe"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise StateError(
                f"workspace {workspace} is in use by another mlpipe run ({holder}); "
                "wait for it to finish or stop it, or use another --workspace"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {now()}".encode(), 0)
        yield
    finally:
        os.close(fd)


def run_in_progress(workspace: Path) -> bool:
    """Whether an mlpipe run holds the workspace's lock now (the OS drops it when that process
    dies, so a state that says "running" with no holder is a run that was killed)."""
    path = workspace / ".mlpipe" / "lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock at once
    return False


def as_observed(state: RunState, workspace: Path) -> RunState:
    """The state as `mlpipe status` reports it: a run recorded as running whose process is gone
    is `interrupted`, and so is the phase it was in."""
    if state.status != "running" or run_in_progress(workspace):
        return state
    seen = state.model_copy(deep=True)
    seen.status = "interrupted"
    for rec in seen.phases:
        if rec.status == "running":
            rec.status = "interrupted"
            rec.reason = "the run was stopped while this phase ran; `mlpipe run` resumes it"
    return seen


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """A blocking exclusive lock on `path` (created with its folder); the OS drops it if the
    process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def output_files(workspace: Path, outputs: list[ExpectedOutput],
                 exclude: Sequence[str] = ()) -> Iterator[Path]:
    """The files of a phase's outputs; `exclude` holds paths other phases own (a later phase's
    file inside this phase's folder, like airflow_dags/continuous_training.py)."""

    def excluded(rel: str) -> bool:
        return any(rel == x.rstrip("/") or (x.endswith("/") and rel.startswith(x)) for x in exclude)

    for out in outputs:
        p = workspace / out.path.rstrip("/")
        if p.is_file():
            yield p
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                rel_parts = f.relative_to(workspace).parts
                if (f.is_file() and not SKIP_PARTS.intersection(rel_parts) and f.suffix != ".pyc"
                        and not excluded(f.relative_to(workspace).as_posix())):
                    yield f


def hash_outputs(workspace: Path, outputs: list[ExpectedOutput],
                 exclude: Sequence[str] = ()) -> dict[str, str]:
    hashes = {f.relative_to(workspace).as_posix(): file_sha256(f)
              for f in output_files(workspace, outputs, exclude)}
    for out in outputs:
        if not (workspace / out.path.rstrip("/")).exists():
            hashes[out.path] = "missing"
    return hashes
