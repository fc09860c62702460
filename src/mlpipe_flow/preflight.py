"""What a run checks before it creates anything: the problem text, the interpreter the gates
use, and the data file's table (names, the target's classes). Each failure is one line naming
the value and what to do (exit 2); the workspace is untouched.

The table checks read the CSV header with the csv module and, with --target, that one column;
a Parquet file's names come from its schema. They refuse what no later phase could use:
duplicate column names, an unnamed column (but a first one counting 0, 1, 2, ...: a pandas
index written by `to_csv()`, which agents keep as an identifier), a semicolon-separated file,
and a target class with fewer rows than a stratified train/valid/test split and 5-fold
cross-validation need.
"""

from __future__ import annotations

import csv
import re
import sqlite3
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from mlpipe_flow import proc
from mlpipe_flow.config import Config
from mlpipe_flow.errors import ConfigError, DataError, UsageError
from mlpipe_flow.workflow import Workflow

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


def settle_url(value: str, python: str | None = None, target: str | None = None) -> str:
    """A SQLite URL made absolute against the current folder (`sqlite:///crm.db` means ./crm.db
    where the user typed it, not in the workspace the agents run in), after checking the file
    and its `?table=` exist. Any other URL is returned as given; given `python` (the gates'
    interpreter, which has SQLAlchemy and the drivers), its database is asked first
    (check_server_url)."""
    m = SQLITE_URL.match(value)
    if m is None:
        if python is not None:
            check_server_url(value, python, target)
        return value
    if not m.group(2):
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


def check_server_url(value: str, python: str, target: str | None = None) -> None:
    """A database server's URL (PostgreSQL, MySQL, ...) must name what to read, and `python`
    must reach it with its driver and find the `?table=` (or run the `?query=` with LIMIT 0);
    with --target, the target must be one of its columns. The question is asked in a child
    process (data.probe_url); every message shows the URL with its password masked."""
    from mlpipe_flow.data import mask_url, probe_url, split_sql_url

    _, table, query = split_sql_url(value)
    shown = mask_url(value)
    if not table and not query:
        raise DataError(f"--data {shown}: the URL names nothing to read; add ?table=NAME or "
                        "?query=SELECT ... (URL-encoded)")
    answer = probe_url(value, python)
    problem, detail = answer.get("problem"), str(answer.get("detail") or "")
    if problem == "driver":
        hint = ("say postgresql+psycopg:// (psycopg 3, in mlpipe's [ml] extra), or install "
                "psycopg2 there" if "'psycopg2" in detail else
                "install it there: pip install 'psycopg[binary]' (in mlpipe's [ml] extra)"
                if "'psycopg" in detail else
                "install the driver the URL names into that interpreter")
        raise DataError(f"--data {shown}: {python} cannot load the database driver ({detail}); "
                        f"{hint}")
    if problem == "url":
        raise DataError(f"--data {shown}: not a database URL SQLAlchemy can use ({detail})")
    if problem == "connect":
        raise DataError(f"--data {shown}: cannot connect to the database: {detail}")
    if problem == "table":
        names = [str(n) for n in answer.get("names") or []]
        near = [n for n in names if n.lower() == str(table).lower()]
        hint = (f"; names are case-sensitive: did you mean {near[0]!r}?" if near else
                "; name one with ?table=NAME")
        raise DataError(f"--data {shown}: the database has no table {table!r} (it has: "
                        f"{', '.join(names[:10]) + (', ...' if len(names) > 10 else '') or 'no tables'})"
                        f"{hint}")
    if problem == "query":
        raise DataError(f"--data {shown}: the ?query= does not run on the database: {detail}")
    if problem is not None or not isinstance(answer.get("columns"), list):
        raise DataError(f"--data {shown}: could not ask the database for its table ({detail})")
    columns = [str(c) for c in answer["columns"]]
    _check_names(shown, columns)
    if target is not None:
        _check_target(shown, columns, target)


@dataclass(frozen=True)
class CompletenessRule:
    """A gate's floor on the share of non-missing cells (phase 2's `completeness`): data below
    it cannot pass, since the splits hold the raw cells as they are."""

    phase: str
    check: str
    min_completeness: float


def completeness_rule(wf: Workflow) -> CompletenessRule | None:
    from mlpipe_flow.checks.data_checks import CompletenessParams

    for phase in wf.phases:
        for check in wf.gates[phase.gate].checks:
            if check.kind == "splits_completeness":
                floor = CompletenessParams.model_validate(check.params).min_completeness
                return CompletenessRule(phase.id, check.id, floor)
    return None


def check_table(value: str, target: str | None, rule: CompletenessRule | None = None) -> None:
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
    index_column = header[0].strip() == "" and _row_counter(path, 0)
    _check_names(value, header[1:] if index_column else header, offset=int(index_column))
    if target is not None:
        _check_target(value, header, target)
        _check_classes(value, path, header.index(target), target)
    if rule is not None:
        _check_completeness(value, path, rule)


def _width(path: Path) -> int:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return len(next(csv.reader(f), []))


MISSING = frozenset({"", "NA", "NaN", "nan", "null"})  # as the completeness check counts them


def _check_completeness(value: str, path: Path, rule: CompletenessRule) -> None:
    """Over the columns that hold a value at all: an empty column is no feature (an agent drops
    it; an empty target is refused by name later)."""
    rows_seen = 0
    missing: Counter[int] = Counter()
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f)
        next(rows, None)
        for row in rows:
            rows_seen += 1
            for i, v in enumerate(row):
                if v.strip() in MISSING:
                    missing[i] += 1
    kept = [n for n in missing.values() if n < rows_seen]
    width = len(missing) - len(kept)  # columns empty throughout, left out
    cells = rows_seen * (_width(path) - width)
    missing_cells = sum(kept)
    share = 1 - missing_cells / cells if cells else 1.0
    if share <= rule.min_completeness:
        raise DataError(f"--data {value}: only {share:.1%} of its cells hold a value "
                        f"({missing_cells:,} of {cells:,} missing); {rule.phase}'s check "
                        f"{rule.check!r} needs more than {rule.min_completeness:.0%} of the "
                        "splits' cells, which keep the "
                        "raw cells as they are: fill or drop the sparse columns or rows first, "
                        "or lower min_completeness in your workflow's gate")


def _row_counter(path: Path, index: int) -> bool:
    """The column holds 0, 1, 2, ... in order: a pandas index written by `to_csv()` (pandas
    reads it back as `Unnamed: 0`; agents keep it as an identifier, never a feature)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f)
        next(rows, None)
        expected = 0
        for row in rows:
            if not row:
                continue
            if index >= len(row) or row[index].strip() != str(expected):
                return False
            expected += 1
    return expected > 0


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


def _check_names(value: str, names: list[str], offset: int = 0) -> None:
    blank = [i + 1 + offset for i, n in enumerate(names) if not n.strip()]
    if blank:
        what = ("a pandas index written by to_csv() without index=False" if blank == [1]
                else "columns need names")
        raise DataError(f"--data {value}: column {', '.join(map(str, blank))} has no name ({what}); "
                        "write the file again with a name for every column (or without the "
                        "index: index=False)")
    dup = [n for n, k in Counter(names).items() if k > 1]
    if dup:
        where = "; ".join(f"{n!r} at columns "
                          f"{', '.join(str(i + 1 + offset) for i, m in enumerate(names) if m == n)}"
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
