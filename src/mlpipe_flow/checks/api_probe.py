"""Rows for probing a serving API that its author could not have predicted: made at gate time
from the splits with a fresh random seed.

- `test` / `valid`: rows sampled from the test and validation splits;
- `perturbed`: copies of those rows with numeric features jittered within the range the splits
  show (rounded where the column holds whole numbers) and categorical features swapped to other
  values the splits show: an API that answers known rows from a lookup table fails on them;
- `vary:<feature>`: a few rows with one feature at a time set to values across its observed
  range (quantiles, or the most frequent categories): an API that ignores a feature, or handles
  it differently from the model, fails on them wherever the model's output depends on it; a
  feature that is missing in train is also sent as null (the model imputes it).

The frame holds the feature columns only, typed as the splits read with pandas defaults; the
same rows go to the saved model (through `artifacts.run_model`) and to the API (as JSON).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPLITS = ("train", "valid", "test")
QUANTILES = (0.02, 0.25, 0.5, 0.75, 0.98)
JITTER_SD = 0.3  # numeric jitter: this many standard deviations of the column
SWAP_P = 0.3  # chance that a categorical cell is swapped to another seen value
NUMERIC_P = 0.6  # chance that a numeric cell is jittered


@dataclass
class ProbeSet:
    frame: Any  # pandas DataFrame of the feature columns, one row per probe
    kinds: list[str]  # per row: "test", "valid", "perturbed" or "vary:<feature>"
    base: list[int]  # per row: the index (in frame) of the row it was made from, or itself
    seed: int
    features: list[str]
    numeric: list[str]
    whole: list[str] = field(default_factory=list)  # numeric columns holding whole numbers only

    def records(self, rows: list[int] | None = None) -> list[dict[str, Any]]:
        """JSON-ready records: numbers exact (whole-number columns as integers), missing values
        as None."""
        part = self.frame if rows is None else self.frame.iloc[rows]
        whole = set(self.whole)
        out = []
        for row in part.itertuples(index=False, name=None):
            rec = {}
            for c, v in zip(self.features, row, strict=True):
                v = _plain(v)
                rec[c] = int(v) if c in whole and isinstance(v, float) and v.is_integer() else v
            out.append(rec)
        return out


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and v != v):
        return None
    if hasattr(v, "item"):  # numpy scalar
        v = v.item()
        return None if isinstance(v, float) and v != v else v
    return v


def _whole(series: Any) -> bool:
    values = series.dropna()
    return bool(len(values)) and bool(((values % 1) == 0).all())


def perturb(base: Any, seen: Any, features: list[str], numeric: list[str], whole: set[str],
            rng: Any) -> Any:
    """Copies of `base` with numbers moved within the range `seen` shows (rounded where it
    holds whole numbers) and categories swapped to other values `seen` shows."""
    import numpy as np

    pert = base.copy()
    for c in features:
        col = seen[c].dropna() if c in seen.columns else seen.iloc[:0, 0]
        if col.empty:
            continue
        if c in numeric:
            lo, hi, sd = float(col.min()), float(col.max()), float(col.std() or 0.0)
            if sd == 0.0 or hi == lo:
                continue
            values = pert[c].to_numpy(dtype=float)
            hit = (rng.random(len(values)) < NUMERIC_P) & ~np.isnan(values)
            moved = np.clip(values + rng.normal(0.0, JITTER_SD * sd, len(values)), lo, hi)
            moved = np.round(moved) if c in whole else np.round(moved, 4)
            pert[c] = np.where(hit, moved, values)
        else:
            cats = col.astype(str).unique().tolist()
            if len(cats) < 2:
                continue
            values = pert[c].astype(object).to_numpy(copy=True)
            hits = np.nonzero(rng.random(len(values)) < SWAP_P)[0]
            picks = rng.integers(len(cats) - 1, size=len(hits))
            for i, k in zip(hits, picks, strict=True):
                others = [v for v in cats if v != str(values[i])]
                values[i] = others[min(int(k), len(others) - 1)]
            pert[c] = values
    return pert


def _read(splits: Path, features: list[str]) -> tuple[dict[str, Any], Any, list[str], set[str]]:
    """The splits, the values to move to (train's, else all splits'), the numeric features and
    those holding whole numbers."""
    import pandas as pd

    frames = {}
    for name in SPLITS:
        p = splits / f"{name}.csv"
        if p.is_file():
            frames[name] = pd.read_csv(p, low_memory=False)
    if "test" not in frames:
        raise FileNotFoundError(f"{splits / 'test.csv'} does not exist")
    missing = [c for c in features if c not in frames["test"].columns]
    if missing:
        raise KeyError(f"feature column(s) {missing[:5]} are not in the test split")
    pool = [frames["train"]] if "train" in frames else list(frames.values())
    seen = pd.concat([f[[c for c in features if c in f.columns]] for f in pool],
                     ignore_index=True)
    numeric = [c for c in features if frames["test"][c].dtype.kind in "biuf"
               and c in seen.columns and seen[c].dtype.kind in "biuf"]
    whole = {c for c in numeric if _whole(seen[c])}
    return frames, seen, numeric, whole


def load_rows(splits: Path, features: list[str], n: int, seed: int | None = None) -> ProbeSet:
    """`n` rows for a load test, each a perturbed copy of a test row: distinct requests, so an
    API cannot answer the load from a cache of the test split's answers."""
    import numpy as np
    import pandas as pd

    seed = secrets.randbelow(2**31) if seed is None else seed
    rng = np.random.default_rng(seed)
    frames, seen, numeric, whole = _read(splits, features)
    test = frames["test"][features]
    base = test.iloc[rng.integers(len(test), size=n)].reset_index(drop=True)
    frame = perturb(base, seen, features, numeric, whole, rng)
    for c in numeric:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    return ProbeSet(frame=frame, kinds=["perturbed"] * n, base=list(range(n)), seed=seed,
                    features=features, numeric=numeric, whole=sorted(whole))


def build(splits: Path, features: list[str], n_test: int, n_valid: int, vary_rows: int,
          seed: int | None = None) -> ProbeSet:
    """The probe rows (see the module doc); `seed` None draws a fresh one."""
    import numpy as np
    import pandas as pd

    seed = secrets.randbelow(2**31) if seed is None else seed
    rng = np.random.default_rng(seed)
    frames, seen, numeric, whole = _read(splits, features)
    parts, kinds = [], []
    for name, n in (("test", n_test), ("valid", n_valid)):
        if name in frames and n > 0:
            f = frames[name][features]
            take = rng.choice(len(f), size=min(n, len(f)), replace=False)
            parts.append(f.iloc[np.sort(take)])
            kinds += [name] * len(take)
    base = pd.concat(parts, ignore_index=True)
    n_base = len(base)

    # perturbed copies of every sampled row
    pert = perturb(base, seen, features, numeric, whole, rng)
    rows = [base, pert]
    kinds += ["perturbed"] * n_base
    origin = list(range(n_base)) + list(range(n_base))

    # one feature at a time, over its observed range
    pick = rng.choice(n_base, size=min(vary_rows, n_base), replace=False).tolist()
    vary_parts, vary_kinds, vary_origin = [], [], []
    for c in features:
        col = seen[c].dropna() if c in seen.columns else seen.iloc[:0, 0]
        if col.empty:
            continue
        values: list[object]
        if c in numeric:
            qs = np.quantile(col.to_numpy(dtype=float), QUANTILES)
            values = list(sorted({float(round(v)) if c in whole else float(round(v, 4)) for v in qs}))
        else:
            counts = col.astype(str).value_counts()
            top = counts.index[:len(QUANTILES)].tolist()
            rest = counts.index[len(QUANTILES):].tolist()
            if rest:  # one rarer category too, chosen at gate time
                top.append(rest[int(rng.integers(len(rest)))])
            values = top
        if c in seen.columns and seen[c].isna().any():
            values = [*values, None]  # missing where train has it missing: the model imputes
        for i in pick:
            row = base.iloc[[i]]
            for v in values:
                changed = row.copy()
                changed[c] = v
                vary_parts.append(changed)
                vary_kinds.append(f"vary:{c}")
                vary_origin.append(i)
    if vary_parts:
        rows.append(pd.concat(vary_parts, ignore_index=True))
    frame = pd.concat(rows, ignore_index=True)
    for c in numeric:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    return ProbeSet(frame=frame, kinds=kinds + vary_kinds, base=origin + vary_origin, seed=seed,
                    features=features, numeric=numeric, whole=sorted(whole))
