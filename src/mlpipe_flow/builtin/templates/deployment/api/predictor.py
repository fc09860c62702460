"""The predict function the API calls: the saved scikit-learn pipeline, compiled when it can be.

A scikit-learn Pipeline with a ColumnTransformer costs 10-20 ms per `predict_proba` call
whatever the batch size (input validation, pandas indexing, one sub-pipeline per column group),
which caps one API worker at a few dozen calls a second. When the pipeline is made of the
transformers the feature-engineering step uses (to-number / to-text FunctionTransformers,
SimpleImputer, StandardScaler, OneHotEncoder, in a ColumnTransformer), `load` rebuilds the same
arithmetic with numpy from their fitted attributes - imputation values, means and scales,
category lists - and hands the final estimator the matrix the ColumnTransformer would have
built: a fraction of a millisecond per batch.

The compiled function is used only after it reproduced the pipeline's own output on rows made
from the fitted statistics (typical values, missing values, unseen categories); anything else
- another transformer, a dropped category, a mismatch - falls back to the pipeline itself, and
`Predictor.reason` says why. GET /health reports which one is serving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

Columns = dict[str, np.ndarray]  # one array per raw feature: float (NaN = missing) or object
Encode = Callable[[Columns], np.ndarray]
CHECK_ROWS = 64


class NotCompilable(Exception):
    """The pipeline holds something the compiler does not reproduce; the reason is the message."""


@dataclass
class Predictor:
    """`output(columns)` gives predict_proba (classifiers) or predict (regressors)."""

    output: Callable[[Columns], np.ndarray]
    kind: str  # "compiled" or "sklearn"
    reason: str = ""


def as_frame(columns: Columns) -> pd.DataFrame:
    return pd.DataFrame(columns, copy=False)


def sklearn_predictor(model: Any, proba: bool, reason: str) -> Predictor:
    method = model.predict_proba if proba else model.predict
    return Predictor(lambda columns: np.asarray(method(as_frame(columns))), "sklearn", reason)


# --- one encoder per column group ------------------------------------------------------------

def _is_to_numbers(step: Any) -> bool:
    return (isinstance(step, FunctionTransformer) and step.func is pd.DataFrame.apply
            and (step.kw_args or {}).get("func") is pd.to_numeric)


def _is_to_text(step: Any) -> bool:
    return (isinstance(step, FunctionTransformer) and step.func is pd.DataFrame.astype
            and (step.kw_args or {}).get("dtype") is object)


def _impute_values(step: SimpleImputer, n: int) -> np.ndarray:
    if step.add_indicator or not (isinstance(step.missing_values, float)
                                  and np.isnan(step.missing_values)):
        raise NotCompilable("SimpleImputer with an indicator or a custom missing value")
    stats = np.asarray(step.statistics_, dtype=object)
    if len(stats) != n or any(v is None or (isinstance(v, float) and np.isnan(v)) for v in stats):
        raise NotCompilable("SimpleImputer with an all-missing column")
    return stats


def _numeric_encoder(steps: list[Any], names: list[str]) -> Encode:
    fill: np.ndarray | None = None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    for step in steps:
        if _is_to_numbers(step):
            continue  # the request schema already gives numbers (or None -> NaN)
        if isinstance(step, SimpleImputer) and fill is None and mean is None:
            fill = _impute_values(step, len(names)).astype(float)
        elif isinstance(step, StandardScaler) and mean is None:
            mean = step.mean_ if step.with_mean else np.zeros(len(names))
            scale = step.scale_ if step.with_std else np.ones(len(names))
        else:
            raise NotCompilable(f"numeric step {type(step).__name__}")

    def encode(columns: Columns) -> np.ndarray:
        x = np.column_stack([np.asarray(columns[c], dtype=float) for c in names])
        if fill is not None:
            x = np.where(np.isnan(x), fill, x)
        if mean is not None and scale is not None:
            x = (x - mean) / scale
        return x

    return encode


def _one_hot_tables(step: OneHotEncoder) -> list[tuple[dict[Any, int], int, int]]:
    """Per input column: category -> output offset, the infrequent column (-1 if none), width."""
    if step.drop_idx_ is not None:
        raise NotCompilable("OneHotEncoder with drop")
    infrequent = getattr(step, "infrequent_categories_", None) or [None] * len(step.categories_)
    if step.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise NotCompilable(f"OneHotEncoder handle_unknown={step.handle_unknown!r}")
    tables = []
    for cats, rare in zip(step.categories_, infrequent, strict=True):
        rare_set = set(rare.tolist()) if rare is not None else set()
        frequent = [c for c in cats.tolist() if c not in rare_set]
        index = {c: i for i, c in enumerate(frequent)}
        other = len(frequent) if rare_set else -1
        tables.append((index, other, len(frequent) + (1 if rare_set else 0)))
    return tables


def _categorical_encoder(steps: list[Any], names: list[str]) -> Encode:
    fill: np.ndarray | None = None
    tables: list[tuple[dict[Any, int], int, int]] | None = None
    for step in steps:
        if _is_to_text(step):
            continue
        if isinstance(step, SimpleImputer) and fill is None and tables is None:
            fill = _impute_values(step, len(names))
        elif isinstance(step, OneHotEncoder) and tables is None:
            tables = _one_hot_tables(step)
        else:
            raise NotCompilable(f"categorical step {type(step).__name__}")
    if tables is None:
        raise NotCompilable("categorical columns without a OneHotEncoder")
    width = sum(t[2] for t in tables)

    def encode(columns: Columns) -> np.ndarray:
        n = len(columns[names[0]])
        out = np.zeros((n, width))
        offset = 0
        for j, (name, (index, other, w)) in enumerate(zip(names, tables, strict=True)):
            get, missing = index.get, (fill[j] if fill is not None else None)
            k = np.fromiter((get(missing if missing is not None and (v is None or v != v)
                                 else v, other) for v in columns[name]), dtype=np.intp, count=n)
            hit = k >= 0  # an unseen category without an infrequent column stays all zeros
            out[np.nonzero(hit)[0], offset + k[hit]] = 1.0
            offset += w
        return out

    return encode


def _steps(transformer: Any) -> list[Any]:
    return [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]


def _group_encoder(transformer: Any, names: list[str]) -> Encode:
    steps = _steps(transformer)
    if any(isinstance(s, OneHotEncoder) for s in steps):
        return _categorical_encoder(steps, names)
    return _numeric_encoder(steps, names)


def _groups(pre: ColumnTransformer) -> list[tuple[str, Any, list[Any]]]:
    """The fitted (name, transformer, columns) groups that produce output columns."""
    return [(name, transformer, list(cols)) for name, transformer, cols in pre.transformers_
            if not (isinstance(transformer, str) and transformer == "drop") and len(cols)]


def compile_pipeline(model: Any, proba: bool) -> Callable[[Columns], np.ndarray]:
    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        raise NotCompilable("not a two-step Pipeline (preprocessing, estimator)")
    pre, est = model.steps[0][1], model.steps[1][1]
    if not isinstance(pre, ColumnTransformer):
        raise NotCompilable(f"preprocessing is {type(pre).__name__}, not a ColumnTransformer")
    encoders: list[Encode] = []
    for _, transformer, cols in _groups(pre):
        if transformer == "passthrough" or not all(isinstance(c, str) for c in cols):
            raise NotCompilable("a passthrough remainder or columns not given by name")
        encoders.append(_group_encoder(transformer, cols))
    method = est.predict_proba if proba else est.predict
    sparse = bool(getattr(pre, "sparse_output_", False))  # what the estimator was fitted on

    def output(columns: Columns) -> np.ndarray:
        x = np.hstack([encode(columns) for encode in encoders])
        return np.asarray(method(csr_matrix(x) if sparse else x))

    return output


# --- checking the compiled function against the pipeline --------------------------------------

def check_rows(model: Any, features: list[str], numeric: set[str], n: int = CHECK_ROWS,
               seed: int = 0) -> Columns:
    """Rows made from the fitted statistics: values around each numeric column's mean (and the
    imputation value), every known category, missing values and a category never seen."""
    rng = np.random.default_rng(seed)
    stats: dict[str, tuple[float, float]] = {}
    categories: dict[str, list[Any]] = {}
    pre = model.steps[0][1] if isinstance(model, Pipeline) else None
    for _, transformer, cols in _groups(pre) if isinstance(pre, ColumnTransformer) else []:
        for step in _steps(transformer):
            if isinstance(step, StandardScaler) and step.with_mean and step.with_std:
                stats.update({c: (float(m), float(s)) for c, m, s in
                              zip(cols, step.mean_, step.scale_, strict=True)})
            if isinstance(step, OneHotEncoder):
                categories.update({c: cats.tolist() for c, cats in
                                   zip(cols, step.categories_, strict=True)})
    columns: Columns = {}
    for name in features:
        if name in numeric:
            mean, sd = stats.get(name, (0.0, 1.0))
            values = mean + sd * rng.standard_normal(n)
            values[rng.random(n) < 0.1] = np.nan
            columns[name] = values
        else:
            pool = [*categories.get(name, []), "__unseen category__", None]
            columns[name] = np.array([pool[i % len(pool)] for i in rng.permutation(n)],
                                     dtype=object)
    return columns


def load(model: Any, features: list[str], numeric: set[str], proba: bool) -> Predictor:
    """The compiled predictor when it reproduces the pipeline, else the pipeline itself."""
    try:
        compiled = compile_pipeline(model, proba)
        rows = check_rows(model, features, numeric)
        want = np.asarray((model.predict_proba if proba else model.predict)(as_frame(rows)))
        got = compiled(rows)
    except NotCompilable as e:
        return sklearn_predictor(model, proba, f"not compiled: {e}")
    except Exception as e:  # noqa: BLE001 - any surprise means: serve the pipeline as it is
        return sklearn_predictor(model, proba, f"not compiled: {type(e).__name__}: {e}")
    same = got.shape == want.shape and (
        np.allclose(got.astype(float), want.astype(float), rtol=1e-12, atol=1e-12)
        if want.dtype.kind in "fiub" else bool((got == want).all()))
    if not same:
        return sklearn_predictor(model, proba, "not compiled: the compiled function disagreed "
                                 f"with the pipeline on {len(want)} check rows")
    return Predictor(compiled, "compiled", f"reproduces the pipeline on {len(want)} check rows")
