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
    same_file = dest.resolve() == src
    digest = None if same_file else unchanged_copy(src, dest)
    if not same_file and digest is None:
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{src.name}.")
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp's 0600 would hide the data from the team
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return DataRef(kind="file", source=file_source(value),
                   staged=dest.relative_to(workspace).as_posix(), sha256=digest or file_sha256(dest))


def unchanged_copy(src: Path, dest: Path) -> str | None:
    """The sha256 of `dest` when it already holds exactly `src` (same size, same content hash),
    so staging again leaves it alone; None when it must be copied. Never trusts a size or mtime
    alone: the staged copy is in the workspace, where an agent could have edited it."""
    try:
        if not dest.is_file() or dest.is_symlink() or dest.stat().st_size != src.stat().st_size:
            return None
        digest = file_sha256(src)
        return digest if file_sha256(dest) == digest else None
    except OSError:
        return None


def file_source(value: str) -> str:
    """How the state and mlpipe's records name a data file: as given, or by its name alone when
    given as an absolute path, which would mean nothing once the workspace moves (the staged copy
    and its sha256 are what the run uses)."""
    p = Path(value)
    return p.name if p.expanduser().is_absolute() else value


def staged_copy(workspace: Path, ref: DataRef | None, value: str | None = None) -> Path | None:
    """The run's staged copy of its data file, when it is in the workspace (and, given `value`,
    has that file's name): a workspace moved to a machine without the original file uses it."""
    if ref is None or ref.kind != "file" or not ref.staged:
        return None
    p = workspace / ref.staged
    if value is not None and Path(value).name != p.name:
        return None
    return p if p.is_file() else None


def missing_staged(workspace: Path, ref: DataRef) -> DataError:
    return DataError(f"the run's data {ref.staged} is not in workspace {workspace} (moved without "
                     f"its data/raw/ folder?); copy it back, or give the file again with --data "
                     f"FILE (it was {ref.source})")


def split_sql_url(url: str) -> tuple[str, str | None, str | None]:
    """`sqlite:///x.db?table=t` -> (`sqlite:///x.db`, 't', None); `?query=...` likewise.
    mlpipe's own reading of a data URL (the built-in agent's ingestion has its own)."""
    from urllib.parse import parse_qsl, urlencode

    base, _, qs = url.partition("?")
    params = parse_qsl(qs, keep_blank_values=True)
    table = next((v for k, v in params if k == "table"), None)
    query = next((v for k, v in params if k == "query"), None)
    rest = urlencode([(k, v) for k, v in params if k not in ("table", "query")])
    return (f"{base}?{rest}" if rest else base), table, query


SNAPSHOT = """
import sys
import pandas as pd
import sqlalchemy as sa
engine_url, table, query, dest = sys.argv[1:5]
engine = sa.create_engine(engine_url)
try:
    sql = sa.text(query) if query else sa.select(sa.text("*")).select_from(sa.table(table))
    with engine.connect() as conn:
        frame = pd.read_sql(sql, conn)
finally:
    engine.dispose()
frame.to_csv(dest, index=False)
print(len(frame))
"""


def snapshot_url(url: str, dest: Path, python: str, timeout_s: float = 600) -> str | None:
    """Copy the rows a database URL names into `dest` (CSV), in a child process of `python`;
    returns why it could not (None when it did). The gates compare the splits with these rows:
    what the database held when the run started, not what it holds when a gate runs."""
    from mlpipe_flow import proc

    engine_url, table, query = split_sql_url(url)
    if not table and not query:
        return "the URL names no ?table= or ?query="
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    res = proc.run([python, "-c", SNAPSHOT, engine_url, table or "", query or "", str(tmp)],
                   cwd=dest.parent, timeout_s=timeout_s,
                   env=proc.scrubbed_env(extra={"PYTHONDONTWRITEBYTECODE": "1"}))
    if not res.ok:
        tmp.unlink(missing_ok=True)
        tail = [ln for ln in res.output.splitlines() if ln.strip()][-1:]
        return mask_secrets(f"{res.describe()}: {' '.join(tail)}", url)[:300]
    os.replace(tmp, dest)
    return None


def data_url(workspace: Path) -> str | None:
    p = workspace / URL_FILE
    return p.read_text().strip() if p.is_file() else None
