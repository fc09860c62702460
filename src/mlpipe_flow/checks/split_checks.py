"""Phase-2 checks that trace the splits to the raw data and measure them:

- `splits_from_raw`: every split row is a raw row (id + feature + target cells normalised the
  same way on both sides), no raw row is used twice, the splits cover the raw rows that survive
  exact-duplicate removal (features + target) and a missing target, and each split's size
  matches the spec's `splits` shares;
- `splits_disjoint`: no exact or near-duplicate row (numbers rounded to 3 significant digits)
  in two splits, except near-duplicates the raw data itself holds as distinct rows;
- `split_not_easier`: the test (and validation) split is not easier than a random subset of
  the same size, by the out-of-fold losses of the gate's own quick model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.rawdata import (
    SPLITS,
    Raw,
    Splits,
    Unmeasurable,
    isin,
    load_raw,
    load_splits,
    row_hashes,
    spec_columns,
    spec_unchanged,
    unique,
)
from mlpipe_flow.models import CheckResult

if TYPE_CHECKING:
    import numpy as np

DEFAULT_SHARES = {"train": 0.70, "valid": 0.15, "test": 0.15}
LEFT_OUT_SAMPLE = 5_000  # raw rows left out of the splits scored at most (a random sample)


def _shares(spec: dict[str, Any]) -> dict[str, float]:
    got = spec.get("splits")
    shares: dict[str, Any] = got if isinstance(got, dict) else {}
    return {k: float(shares.get(k, v)) for k, v in DEFAULT_SHARES.items()}


def _ids(frame: Any, ids: list[str], rows: Any, limit: int = 3) -> list[str]:
    """A few rows named by their id cells (or their line in the file)."""
    out = []
    for i in list(rows)[:limit]:
        if ids:
            out.append(", ".join(f"{c}={frame[c].iloc[i]}" for c in ids))
        else:
            out.append(f"line {i + 2}")
    return out


# -- every split row is a raw row --------------------------------------------------------
class FromRawParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    splits: list[str] = Field(default_factory=lambda: list(SPLITS))
    min_coverage: float = Field(default=0.99, ge=0, le=1, description="share of the raw rows "
                                "(deduplicated on features + target, target present) in a split")
    share_tolerance: float = Field(default=0.005, ge=0, le=1, description="each split's size may "
                                   "differ from its share of those rows by this fraction of them")
    min_row_slack: int = Field(default=2, ge=0, description="... or by this many rows")

    def describe(self) -> str:
        return ("every row of the splits is a row of the raw data (id, feature and target cells "
                "compared after the same normalisation), and no raw row is used twice; the "
                f"splits together hold at least {self.min_coverage:.0%} of the raw rows that "
                "remain after removing exact duplicates (features + target) and rows without a "
                "target; each split's size is its share of those rows (`splits` in "
                "`ml-spec.yaml`, default 0.70 / 0.15 / 0.15) within "
                f"{self.share_tolerance:.1%} of them or {self.min_row_slack} rows, whichever is "
                "larger.")


def splits_from_raw(ctx: CheckContext, params: FromRawParams) -> CheckResult:
    import numpy as np
    import pandas as pd

    try:
        spec, ids, features, target = spec_columns(ctx)
        raw = load_raw(ctx, spec)
        splits = load_splits(ctx, params.splits)
    except Unmeasurable as e:
        return e.result
    wanted = [*ids, *features, target]
    missing_raw = [c for c in wanted if c not in raw.frame.columns]
    if missing_raw:
        return result("failed", f"ml-spec.yaml's columns {missing_raw[:5]} are not columns of "
                      f"the raw data {raw.where}")
    ev: dict[str, Any] = {"raw": raw.where, "raw_rows": len(raw.frame), "id_columns": ids}
    if raw.note:
        ev["note"] = raw.note
    for name, frame in splits.frames.items():
        lacking = [c for c in wanted if c not in frame.columns]
        extra = [c for c in frame.columns if c not in wanted]
        if lacking or extra:
            return result("failed", f"{name}.csv must hold exactly the id, feature and target "
                          f"columns of ml-spec.yaml (missing {lacking[:5]}, extra {extra[:5]}): "
                          "the ids trace each split row to its raw row", **ev)
    raw_keys = row_hashes([raw.col(c) for c in wanted])
    raw_count = pd.Series(raw_keys).value_counts()
    not_raw: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    all_keys = []
    no_target = {}
    for name, frame in splits.frames.items():
        keys = splits.hashes(name, wanted)
        all_keys.append(keys)
        bad = np.flatnonzero(~isin(keys, raw_keys))
        not_raw[name] = int(len(bad))
        if len(bad):
            examples[name] = _ids(frame, ids, bad)
        no_target[name] = int(splits.col(name, target).missing.sum())
    ev.update(rows={n: len(f) for n, f in splits.frames.items()}, not_raw_rows=not_raw)
    if sum(not_raw.values()):
        worst = max(not_raw, key=lambda n: not_raw[n])
        counts = ", ".join(f"{n}: {c}" for n, c in not_raw.items() if c)
        return result("failed", f"measured {sum(not_raw.values())} split row(s) that are not rows "
                      f"of the raw data {raw.where} ({counts}; e.g. {worst}: "
                      f"{'; '.join(examples[worst])}); expected every row to be a raw row with its "
                      "cells unchanged", examples=examples, **ev)
    used = pd.Series(np.concatenate(all_keys)).value_counts()
    over = used - raw_count.reindex(used.index).fillna(0)
    reused = int(over[over > 0].sum())
    ev["reused_rows"] = reused
    if reused:
        return result("failed", f"measured {reused} raw row(s) used more than once across the "
                      "splits; expected each raw row in at most one split, once", **ev)
    if sum(no_target.values()):
        return result("failed", f"measured {sum(no_target.values())} split row(s) without a "
                      f"target ({no_target}); expected rows with a missing target dropped", **ev)
    # coverage and sizes against the raw rows that survive deduplication and a missing target
    ft = [*features, target]
    raw_ft = row_hashes([raw.col(c) for c in ft])[~raw.col(target).missing]
    expected = unique(raw_ft)
    got = unique(np.concatenate([splits.hashes(n, ft) for n in splits.frames]))
    n_exp = int(len(expected))
    coverage = float(isin(expected, got).mean()) if n_exp else 0.0
    shares = _shares(spec)
    sizes = {n: len(f) for n, f in splits.frames.items()}
    slack = max(params.min_row_slack, params.share_tolerance * n_exp)
    off = {n: sizes[n] - shares[n] * n_exp for n in sizes if n in shares}
    ev.update(expected_rows=n_exp, coverage=round(coverage, 5), shares=shares,
              measured_shares={n: round(sizes[n] / n_exp, 4) if n_exp else None for n in sizes},
              allowed_row_difference=round(slack, 1))
    if coverage < params.min_coverage:
        return result("failed", f"the splits hold {coverage:.1%} of the {n_exp} raw rows that "
                      "survive deduplication (features + target) and a missing target; expected "
                      f">= {params.min_coverage:.0%}", **ev)
    bad_size = {n: d for n, d in off.items() if abs(d) > slack}
    if bad_size:
        n = max(bad_size, key=lambda k: abs(bad_size[k]))
        return result("failed", f"{n} holds {sizes[n]} rows ({sizes[n] / n_exp:.1%} of {n_exp}), "
                      f"expected {shares[n]:.0%} of them ({shares[n] * n_exp:.0f} ± {slack:.0f} "
                      "rows) as ml-spec.yaml's splits say", **ev)
    return result("passed", f"every split row is a raw row of {raw.where}, each used once; the "
                  f"splits hold {coverage:.1%} of the {n_exp} deduplicated raw rows in shares "
                  + ", ".join(f"{n} {sizes[n] / n_exp:.1%}" for n in sizes), **ev)


# -- no exact or near-duplicate row in two splits ----------------------------------------
class DisjointParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    splits: list[str] = Field(default_factory=lambda: list(SPLITS))
    columns_from_spec: bool = Field(default=True, description="hash feature + target columns "
                                    "of ml-spec.yaml (ids excluded); else every column")
    digits: int = Field(default=3, ge=1, le=12, description="significant digits numbers are "
                        "rounded to for near-duplicates")

    def describe(self) -> str:
        cols = ("the spec's feature and target columns (ids excluded)" if self.columns_from_spec
                else "every column")
        return (f"no row is in two splits, compared on {cols}: neither exactly nor as a "
                f"near-duplicate (numbers rounded to {self.digits} significant digits, text "
                "trimmed and lower-cased), except near-duplicates the raw data itself holds as "
                "distinct rows.")


def splits_disjoint(ctx: CheckContext, params: DisjointParams) -> CheckResult:

    spec = ctx.spec() if params.columns_from_spec else None
    changed = spec_unchanged(ctx) if params.columns_from_spec else None
    if changed is not None:
        return changed
    try:
        splits = load_splits(ctx, params.splits)
    except Unmeasurable as e:
        return e.result
    first = next(iter(splits.frames.values()))
    if spec and spec.get("feature_columns") and spec.get("target"):
        cols = [c for c in [*spec["feature_columns"], spec["target"]] if c in first.columns]
    else:
        cols = list(first.columns)
    for name, frame in splits.frames.items():
        if any(c not in frame.columns for c in cols):
            return result("failed", f"{name}.csv lacks some of the columns {cols[:5]}...")
    names = list(splits.frames)
    total = sum(len(f) for f in splits.frames.values())
    ev: dict[str, Any] = {"rows": total, "hashed_columns": "spec features + target" if spec
                          else "all", "near_duplicate_digits": params.digits}
    exact = {n: splits.hashes(n, cols) for n in names}
    shared = _cross(exact)
    ev["shared_rows"] = sum(shared.values())
    ev["pairs"] = shared
    if shared:
        return result("failed", f"measured {sum(shared.values())} row(s) present in two splits "
                      f"({shared}); expected none", **ev)
    # near-duplicates: the same row with numbers nudged (rounded on two offset grids)
    raw_keys: np.ndarray | None = None
    if spec is not None:
        try:
            raw: Raw = load_raw(ctx, spec)
            if all(c in raw.frame.columns for c in cols):
                raw_keys = row_hashes([raw.col(c) for c in cols])
        except Unmeasurable as e:
            ev["raw"] = e.result.message
    near: dict[str, int] = {}
    for grid in (0, 1):
        keys = {n: row_hashes([_col(splits, n, c) for c in cols], grid, params.digits)
                for n in names}
        for pair, count in _cross(keys, exact, raw_keys).items():
            near[pair] = max(near.get(pair, 0), count)
    ev["near_duplicates"] = near
    if raw_keys is None and spec is not None:
        ev["note"] = "near-duplicates the raw data holds could not be excused (raw data unread)"
    if near:
        return result("failed", f"measured {sum(near.values())} near-duplicate row(s) across "
                      f"splits ({near}: equal once numbers are rounded to {params.digits} "
                      "significant digits, and not distinct rows of the raw data); expected none",
                      **ev)
    return result("passed", f"no exact or near-duplicate row shared between the {len(names)} "
                  f"splits ({total} rows hashed)", **ev)


def _col(splits: Splits, name: str, col: str) -> Any:
    return splits.col(name, col)


def _cross(keys: dict[str, np.ndarray], exact: dict[str, np.ndarray] | None = None,
           raw_keys: np.ndarray | None = None) -> dict[str, int]:
    """Rows of a later split whose key is in an earlier split: {"a & b": count}. With `exact`
    and `raw_keys`, a pair whose rows are both distinct raw rows (the data holds them both) is
    not counted."""

    names = list(keys)
    out: dict[str, int] = {}
    for j, b in enumerate(names):
        for a in names[:j]:
            hit = isin(keys[b], keys[a])
            if exact is not None and raw_keys is not None and hit.any():
                # excuse rows of b that are raw rows when every row of a sharing their key is too
                a_bad = keys[a][~isin(exact[a], raw_keys)]
                b_raw = isin(exact[b], raw_keys)
                hit &= ~(b_raw & ~isin(keys[b], a_bad))
            if hit.any():
                out[f"{a} & {b}"] = int(hit.sum())
    return out


# -- the test split is not easier than a random one --------------------------------------
class NotEasierParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    splits: list[str] = Field(default_factory=lambda: list(SPLITS))
    judged: list[str] = Field(default_factory=lambda: ["test", "valid"])
    max_rows: int = Field(default=20_000, ge=500, description="rows sampled when larger")
    folds: int = Field(default=5, ge=2, le=10)
    z_threshold: float = Field(default=4.5, gt=0, description="fail when the split's rank z "
                               "is below minus this (or the raw rows left out of the splits are "
                               "this many standard errors harder): an honest random split passes "
                               "with probability > 99.99%")

    def describe(self) -> str:
        judged = " and ".join(self.judged)
        return (f"the {judged} split(s) must not be easier than a random subset of the same size: "
                f"the gate fits its own quick model with {self.folds}-fold out-of-fold "
                f"predictions over the splits (a sample of {self.max_rows:,} rows when larger) "
                "and ranks each judged split's losses among all rows; it fails when that rank "
                f"z-score is below -{self.z_threshold:g} (or the raw rows left out of the splits "
                f"are {self.z_threshold:g} standard errors harder than those kept). An honest "
                "random or stratified split passes with probability above 99.99%.")


def split_not_easier(ctx: CheckContext, params: NotEasierParams) -> CheckResult:
    """Out-of-fold per-row losses of the gate's own quick model over all split rows: the test
    (and validation) split's losses against a random subset of its size (the Mann-Whitney rank
    statistic as a z score: robust to heavy-tailed losses), and the raw rows left out of the
    splits (if any) against the split rows: dropping the hard rows is the same lie."""
    import numpy as np
    import pandas as pd

    try:
        spec, _ids_, features, target = spec_columns(ctx)
        splits = load_splits(ctx, params.splits)
    except Unmeasurable as e:
        return e.result
    for name, frame in splits.frames.items():
        lacking = [c for c in [*features, target] if c not in frame.columns]
        if lacking:
            return result("failed", f"{name}.csv lacks the columns {lacking[:5]}")
    rng = np.random.default_rng()  # the gate's own draw, each time
    names = list(splits.frames)
    member = np.concatenate([np.full(len(splits.frames[n]), i) for i, n in enumerate(names)])
    take = np.arange(len(member))
    sampled = len(take) > params.max_rows
    if sampled:
        take = np.sort(rng.choice(len(member), params.max_rows, replace=False))
    regression = spec.get("problem_type") == "regression"
    pooled = {c: _pool([splits.col(n, c) for n in names], take) for c in [*features, target]}
    left_out, why_not = _left_out(ctx, spec, splits, features, target)
    import sklearn.ensemble  # noqa: F401 - loads OpenMP, so the limit below applies to it
    from threadpoolctl import threadpool_limits

    try:
        # one OpenMP thread per fit: gradient boosting's threads spin badly on a busy machine
        with threadpool_limits(limits=1, user_api="openmp"):
            loss, out_loss = _losses(pooled, left_out, features, target, regression,
                                     params.folds, rng)
    except ValueError as e:
        return result("error", f"the gate's quick model could not be fitted: {e}")
    m = member[take]
    keep = np.isfinite(loss)
    loss, m = loss[keep], m[keep]
    n_all = len(loss)
    mu, sd = float(loss.mean()), float(loss.std(ddof=1))
    ev: dict[str, Any] = {"rows": n_all, "sampled": sampled, "sample_size": params.max_rows,
                          "loss": "absolute error" if regression else "log loss",
                          "mean_loss_all": round(mu, 5), "z_threshold": params.z_threshold,
                          "model": "HistGradientBoosting, out-of-fold over all split rows"}
    worst: tuple[str, float] | None = None
    ranks = pd.Series(loss).rank(method="average").to_numpy()
    for name in params.judged:
        if name not in names:
            continue
        sel = m == names.index(name)
        n = int(sel.sum())
        if n < 2 or n >= n_all or sd == 0:
            continue
        # mean rank of the split among all rows vs a random subset's: (N+1)/2, variance
        # (N+1)(N-n)/(12n)
        se = math.sqrt((n_all + 1) * (n_all - n) / (12 * n))
        z = (float(ranks[sel].mean()) - (n_all + 1) / 2) / se
        ev[name] = {"rows": n, "mean_loss": round(float(loss[sel].mean()), 5), "z": round(z, 2)}
        if z < -params.z_threshold and (worst is None or z < worst[1]):
            worst = (name, z)
    if worst:
        name, z = worst
        return result("failed", f"the {name} split is easier than a random split of its size: "
                      f"the gate's model has mean {ev['loss']} {ev[name]['mean_loss']} on it vs "
                      f"{mu:.4f} over all split rows (rank z = {z:.1f}, expected > "
                      f"-{params.z_threshold:g})", **ev)
    if out_loss is not None and len(out_loss) >= 3 and sd > 0:
        z = (float(out_loss.mean()) - mu) / (sd / math.sqrt(len(out_loss)))
        ev["left_out"] = {"rows": len(out_loss), "mean_loss": round(float(out_loss.mean()), 5),
                          "z": round(z, 2)}
        if z > params.z_threshold:
            return result("failed", f"the {len(out_loss)} raw rows left out of the splits are "
                          f"harder than the split rows: mean {ev['loss']} "
                          f"{out_loss.mean():.4f} vs {mu:.4f} (z = {z:.1f}, expected < "
                          f"{params.z_threshold:g}); only duplicates and rows without a target "
                          "may be dropped", **ev)
    elif why_not:
        ev["left_out"] = why_not
    shown = ", ".join(f"{n} rank z = {ev[n]['z']}" for n in params.judged if n in ev)
    return result("passed", f"no split is easier than a random split of its size ({shown}; "
                  f"fails below -{params.z_threshold:g})", **ev)


def _pool(cols: list[Any], take: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(numbers, texts) of a column over the pooled split rows `take`."""
    import numpy as np

    return (np.concatenate([c.number for c in cols])[take],
            np.concatenate([c.text for c in cols])[take])


def _left_out(ctx: CheckContext, spec: dict[str, Any], splits: Splits, features: list[str],
              target: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]] | None, str]:
    """The raw rows (deduplicated, with a target) in no split, as (numbers, texts) columns."""
    import numpy as np
    import pandas as pd

    try:
        raw = load_raw(ctx, spec)
    except Unmeasurable as e:
        return None, f"not measured: {e.result.message}"
    ft = [*features, target]
    if any(c not in raw.frame.columns for c in ft):
        return None, "not measured: the raw data lacks spec columns"
    keys = row_hashes([raw.col(c) for c in ft])
    has_target = ~raw.col(target).missing
    is_first = ~pd.Series(keys).duplicated().to_numpy()
    got = np.concatenate([splits.hashes(n, ft) for n in splits.frames])
    rows = np.flatnonzero(is_first & has_target & ~isin(keys, got))
    if not len(rows):
        return None, "no raw row is left out"
    if len(rows) > LEFT_OUT_SAMPLE:
        rows = np.sort(np.random.default_rng().choice(rows, LEFT_OUT_SAMPLE, replace=False))
    return {c: (raw.col(c).number[rows], raw.col(c).text[rows]) for c in ft}, ""


def _encode(pooled: dict[str, tuple[np.ndarray, np.ndarray]],
            extra: dict[str, tuple[np.ndarray, np.ndarray]] | None, features: list[str]
            ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Feature matrices: numbers as they are; a text column as codes of its (at most 250)
    commonest values in the pooled rows, the rest one code, missing NaN."""
    import numpy as np

    cols, extra_cols, cats = [], [], []
    for j, c in enumerate(features):
        num, txt = pooled[c]
        is_txt = np.array([t is not None for t in txt], dtype=bool)
        if len(is_txt) and is_txt.mean() > 0.05:
            vals, counts = np.unique(txt[is_txt].astype(str), return_counts=True)
            top = vals[np.argsort(-counts, kind="stable")][:250]
            code = {v: float(i) for i, v in enumerate(top)}

            def enc(t: np.ndarray, code: dict[str, float] = code) -> np.ndarray:
                return np.array([np.nan if v is None else code.get(str(v), 250.0) for v in t])
            cols.append(enc(txt))
            if extra is not None:
                extra_cols.append(enc(extra[c][1]))
            cats.append(j)
        else:
            cols.append(num)
            if extra is not None:
                extra_cols.append(extra[c][0])
    n = len(pooled[features[0]][0]) if features else 0
    X = np.column_stack(cols) if cols else np.zeros((n, 1))
    X_extra = (np.column_stack(extra_cols) if extra_cols else None) if extra is not None else None
    mask = np.zeros(X.shape[1], dtype=bool)
    mask[cats] = True
    return X, X_extra, mask


def _labels(pair: tuple[np.ndarray, np.ndarray], regression: bool) -> np.ndarray:
    import numpy as np

    num, txt = pair
    if regression:
        if np.isnan(num).any():
            raise ValueError("the target is not numeric in every row")
        return num
    return np.array([repr(float(a)) if t is None else str(t) for a, t in zip(num, txt,
                                                                          strict=True)])


def _losses(pooled: dict[str, tuple[np.ndarray, np.ndarray]],
            left_out: dict[str, tuple[np.ndarray, np.ndarray]] | None, features: list[str],
            target: str, regression: bool, folds: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-row out-of-fold losses over the pooled rows, and the losses of a model fitted on
    all of them on the left-out raw rows."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    X, X_out, mask = _encode(pooled, left_out, features)
    y = _labels(pooled[target], regression)
    y_out = _labels(left_out[target], regression) if left_out is not None else None
    n = len(y)
    fold_of = np.empty(n, dtype=int)
    fold_of[rng.permutation(n)] = np.arange(n) % folds

    def fit(rows: np.ndarray) -> Any:
        kw: dict[str, Any] = dict(max_iter=60, learning_rate=0.1, max_leaf_nodes=15,
                                  early_stopping=False, random_state=int(rng.integers(1 << 31)),
                                  categorical_features=mask if mask.any() else None)
        est = HistGradientBoostingRegressor(**kw) if regression else \
            HistGradientBoostingClassifier(**kw)
        return est.fit(X[rows], y[rows])

    def loss_of(model: Any, Xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        if regression:
            return np.abs(model.predict(Xs) - ys)
        proba = model.predict_proba(Xs)
        index = {c: i for i, c in enumerate(model.classes_)}
        p = np.array([proba[r, index[v]] if v in index else 0.0 for r, v in enumerate(ys)])
        return -np.log(np.clip(p, 1e-6, 1.0))

    loss = np.full(n, np.nan)
    for k in range(folds):
        tr, te = fold_of != k, fold_of == k
        loss[te] = loss_of(fit(tr), X[te], y[te])
    out = None
    if X_out is not None and y_out is not None and len(y_out):
        out = loss_of(fit(np.ones(n, dtype=bool)), X_out, y_out)
    return loss, out
