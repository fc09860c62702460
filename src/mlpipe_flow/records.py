"""mlpipe's own records of a run, kept where no agent writes: `MLPIPE_HOME/records/<run-id>/`.

A verdict that depends on something recorded earlier — the raw data as staged (its hash, or
for a database a snapshot of the rows), the split files phase 2 passed with, the score phase 3
passed with — reads it from here, never from the workspace: an agent can rewrite
`.mlpipe/state.json`, but not these. The engine writes them (staging, a passed phase); the
gates only read them.

    records/<run-id>/raw.json              kind, source, staged path, sha256, rows snapshot
    records/<run-id>/raw-snapshot.csv      a database source's rows, read when it was staged
    records/<run-id>/phases/<phase>.json   output hashes and the gate report it passed with
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlpipe_flow.state import atomic_write, file_lock

RECORDS = "records"


def records_root() -> Path:
    from mlpipe_flow.memory import memory_home

    return memory_home() / RECORDS


def ensure_root() -> Path:
    """The records folder, made if missing; a one-line error when it cannot be: a run whose
    evidence mlpipe cannot keep could not be judged."""
    from mlpipe_flow.errors import ConfigError

    root = records_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot keep mlpipe's records of the run in {root} ({e.strerror}): "
                          "set MLPIPE_HOME to a writable folder") from None
    return root


class RunRecords:
    """The records of one run (a folder that may not exist yet)."""

    def __init__(self, run_id: str, root: Path | None = None) -> None:
        self.run_id = run_id
        self.dir = (root or records_root()) / run_id

    @classmethod
    def of_workspace(cls, workspace: Path) -> RunRecords | None:
        """The records of the run recorded in the workspace's state (None without a state)."""
        try:
            state = json.loads((workspace / ".mlpipe" / "state.json").read_text(encoding="utf-8"))
            run_id = str(state["run_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not run_id or "/" in run_id or run_id.startswith("."):
            return None
        return cls(run_id)

    def exists(self) -> bool:
        return self.dir.is_dir()

    def missing(self) -> str:
        """Why a check cannot judge against the records (for its `error` message)."""
        return (f"mlpipe's records of run {self.run_id} are not in {self.dir.parent} (set "
                "MLPIPE_HOME to where the run was made, or copy that folder with the workspace)")

    # -- raw data -----------------------------------------------------------------------
    def save_raw(self, record: dict[str, Any]) -> None:
        atomic_write(self.dir / "raw.json", json.dumps(record, indent=2) + "\n")

    def raw(self) -> dict[str, Any] | None:
        return read_json_object(self.dir / "raw.json")

    @property
    def snapshot(self) -> Path:
        return self.dir / "raw-snapshot.csv"

    # -- passed phases -----------------------------------------------------------------
    def save_phase(self, phase_id: str, record: dict[str, Any]) -> None:
        atomic_write(self.dir / "phases" / f"{phase_id}.json", json.dumps(record, indent=2) + "\n")

    def phase(self, phase_id: str) -> dict[str, Any] | None:
        return read_json_object(self.dir / "phases" / f"{phase_id}.json")

    def forget_phase(self, phase_id: str) -> None:
        (self.dir / "phases" / f"{phase_id}.json").unlink(missing_ok=True)

    def recorded_hash(self, rel: str) -> str | None:
        """The sha256 a passed phase recorded for the workspace file `rel` (None: not recorded)."""
        folder = self.dir / "phases"
        if not folder.is_dir():
            return None
        for f in sorted(folder.glob("*.json")):
            rec = read_json_object(f) or {}
            hashes = rec.get("output_hashes") or {}
            if rel in hashes:
                return str(hashes[rel])
        return None

    def passed_check(self, phase_id: str, check_id: str) -> dict[str, Any] | None:
        """The evidence of one check of the gate report a phase passed with."""
        rec = self.phase(phase_id) or {}
        for c in (rec.get("report") or {}).get("checks") or []:
            if c.get("id") == check_id:
                return dict(c.get("evidence") or {})
        return None


    # -- the gates' own cache (what a check measured, by the content it measured) --------
    def cache_get(self, name: str) -> dict[str, Any] | None:
        return read_json_object(self.dir / "cache" / f"{name}.json")

    def cache_put(self, name: str, value: dict[str, Any]) -> None:
        atomic_write(self.dir / "cache" / f"{name}.json", json.dumps(value))

    @contextmanager
    def cache_lock(self, name: str) -> Iterator[None]:
        """Held while a measurement is looked up, made and stored: checks running at once
        that need the same measurement make it once (the others wait and read it)."""
        with file_lock(self.dir / "cache" / f"{name}.lock"):
            yield


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON file's object, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
