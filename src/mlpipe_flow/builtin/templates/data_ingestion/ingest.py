"""Data ingestion: load the raw table named in ml-spec.yaml, clean it, snapshot it.

Sources: a CSV or Parquet file (the staged copy under data/raw/), or a SQL table/query
through a SQLAlchemy URL, e.g. `sqlite:///customers.db?table=customers` or
`postgresql://user:pw@host/db?query=SELECT * FROM customers`. The full URL is read from
$DATA_URL, else from .mlpipe/data-url (the spec only keeps a masked copy). Transient
database errors are retried with exponential backoff.

Run: `python -m data_ingestion.ingest` -> data/interim/dataset.csv + data/raw/snapshot.json
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
URL_FILE = ".mlpipe/data-url"
NUMERIC_TEXT_SHARE = 1.0  # an object column whose non-blank values all parse as numbers
RETRY_ATTEMPTS = 4
RETRY_BASE_DELAY_S = 0.5
CONNECT_TIMEOUT_S = 20  # PostgreSQL: seconds to wait for a connection (libpq waits forever)


class DataLoadError(ValueError):
    """The source cannot be read as a table; the message says which and what to do."""


def load_spec(root: Path = ROOT) -> dict[str, Any]:
    with open(root / "ml-spec.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def mask_url(url: str) -> str:
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*):[^@]*@", r"\1:***@", url)


def source_url(root: Path = ROOT) -> str | None:
    url = os.environ.get("DATA_URL") or os.environ.get("MLPIPE_DATA_URL")
    if url:
        return url
    p = root / URL_FILE
    return p.read_text(encoding="utf-8").strip() if p.is_file() else None


# -- files -------------------------------------------------------------------------
def read_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataLoadError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return _check_table(pd.read_parquet(path), path)
        except (OSError, ValueError) as e:
            raise DataLoadError(f"{path}: not a readable Parquet file ({e})") from None
    raw = path.read_bytes()
    if not raw.strip():
        raise DataLoadError(f"{path} is empty; give a CSV with a header row and data rows")
    if b"\x00" in raw[:65536]:
        raise DataLoadError(f"{path} is not a text table (it holds binary data); "
                            "give a CSV or Parquet file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataLoadError(f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                            f"{e.start}); re-save it as UTF-8") from None
    try:
        delimiter = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    try:
        df = pd.read_csv(io.StringIO(text), sep=delimiter, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataLoadError(f"{path} is not a table ({first}); give a CSV with a header row") from None
    return _check_table(df, path)


def _check_table(df: pd.DataFrame, where: object) -> pd.DataFrame:
    if df.shape[1] < 2:
        raise DataLoadError(f"{where} is not a table: found {df.shape[1]} column(s); need a "
                            "header row and at least two columns (features and a target)")
    if len(df) == 0:
        raise DataLoadError(f"{where} has a header but no data rows")
    unnamed = [c for c in df.columns if str(c).startswith("Unnamed: ")]
    if len(unnamed) > df.shape[1] / 2:
        raise DataLoadError(f"{where} is not a table: most columns have no header name")
    return df


# -- databases ---------------------------------------------------------------------
def split_sql_url(url: str) -> tuple[str, str | None, str | None]:
    """`sqlite:///x.db?table=t` -> (`sqlite:///x.db`, 't', None); `?query=...` likewise."""
    base, _, qs = url.partition("?")
    params = parse_qsl(qs, keep_blank_values=True)
    table = next((v for k, v in params if k == "table"), None)
    query = next((v for k, v in params if k == "query"), None)
    rest = urlencode([(k, v) for k, v in params if k not in ("table", "query")])
    return (f"{base}?{rest}" if rest else base), table, query


def read_sql(url: str, attempts: int = RETRY_ATTEMPTS) -> pd.DataFrame:
    import sqlalchemy as sa
    from sqlalchemy import exc

    engine_url, table, query = split_sql_url(url)
    shown = mask_url(engine_url)
    if not table and not query:
        raise DataLoadError(f"{shown}: say what to read with ?table=NAME or ?query=SELECT...")
    if engine_url.startswith("sqlite"):
        db = engine_url.split(":///", 1)[-1]
        if db and db != ":memory:" and not Path(db).is_file():
            raise DataLoadError(f"cannot reach database {shown}: {db} does not exist")
    try:
        parsed = sa.engine.make_url(engine_url)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}  # else: no limit
        engine = sa.create_engine(parsed, **kwargs)
    except (exc.ArgumentError, exc.NoSuchModuleError, ModuleNotFoundError, ValueError) as e:
        raise DataLoadError(f"cannot use database URL {shown}: {e}") from None
    delay = RETRY_BASE_DELAY_S
    try:
        for attempt in range(1, attempts + 1):
            try:
                with engine.connect() as conn:
                    df = read_frame(conn, read_statement(conn, table, query))
                return _check_table(df, f"{shown} ({table or 'query'})")
            except (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError,
                    exc.TimeoutError) as e:
                if attempt == attempts or not _transient(e):
                    first = str(e.orig if hasattr(e, "orig") else e).splitlines()[0]
                    raise DataLoadError(f"cannot read from database {shown}: {first}") from None
                time.sleep(delay)
                delay *= 2
            except exc.DBAPIError as e:
                first = str(e.orig).splitlines()[0]
                raise DataLoadError(f"cannot read from database {shown}: {first}") from None
    finally:
        engine.dispose()
    raise AssertionError("unreachable")


def read_frame(conn: Any, sql: Any) -> pd.DataFrame:
    """The rows as a frame; coerce_float: a NUMERIC column's Decimal values become floats.
    pandas wraps a failing statement's SQLAlchemy error in its own DatabaseError: unwrapped
    here, so a missing table or a lost connection is told (and retried) as what it is."""
    try:
        return pd.read_sql(sql, conn, coerce_float=True)
    except pd.errors.DatabaseError as e:
        if isinstance(e.__cause__, Exception):
            raise e.__cause__ from None
        raise


def read_statement(conn: Any, table: str | None, query: str | None) -> Any:
    """The statement that reads the source. A database server returns a table's rows in no
    promised order (PostgreSQL's changes as rows are updated), so a table with a primary key is
    read in its order: the same rows give the same frame, snapshot hash and splits. SQLite
    reads a table in rowid order already, and a ?query= says its own order."""
    import sqlalchemy as sa
    from sqlalchemy import exc

    if query:
        return sa.text(query)
    sql = sa.select(sa.text("*")).select_from(sa.table(table or ""))
    if conn.dialect.name == "sqlite":
        return sql
    try:
        keys = sa.inspect(conn).get_pk_constraint(table or "").get("constrained_columns") or []
    except exc.NoSuchTableError:
        keys = []  # reading it says so, in the driver's words
    return sql.order_by(*(sa.column(k) for k in keys)) if keys else sql


def _transient(e: Exception) -> bool:
    text = str(e).lower()
    permanent = ("no such table", "does not exist", "syntax error", "permission denied",
                 "authentication failed", "unknown database")
    return not any(p in text for p in permanent)


# -- cleaning and snapshots --------------------------------------------------------
def is_numeric_text(s: pd.Series) -> bool:
    """Whether the non-blank values of a text column all parse as numbers. Each distinct value
    is parsed once (weighted by its count), so a column of a few categories costs one pass."""
    text = s.dropna().astype(str).str.strip()
    counts = text[text != ""].value_counts()
    if counts.empty:
        return False
    parsed = pd.to_numeric(pd.Series(counts.index.astype(object)), errors="coerce")
    return bool(counts.to_numpy()[parsed.notna().to_numpy()].sum() / counts.sum()
                >= NUMERIC_TEXT_SHARE)


def numeric_text_columns(df: pd.DataFrame) -> list[str]:
    """Text columns that hold numbers (and blanks), e.g. Telco's TotalCharges. A column with any
    other text stays text: the splits keep the raw cells, junk included; the model's
    preprocessing decides what to make of it."""
    return [col for col in df.columns
            if not (pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]))
            and is_numeric_text(df[col])]


def _stripped(s: pd.Series) -> pd.Series:
    """Text trimmed, blank -> missing, as Python objects. pandas' own string columns (what
    read_csv gives) are trimmed by Arrow; object columns (a database's mixed values) cell by cell."""
    if pd.api.types.is_object_dtype(s):
        s = s.where(s.isna(), s.astype(str).str.strip())
    else:
        s = s.str.strip()
    return s.mask(s == "").astype(object)


def clean(df: pd.DataFrame) -> pd.DataFrame:
    """Strip text, blank text -> missing, numeric text -> numbers."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            out[col] = _stripped(s)
    for col in numeric_text_columns(out):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    return out


def frame_sha256(df: pd.DataFrame) -> str:
    """The content hash of a table, every cell of it: sha256 over its column names and dtypes and
    pandas' 64-bit hash of each row (`pandas.util.hash_pandas_object`, vectorised: a second for
    millions of rows, where writing them out as CSV to hash took minutes)."""
    h = hashlib.sha256(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    rows = pd.util.hash_pandas_object(df, index=False)
    h.update(rows.to_numpy(dtype="uint64").tobytes())
    return h.hexdigest()


def load_raw(spec: dict[str, Any], root: Path = ROOT) -> pd.DataFrame:
    src = spec["data_source"]
    if src["kind"] == "url":
        url = source_url(root)
        if not url:
            raise DataLoadError(f"the data source is a database but neither $DATA_URL nor "
                                f"{URL_FILE} holds its URL")
        return read_sql(url)
    return read_file(root / src["path"])


def snapshot(df: pd.DataFrame, spec: dict[str, Any], root: Path = ROOT) -> dict[str, Any]:
    """Version the raw data by content hash: data/raw/snapshot.json."""
    record = {
        "sha256": frame_sha256(df),
        "rows": int(len(df)),
        "columns": [str(c) for c in df.columns],
        "source": spec["data_source"].get("path") or spec["data_source"].get("url"),
        "taken_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = root / "data/raw/snapshot.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def ingest(root: Path = ROOT) -> pd.DataFrame:
    spec = load_spec(root)
    raw = load_raw(spec, root)
    snapshot(raw, spec, root)
    df = clean(raw)
    out = root / "data/interim/dataset.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return df


def main() -> None:
    df = ingest()
    print(f"ingested {len(df)} rows x {df.shape[1]} columns -> data/interim/dataset.csv")


if __name__ == "__main__":
    main()
