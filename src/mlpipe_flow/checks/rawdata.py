"""The raw data as mlpipe staged it, and cells normalised the same way on every side, so the
phase-2 checks can trace each split row to a raw row.

Where the raw rows come from (`load_raw`):
- a recorded run, file source: the staged `data/raw/<file>`, which must still have the sha256
  mlpipe recorded when it staged it (else the raw data changed since: failed);
- a recorded run, database source: the rows mlpipe copied into its records (`raw-snapshot.csv`);
- no recorded run (a hand-made folder): the spec's `data_source` as found, said in the evidence.

Normalisation of a cell (`Column`): text trimmed; blank and the usual NA spellings missing;
text that parses as a finite number is that number (so 1 == 1.0 == " 1 "); `true`/`false`
in any case lower-cased. Everything is vectorised (pandas/numpy); rows are compared by 64-bit
hashes of their normalised cells.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.models import CheckResult

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SPEC_FILE = "ml-spec.yaml"
SPLIT_NAMES = ("train", "valid", "test")
SPLITS = [f"data/splits/{n}.csv" for n in SPLIT_NAMES]
#: pandas' default NA spellings: what any reader of the data treats as missing
NA_TOKENS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
             "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
_PRIME = 0x100000001B3
_MISSING = 0x9E3779B97F4A7C15
_TEXT_SALT = 0x5851F42D4C957F2D


class Unmeasurable(Exception):
    """The check cannot compare with the raw data; carries the result to return."""

    def __init__(self, res: CheckResult) -> None:
        super().__init__(res.message)
        self.result = res


@dataclass
class Raw:
    frame: pd.DataFrame  # every cell as text, as read
    where: str  # what was read, for messages
    note: str = ""  # how the raw data was found (no recorded run, ...)
    columns: dict[str, Column] = field(default_factory=dict)

    def col(self, name: str) -> Column:
        if name not in self.columns:
            self.columns[name] = Column.of(self.frame[name])
        return self.columns[name]


# -- reading ----------------------------------------------------------------------------
def read_text_table(path: Path) -> pd.DataFrame:
    """A CSV (delimiter sniffed) or Parquet file with every cell as text (a Parquet table as
    pandas writes it to CSV, the way the splits were written)."""
    import io

    import pandas as pd

    if path.suffix.lower() in (".parquet", ".pq"):
        text = pd.read_parquet(path).to_csv(index=False)
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    with path.open(encoding="utf-8-sig", newline="") as f:
        sample = f.read(65536)
    try:
        sep = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        sep = ","
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def read_split(path: Path) -> pd.DataFrame:
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def load_raw(ctx: CheckContext, spec: dict[str, Any]) -> Raw:
    """The raw rows this run started from (see the module doc); raises Unmeasurable with a
    failed result (the raw data changed) or an error result (nothing to compare with)."""
    try:
        return _load_raw(ctx, spec)
    except Unmeasurable:
        raise
    except Exception as e:  # noqa: BLE001 - unreadable raw data: nothing to compare with
        first = str(e).splitlines()[0] if str(e) else ""
        raise Unmeasurable(result("error", f"cannot read the raw data: {type(e).__name__}: "
                                  f"{first[:200]}")) from None


def _load_raw(ctx: CheckContext, spec: dict[str, Any]) -> Raw:
    from mlpipe_flow.state import file_sha256

    records = ctx.records()
    if records is None:
        src = spec.get("data_source") or {}
        note = "no recorded run: compared with the spec's data_source as found"
        if src.get("kind") == "file" and src.get("path"):
            p = ctx.path(str(src["path"]))
            if not p.is_file():
                raise Unmeasurable(result("error", f"{note}, but {src['path']} is not a file"))
            return Raw(read_text_table(p), str(src["path"]), note)
        raise Unmeasurable(result("error", f"{note}, and a database source cannot be compared "
                                  "without the rows mlpipe copied when the run started"))
    raw = records.raw()
    if raw is None:
        why = records.missing() if not records.exists() else \
            f"mlpipe's records of run {records.run_id} hold no raw-data record"
        raise Unmeasurable(result("error", f"cannot compare with the raw data: {why}"))
    if raw.get("kind") == "url":
        if not raw.get("snapshot") or not records.snapshot.is_file():
            why = raw.get("snapshot_error") or "no snapshot of the database rows was recorded"
            raise Unmeasurable(result("error", f"cannot compare with the raw data: {why}"))
        return Raw(read_text_table(records.snapshot), f"the database rows recorded at staging "
                   f"({raw.get('source')})")
    rel = str(raw.get("staged") or "")
    p = ctx.path(rel)
    if not rel or not p.is_file():
        raise Unmeasurable(result("failed", f"the staged raw data {rel or '(unknown)'} is gone "
                                  "from the workspace"))
    digest = file_sha256(p)
    if raw.get("sha256") and digest != raw["sha256"]:
        raise Unmeasurable(result("failed", f"{rel} changed since mlpipe staged it (sha256 "
                                  f"{digest[:12]}..., recorded {str(raw['sha256'])[:12]}...): "
                                  "the raw data may not be edited", staged=rel))
    return Raw(read_text_table(p), rel)


# -- normalised cells --------------------------------------------------------------------
@dataclass
class Column:
    missing: np.ndarray  # bool
    number: np.ndarray  # float64, NaN where the cell is not a number
    text: np.ndarray  # object: normalised text where the cell is text, else None

    @classmethod
    def of(cls, s: pd.Series) -> Column:
        import numpy as np
        import pandas as pd

        if pd.api.types.is_bool_dtype(s.dtype):
            s = s.astype(object).map(lambda v: None if v is None else str(v))
        if pd.api.types.is_numeric_dtype(s.dtype):
            num = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            missing = ~np.isfinite(num)
            return cls(missing, np.where(missing, np.nan, num + 0.0),
                       np.full(len(s), None, dtype=object))
        isnull = s.isna().to_numpy()
        text = s.where(~isnull, "").astype("string[pyarrow]").str.strip()
        missing = isnull | text.isin(NA_TOKENS).to_numpy(dtype=bool)
        is_num = text.str.fullmatch(_NUMBER).to_numpy(dtype=bool, na_value=False) & ~missing
        num = np.full(len(s), np.nan)
        if is_num.any():
            num[is_num] = _floats(text[is_num])
        num[~np.isfinite(num)] = np.nan
        is_num &= ~np.isnan(num)
        lower = text.str.lower()
        text = text.where(~lower.isin(("true", "false")), lower)
        is_text = ~missing & ~is_num
        texts = cast("np.ndarray", np.where(is_text, text.to_numpy(dtype=object), None))
        return cls(missing, num + 0.0, texts)

    @property
    def is_number(self) -> np.ndarray:
        import numpy as np

        return ~self.missing & ~np.isnan(self.number)

    @property
    def is_text(self) -> np.ndarray:
        import numpy as np

        return ~self.missing & np.isnan(self.number)

    def hashes(self, grid: int | None = None, digits: int = 3) -> np.ndarray:
        """One uint64 per cell: exact (grid None) or numbers rounded to `digits` significant
        digits on grid 0 or a grid shifted by half a step (1), text case- and space-folded."""
        import numpy as np
        from pandas.util import hash_array

        out = np.full(len(self.missing), _MISSING, dtype="uint64")
        num, txt = self.is_number, self.is_text
        if num.any():
            x = self.number[num]
            if grid is None:
                out[num] = hash_array(x)
            else:
                mag = np.floor(np.log10(np.where(x == 0, 1.0, np.abs(x)))) - (digits - 1)
                q = np.floor(x / 10.0 ** mag + 0.5 * grid)
                q = np.where(x == 0, 0.0, q)
                out[num] = hash_array(q + 0.0) * np.uint64(_PRIME) ^ hash_array(mag + 0.0)
        if txt.any():
            t = self.text[txt]
            if grid is not None:
                import pandas as pd

                t = pd.Series(t, dtype=object).str.lower().str.replace(
                    r"\s+", " ", regex=True).str.strip().to_numpy(dtype=object)
            out[txt] = hash_array(t.astype(object)) ^ np.uint64(_TEXT_SALT)
        return out


#: what reads as a number (as float() reads it, without "inf", "nan" or "1_000")
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


def _floats(text: pd.Series) -> np.ndarray:
    """Cells that match _NUMBER as float64 (Arrow's cast: fast and exact, like float())."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    return np.asarray(pc.cast(pa.array(text), pa.float64()).to_numpy(zero_copy_only=False),
                      dtype="float64")


def isin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.isin by a hash table (linear, not a sort)."""
    import pandas as pd

    return pd.Series(a).isin(pd.Series(b)).to_numpy(dtype=bool, copy=True)


def unique(a: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.unique(pd.Series(a)).astype(a.dtype)


def row_hashes(columns: list[Column], grid: int | None = None, digits: int = 3) -> np.ndarray:
    """One uint64 per row over `columns` (in the order given); on a grid, numbers rounded to
    `digits` significant digits."""
    import numpy as np

    if not columns:
        raise ValueError("no columns to hash")
    acc = np.full(len(columns[0].missing), 0xCBF29CE484222325, dtype="uint64")
    with np.errstate(over="ignore"):
        for c in columns:
            acc = (acc ^ c.hashes(grid, digits)) * np.uint64(_PRIME)
    return acc


@dataclass
class Splits:
    frames: dict[str, pd.DataFrame]  # name -> cells as text
    columns: dict[str, dict[str, Column]] = field(default_factory=dict)

    def col(self, split: str, name: str) -> Column:
        cols = self.columns.setdefault(split, {})
        if name not in cols:
            cols[name] = Column.of(self.frames[split][name])
        return cols[name]

    def hashes(self, split: str, names: list[str], grid: int | None = None) -> np.ndarray:
        return row_hashes([self.col(split, n) for n in names], grid)


def load_splits(ctx: CheckContext, rels: list[str]) -> Splits:
    frames = {}
    for rel in rels:
        p = ctx.path(rel)
        if not p.is_file():
            raise Unmeasurable(result("failed", f"{rel} does not exist"))
        frames[Path(rel).stem] = read_split(p)
    return Splits(frames)


def spec_unchanged(ctx: CheckContext) -> CheckResult | None:
    """A failed result when ml-spec.yaml differs from the file phase 1 passed with (mlpipe's
    records): the splits, schema and DAGs are judged against the spec phase 1 left, so moving
    the goalposts (fewer features, other split shares, another schedule) is itself caught."""
    from mlpipe_flow.state import file_sha256

    records = ctx.records()
    recorded = records.recorded_hash(SPEC_FILE) if records is not None else None
    p = ctx.path(SPEC_FILE)
    if recorded and p.is_file() and file_sha256(p) != recorded:
        return result("failed", f"{SPEC_FILE} changed since phase 1 passed with it (sha256 "
                      f"{file_sha256(p)[:12]}..., recorded {recorded[:12]}...): later phases "
                      "may not edit the spec")
    return None


def spec_columns(ctx: CheckContext) -> tuple[dict[str, Any], list[str], list[str], str]:
    """(spec, id columns, feature columns, target) or Unmeasurable(failed)."""
    changed = spec_unchanged(ctx)
    if changed is not None:
        raise Unmeasurable(changed)
    spec = ctx.spec()
    if not spec or not spec.get("target") or not spec.get("feature_columns"):
        raise Unmeasurable(result("failed", "ml-spec.yaml is missing or names no target and "
                                  "feature_columns"))
    return (spec, [str(c) for c in spec.get("id_columns") or []],
            [str(c) for c in spec["feature_columns"]], str(spec["target"]))
