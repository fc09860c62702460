"""A file model registry under registry/ (documented in continuous-training-guide.md).

    registry/versions/<version>/model.joblib, model_meta.json   one folder per version
    registry/champion.json     {"version": ..., "history": [older champions, newest last]}
    registry/decisions.jsonl   one JSON line per champion/challenger decision

Every pointer write is atomic (temp file in the same folder, fsync, os.replace), so a reader
(the API at start-up) sees the old champion or the new one, never half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "registry"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def versions() -> list[str]:
    folder = REGISTRY / "versions"
    found = [p.name for p in folder.iterdir() if (p / "model.joblib").is_file()] \
        if folder.is_dir() else []
    return sorted(found, key=lambda v: (0, int(v), v) if v.isdigit() else (1, 0, v))


def meta(version: str) -> dict[str, Any]:
    return json.loads((REGISTRY / "versions" / version / "model_meta.json").read_text("utf-8"))


def model_path(version: str) -> str:
    """The model file of a version, relative to the project folder."""
    return str((REGISTRY / "versions" / version / "model.joblib").relative_to(ROOT))


def champion() -> dict[str, Any] | None:
    p = REGISTRY / "champion.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def next_version() -> str:
    numbers = [int(v) for v in versions() if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def register(model_dir: Path, version: str, extra: dict[str, Any] | None = None) -> str:
    """Copy model.joblib + model_meta.json into registry/versions/<version>/."""
    dest = REGISTRY / "versions" / version
    tmp = REGISTRY / "versions" / f".{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(model_dir / "model.joblib", tmp / "model.joblib")
    m = json.loads((model_dir / "model_meta.json").read_text(encoding="utf-8"))
    m.update(extra or {}, version=version, registered_at=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                        time.gmtime()))
    (tmp / "model_meta.json").write_text(json.dumps(m, indent=2), encoding="utf-8")
    if dest.exists():
        raise FileExistsError(f"registry version {version} already exists")
    os.replace(tmp, dest)
    return version


def ensure_initialised() -> dict[str, Any]:
    """The first time: register artifacts/ (the phase-3 model) and make it the champion."""
    current = champion()
    if current is not None:
        return current
    m = json.loads((ROOT / "artifacts" / "model_meta.json").read_text(encoding="utf-8"))
    version = str(m["version"])
    if version not in versions():
        register(ROOT / "artifacts", version)
    set_champion(version, history=[])
    return champion() or {}


def set_champion(version: str, history: list[str]) -> None:
    if version not in versions():
        raise KeyError(f"no registered version {version} (have: {', '.join(versions())})")
    _atomic_write(REGISTRY / "champion.json", json.dumps(
        {"version": version, "history": history,
         "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))


def promote(version: str) -> None:
    current = ensure_initialised()
    if current.get("version") == version:
        return
    set_champion(version, [*current.get("history", []), current["version"]])


def rollback(to: str | None = None) -> tuple[str, str]:
    """Make the previous champion (or `to`) the champion again. Returns (from, to)."""
    current = champion()
    if current is None:
        raise RuntimeError("the registry has no champion to roll back from")
    history = list(current.get("history", []))
    if to is None:
        if not history:
            raise RuntimeError(f"version {current['version']} has no previous champion")
        to = history.pop()
    elif to in history:
        history = history[:history.index(to)]
    set_champion(to, history)
    return current["version"], to


def record_decision(decision: dict[str, Any]) -> None:
    path = REGISTRY / "decisions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(decision) + "\n")
        f.flush()
        os.fsync(f.fileno())
