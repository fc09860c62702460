"""Staging --data before phase 1: a file is copied to data/raw/, a database URL is recorded
with its password masked. Agents and gates then find the data in the same place."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from mlpipe_flow.errors import DataError
from mlpipe_flow.state import UMASK, DataRef, file_sha256

URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
RAW_DIR = "data/raw"
URL_FILE = ".mlpipe/data-url"


def is_url(value: str) -> bool:
    return bool(URL.match(value))


def mask_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db"""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*):[^@]*@", r"\1:***@", url)


def mask_secrets(text: str, url: str | None) -> str:
    return text.replace(url, mask_url(url)) if url else text


def check_data(value: str) -> None:
    """Fail early (before any lock or state) on a data path that does not exist."""
    if is_url(value):
        return
    p = Path(value).expanduser()
    if not p.exists():
        raise DataError(f"--data {value}: no such file; give a CSV/Parquet file or a database URL")
    if not p.is_file():
        raise DataError(f"--data {value}: not a file; give a CSV/Parquet file or a database URL")


def stage(workspace: Path, value: str) -> DataRef:
    if is_url(value):
        dest = workspace / URL_FILE
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        return DataRef(kind="url", source=mask_url(value))
    check_data(value)
    src = Path(value).expanduser().resolve()
    raw = workspace / RAW_DIR
    raw.mkdir(parents=True, exist_ok=True)
    dest = raw / src.name
    if dest.resolve() != src:
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{src.name}.")
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp's 0600 would hide the data from the team
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return DataRef(kind="file", source=str(value), staged=dest.relative_to(workspace).as_posix(),
                   sha256=file_sha256(dest))


def data_url(workspace: Path) -> str | None:
    p = workspace / URL_FILE
    return p.read_text().strip() if p.is_file() else None
