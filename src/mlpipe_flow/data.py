"""Staging --data before phase 1: a file is copied to data/raw/, a database URL is recorded
with its password masked. Agents and gates then find the data in the same place."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

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
    """`text` with `url` masked, and its password too wherever it appears on its own (as
    written in the URL or decoded), e.g. in a driver's message; a password shorter than 4
    characters is left alone there (masking it would garble the text, not protect it)."""
    if not url:
        return text
    text = text.replace(url, mask_url(url))
    for secret in url_passwords(url):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def url_passwords(url: str) -> list[str]:
    """The password of a URL as written (percent-encoded) and decoded; [] when it has none."""
    from urllib.parse import unquote

    m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*:([^@]*)@", url)
    if not m or not m.group(1):
        return []
    return sorted({m.group(1), unquote(m.group(1))}, key=len, reverse=True)


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


# The children below get the URL on stdin, never in argv: a command line is visible to every
# user of the machine (ps), and the URL may hold a password.
SNAPSHOT = """
import json
import sys

import pandas as pd
import sqlalchemy as sa

args = json.loads(sys.stdin.read())
engine = sa.create_engine(args["engine_url"])
try:
    table, query = args["table"], args["query"]
    sql = sa.text(query) if query else sa.select(sa.text("*")).select_from(sa.table(table))
    with engine.connect() as conn:
        frame = pd.read_sql(sql, conn)  # coerce_float: a numeric column's Decimals are floats
except Exception as e:  # one line, the driver's own words (pandas wraps SQLAlchemy's error)
    cause = e.__cause__ if isinstance(e, pd.errors.DatabaseError) and e.__cause__ else e
    orig = getattr(cause, "orig", None) or cause
    first = (str(orig).strip().splitlines() or [""])[0]
    sys.exit(f"{type(orig).__name__}: {first}")
finally:
    engine.dispose()
frame.to_csv(args["dest"], index=False)
print(len(frame))
"""


def snapshot_url(url: str, dest: Path, python: str, timeout_s: float = 600) -> str | None:
    """Copy the rows a database URL names into `dest` (CSV), in a child process of `python`;
    returns why it could not (None when it did). The gates compare the splits with these rows:
    what the database held when the run started, not what it holds when a gate runs."""
    import json

    from mlpipe_flow import proc

    engine_url, table, query = split_sql_url(url)
    if not table and not query:
        return "the URL names no ?table= or ?query="
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    args = {"engine_url": engine_url, "table": table, "query": query, "dest": str(tmp)}
    res = proc.run([python, "-c", SNAPSHOT], cwd=dest.parent, timeout_s=timeout_s,
                   stdin_text=json.dumps(args),
                   env=proc.scrubbed_env(extra={"PYTHONDONTWRITEBYTECODE": "1"}))
    if not res.ok:
        tmp.unlink(missing_ok=True)
        tail = [ln for ln in res.output.splitlines() if ln.strip()][-1:]
        return mask_secrets(f"{res.describe()}: {' '.join(tail)}", url)[:300]
    os.replace(tmp, dest)
    return None


PROBE_MARK = "MLPIPE-PROBE "
PROBE = """
import json
import sys


args = json.loads(sys.stdin.read())


def done(**answer):
    print(args["mark"] + json.dumps(answer), flush=True)
    sys.exit(0)


table, query = args["table"], args["query"]
try:
    import sqlalchemy as sa
    from sqlalchemy import exc
except ImportError as e:
    done(problem="driver", detail=str(e))
try:
    url = sa.engine.make_url(args["engine_url"])
    kwargs = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        kwargs["connect_args"] = {"connect_timeout": 20}
    engine = sa.create_engine(url, **kwargs)
except (exc.ArgumentError, exc.NoSuchModuleError, ValueError) as e:
    done(problem="url", detail=(str(e).strip().splitlines() or [""])[0])
except ImportError as e:
    done(problem="driver", detail=str(e), backend=url.get_backend_name())
connected = False
try:
    with engine.connect() as conn:
        connected = True
        if table:
            inspector = sa.inspect(conn)
            views = inspector.get_view_names()
            if not inspector.has_table(table) and table not in views:
                done(problem="table", names=sorted({*inspector.get_table_names(), *views}))
            columns = [c["name"] for c in inspector.get_columns(table)]
        else:
            res = conn.execute(sa.text(f"SELECT * FROM ({query}) AS q LIMIT 0"))
            columns = list(res.keys())
except exc.DBAPIError as e:
    first = (str(e.orig).strip().splitlines() or [""])[0]
    done(problem="query" if connected else "connect", detail=f"{type(e.orig).__name__}: {first}")
finally:
    engine.dispose()
done(columns=[str(c) for c in columns])
"""


def probe_url(url: str, python: str, timeout_s: float = 90) -> dict[str, Any]:
    """Ask the database a URL names, in a child process of `python` (mlpipe itself imports no
    SQLAlchemy or driver), whether its `?table=` exists, or its `?query=` runs: the answer is
    `{"columns": [...]}`, or `{"problem": "url"|"driver"|"connect"|"table"|"query"|"probe",
    "detail": ..., "names": [the tables there, for "table"]}` with the password masked.
    Nothing is written: the child runs in a temporary folder that is removed afterwards."""
    import json

    from mlpipe_flow import proc

    engine_url, table, query = split_sql_url(url)
    args = {"engine_url": engine_url, "table": table, "query": query, "mark": PROBE_MARK}
    with tempfile.TemporaryDirectory(prefix="mlpipe-probe-") as scratch:
        res = proc.run([python, "-c", PROBE], cwd=Path(scratch), timeout_s=timeout_s,
                       stdin_text=json.dumps(args),
                       env=proc.scrubbed_env(extra={"PYTHONDONTWRITEBYTECODE": "1"}))
    for line in reversed(res.output.splitlines()):
        if line.startswith(PROBE_MARK):
            try:
                answer = json.loads(line[len(PROBE_MARK):])
            except ValueError:
                break
            if isinstance(answer, dict):
                if "detail" in answer:
                    answer["detail"] = mask_secrets(str(answer["detail"]), url)[:300]
                return answer
    if res.timed_out:
        detail = f"no answer within {timeout_s:.0f} s"
    else:
        tail = [ln for ln in res.output.splitlines() if ln.strip()][-1:]
        detail = mask_secrets(f"{res.describe()}: {' '.join(tail)}", url)[:300]
    return {"problem": "probe", "detail": detail}


def data_url(workspace: Path) -> str | None:
    p = workspace / URL_FILE
    return p.read_text().strip() if p.is_file() else None
