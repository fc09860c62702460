"""What a run checks before it creates anything: the problem text, the interpreter the gates
use, and the data file's table (names, the target's classes). Each failure is one line naming
the value and what to do (exit 2); the workspace is untouched.

The table checks read the CSV header with the csv module and, with --target, that one column;
a Parquet file's names come from its schema. They refuse what no later phase could use:
duplicate column names, an unnamed column (a pandas index written by `to_csv()` without
`index=False`), a semicolon-separated file, and a target class with fewer rows than a
stratified train/valid/test split and 5-fold cross-validation need.
"""

from __future__ import annotations

import csv
import re
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qsl

from mlpipe_flow import proc
from mlpipe_flow.config import Config
from mlpipe_flow.errors import ConfigError, DataError, UsageError

#: rows a class needs: 5 folds of cross-validation on train+valid (85%) with 2 rows each
MIN_CLASS_ROWS = 10


def check_problem(problem: str) -> None:
    if not problem.strip():
        raise UsageError('the problem is empty: say what to predict, e.g. mlpipe run '
                         '"predict customer churn" --data customers.csv')


def check_python(config: Config) -> None:
    python = config.python
    source = config.describe()["python"]["source"]
    res = proc.run([python, "-c", "import sys; print(sys.version_info[0])"], cwd=Path("/"),
                   timeout_s=60)
    if not res.ok or res.output.strip() != "3":
        why = res.output.strip().splitlines()[-1][:120] if res.output.strip() else res.describe()
        raise ConfigError(f"{source}: field 'python': {python} cannot run Python 3 ({why}); set it "
                          "to a Python 3 interpreter, or remove it to use mlpipe's own")


SQLITE_URL = re.compile(r"^(sqlite(?:\+\w+)?:///)([^?]*)(\?.*)?$")


def settle_url(value: str) -> str:
    """A SQLite URL made absolute against the current folder (`sqlite:///crm.db` means ./crm.db
    where the user typed it, not in the workspace the agents run in), after checking the file
    and its `?table=` exist; other URLs are returned as given (their server is asked later)."""
    m = SQLITE_URL.match(value)
    if m is None or not m.group(2):
        return value
    prefix, name, query = m.group(1), m.group(2), m.group(3) or ""
    path = Path(name).expanduser().absolute()
    if not path.is_file():
        raise DataError(f"--data {value}: no SQLite database at {path}; give the path of an "
                        "existing .db file (sqlite:///relative.db or sqlite:////absolute.db)")
    table = dict(parse_qsl(query.lstrip("?"))).get("table")
    if table:
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
                names = [r[0] for r in con.execute(
                    "select name from sqlite_master where type in ('table', 'view')")]
        except sqlite3.DatabaseError as e:
            raise DataError(f"--data {value}: {path} is not a readable SQLite database ({e})") \
                from None
        if table not in names:
            raise DataError(f"--data {value}: {path} has no table {table!r} (it has: "
                            f"{', '.join(names[:10]) or 'no tables'}); name one with ?table=NAME")
    return f"{prefix}{path}{query}"


def check_table(value: str, target: str | None) -> None:
    """The data file's columns (and the target's classes) before anything is staged."""
    path = Path(value).expanduser()
    if path.suffix.lower() in (".parquet", ".pq"):
        names = _parquet_names(path)
        _check_names(value, names)
        if target is not None:
            _check_target(value, names, target)
        return
    _check_text(value, path)
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise DataError(f"--data {value}: the file is empty; give a CSV with a header row")
    if len(header) == 1 and header[0].count(";") >= 1:
        raise DataError(f"--data {value}: looks semicolon-separated (header {header[0][:60]!r}); "
                        "mlpipe reads comma-separated CSV: convert it, e.g. pandas.read_csv(f, "
                        "sep=';', decimal=',').to_csv(out, index=False)")
    _check_names(value, header)
    if target is not None:
        _check_target(value, header, target)
        _check_classes(value, path, header.index(target), target)


def _check_text(value: str, path: Path) -> None:
    """Text, and UTF-8 throughout (read in blocks: a 2 GB file is not held in memory)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        with path.open("rb") as f:
            first = True
            while block := f.read(1 << 20):
                if first and b"\x00" in block[:65536]:
                    raise DataError(f"--data {value}: not a text table (it holds binary data); "
                                    "give a CSV or Parquet file")
                first = False
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as e:
                    where = offset + e.start
                    raise DataError(f"--data {value}: not UTF-8 text (byte 0x{block[e.start]:02x} "
                                    f"at offset {where}); re-save it as UTF-8") from None
                offset += len(block)
    except OSError as e:
        raise DataError(f"--data {value}: cannot read ({e.strerror})") from None


def _parquet_names(path: Path) -> list[str]:
    try:
        import pyarrow.parquet as pq

        return [str(n) for n in pq.read_schema(path).names]
    except ImportError:
        return []
    except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise DataError(f"--data {path}: not a readable Parquet file ({str(e)[:120]})") from None


def _check_names(value: str, names: list[str]) -> None:
    blank = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if blank:
        what = ("a pandas index written by to_csv() without index=False" if blank == [1]
                else "columns need names")
        raise DataError(f"--data {value}: column {', '.join(map(str, blank))} has no name ({what}); "
                        "write the file again with a name for every column (or without the "
                        "index: index=False)")
    dup = [n for n, k in Counter(names).items() if k > 1]
    if dup:
        where = "; ".join(f"{n!r} at columns {', '.join(str(i + 1) for i, m in enumerate(names) if m == n)}"
                          for n in dup[:3])
        raise DataError(f"--data {value}: duplicate column names: {where}; give each column its "
                        "own name")


def _check_target(value: str, names: list[str], target: str) -> None:
    if names and target not in names:
        shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
        raise DataError(f"--target {target!r} is not a column of {value} (columns: {shown})")


def _check_classes(value: str, path: Path, index: int, target: str) -> None:
    """A text target, or a numeric one with two values, is classes: each needs MIN_CLASS_ROWS
    rows. A numeric target with more values may be a regression: not judged here."""
    counts: Counter[str] = Counter()
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f)
        next(rows, None)
        for row in rows:
            if index < len(row) and row[index].strip():
                counts[row[index].strip()] += 1
    if not counts:
        raise DataError(f"--data {value}: the target {target!r} has no values")
    if len(counts) < 2:
        raise DataError(f"--data {value}: the target {target!r} has one value only "
                        f"({next(iter(counts))!r}); there is nothing to predict")
    if _numeric(counts) and len(counts) > 2:
        return
    label, rows_ = min(counts.items(), key=lambda t: t[1])
    if rows_ < MIN_CLASS_ROWS:
        shown = ", ".join(f"{c!r}={k}" for c, k in sorted(counts.items(), key=lambda t: t[1])[:6])
        raise DataError(f"--data {value}: class {label!r} of the target {target!r} has {rows_} "
                        f"row(s) (counts: {shown}); a stratified train/valid/test split and 5-fold "
                        f"cross-validation need at least {MIN_CLASS_ROWS} rows per class: add rows, "
                        "or merge or drop the rare classes")


def _numeric(counts: Counter[str]) -> bool:
    try:
        for k in counts:
            float(k)
    except ValueError:
        return False
    return True
