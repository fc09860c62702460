"""A sample of the /predict inputs, logged for the drift job (monitoring/drift_detection/).

Files `inputs-<UTC time>-<pid>.jsonl` in INPUT_LOG_DIR (default data/production/ of the
project), one JSON object per logged record: the record's feature values (and id columns when
the request carried them), `ts` (ISO 8601, UTC), `model_version` and `track`. Bounded: a file
is closed at INPUT_LOG_MAX_MB / INPUT_LOG_FILES, and the oldest files are deleted beyond
INPUT_LOG_FILES. INPUT_LOG_SAMPLE is the share of records logged (0 turns logging off).

`write` is called from the API's predict thread, after the batch's answers are sent: logging
never delays a response. A folder that cannot be written (a read-only container without a
volume there) turns logging off with one warning; serving goes on.
"""

from __future__ import annotations

import json
import logging
import os
import random
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("uvicorn.error")


class InputLog:
    def __init__(self, folder: Path, sample: float, max_bytes: int, files: int,
                 stamp: dict[str, str]) -> None:
        self.folder, self.sample = folder, sample
        self.files = max(1, files)
        self.file_bytes = max(1, max_bytes // self.files)
        self.stamp = stamp  # written on every line: model_version, track
        self._rng = random.Random()
        self._out: IO[str] | None = None
        self._size = 0

    @classmethod
    def from_env(cls, default_folder: Path, stamp: dict[str, str]) -> InputLog:
        return cls(Path(os.environ.get("INPUT_LOG_DIR") or default_folder),
                   sample=float(os.environ.get("INPUT_LOG_SAMPLE", "0.1")),
                   max_bytes=int(float(os.environ.get("INPUT_LOG_MAX_MB", "64")) * 2**20),
                   files=int(os.environ.get("INPUT_LOG_FILES", "8")), stamp=stamp)

    @property
    def enabled(self) -> bool:
        return self.sample > 0

    def write(self, records: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        chosen = [r for r in records if self._rng.random() < self.sample]
        if not chosen:
            return
        ts = datetime.now(timezone.utc).isoformat()
        text = "".join(json.dumps({**r, "ts": ts, **self.stamp}, default=str) + "\n" for r in chosen)
        try:
            out = self._file()
            out.write(text)
            out.flush()
        except OSError as e:
            log.warning("input log off: cannot write to %s (%s)", self.folder, e)
            self.sample = 0.0
            return
        self._size += len(text.encode("utf-8"))

    def _file(self) -> IO[str]:
        if self._out is not None and self._size < self.file_bytes:
            return self._out
        self.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"inputs-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{os.getpid()}.jsonl"
        self._out = (self.folder / name).open("a", encoding="utf-8")
        self._size = 0
        old = sorted(self.folder.glob("inputs-*.jsonl"), key=lambda p: p.stat().st_mtime)
        for path in old[:-self.files]:
            path.unlink(missing_ok=True)
        return self._out

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
