"""The predict function the API calls: the saved scikit-learn pipeline run by ONNX Runtime where
it converts (skl2onnx), scikit-learn itself where it does not.

A scikit-learn Pipeline with a ColumnTransformer costs 10-20 ms per `predict_proba` call whatever
the batch size (input validation, pandas indexing, one sub-pipeline per column group); the same
graph in ONNX Runtime costs a fraction of a millisecond. `load` tries, in order:

1. `onnx`: the whole pipeline converted (preprocessing and estimator);
2. `onnx+sklearn`: the preprocessing converted, the fitted estimator applied by scikit-learn to
   the matrix ONNX Runtime builds (skl2onnx cannot convert the estimator, or converts it only in
   float32, where tree thresholds flip on values close to them - rows the check below would
   rarely hit);
3. `sklearn`: the pipeline itself.

A converted predictor is used only after it reproduced the pipeline's own output on rows made
from the fitted statistics (typical values, missing values, unseen categories): probabilities
(or predictions, relative to their spread) within MAX_DIFF. `Predictor.reason` says which one
serves and why; GET /health reports it.

Two adaptations, both checked by that comparison: the API types every input (numbers as float64
with NaN for null, text as str), so a FunctionTransformer that returns such input unchanged
(the feature code's "to numbers" / "to text" coercions) is left out of the converted graph; and
ONNX has no null string, so a missing text value is sent as MISSING_TEXT and the text imputers
of the converted copy treat that as missing.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

Columns = dict[str, np.ndarray]  # one array per raw feature: float64 (NaN = missing) or object
CHECK_ROWS = 512
MAX_DIFF = float(os.environ.get("ONNX_MAX_DIFF", "1e-6"))
MISSING_TEXT = "\x00missing"  # what a null text value becomes in the ONNX input
OPSET = {"": 17, "ai.onnx.ml": 3}


class NotConvertible(Exception):
    """ONNX cannot serve this pipeline (the message says why)."""


@dataclass
class Predictor:
    """`output(columns)` gives predict_proba (classifiers) or predict (regressors)."""

    output: Callable[[Columns], np.ndarray]
    kind: str  # "onnx", "onnx+sklearn" or "sklearn"
    reason: str = ""


def as_frame(columns: Columns) -> pd.DataFrame:
    return pd.DataFrame(columns, copy=False)


def sklearn_predictor(model: Any, proba: bool, reason: str) -> Predictor:
    method = model.predict_proba if proba else model.predict
    return Predictor(lambda columns: np.asarray(method(as_frame(columns))), "sklearn", reason)


# --- the copy of the pipeline that is converted -----------------------------------------------

def _groups(pre: ColumnTransformer) -> list[tuple[int, Any, list[Any]]]:
    return [(i, transformer, list(cols)) for i, (_, transformer, cols)
            in enumerate(pre.transformers_) if not isinstance(transformer, str) and len(cols)]


def _returns_its_input(step: FunctionTransformer, frame: pd.DataFrame) -> bool:
    try:
        out = step.transform(frame)
    except Exception:  # noqa: BLE001 - not applicable to typed input: keep (and fail to convert)
        return False
    if not isinstance(out, pd.DataFrame) or list(out.columns) != list(frame.columns):
        return False
    return all(out[c].dtype.kind == frame[c].dtype.kind or frame[c].dtype.kind not in "biuf"
               and out[c].dtype.kind not in "biuf" for c in frame.columns) and all(
        out[c].astype(object).equals(frame[c].astype(object)) for c in frame.columns)


@dataclass
class ServingCopy:
    """The pipeline as ONNX sees its input, and per text column with an "infrequent" one-hot
    column: (its known categories, one infrequent category) - skl2onnx encodes an unseen
    category as all zeros, scikit-learn as infrequent, so the feed maps unseen to infrequent."""

    model: Pipeline
    unseen_to: dict[str, tuple[frozenset[Any], str]]


def serving_copy(model: Pipeline, sample: Columns) -> ServingCopy:
    """See the module docstring."""
    if not isinstance(model, Pipeline) or not isinstance(model.steps[0][1], ColumnTransformer):
        raise NotConvertible("not a Pipeline starting with a ColumnTransformer")
    served = copy.deepcopy(model)
    pre = served.steps[0][1]
    frame = as_frame(sample)
    unseen_to: dict[str, tuple[frozenset[Any], str]] = {}
    for i, transformer, cols in _groups(pre):
        if not all(isinstance(c, str) for c in cols):
            raise NotConvertible("ColumnTransformer columns not given by name")
        steps = list(transformer.steps) if isinstance(transformer, Pipeline) else [("", transformer)]
        while steps and isinstance(steps[0][1], FunctionTransformer) \
                and _returns_its_input(steps[0][1], frame[cols]):
            steps.pop(0)
        if not steps:
            raise NotConvertible(f"column group {pre.transformers_[i][0]!r} has no steps left")
        for _, step in steps:
            if isinstance(step, SimpleImputer) and np.asarray(step.statistics_).dtype == object:
                step.missing_values = MISSING_TEXT
            if isinstance(step, OneHotEncoder) and step.handle_unknown != "error":
                rare = getattr(step, "infrequent_categories_", None) or [None] * len(cols)
                for c, cats, infrequent in zip(cols, step.categories_, rare, strict=True):
                    if infrequent is not None and len(infrequent):
                        unseen_to[c] = (frozenset(cats.tolist()), str(infrequent[0]))
                step.handle_unknown = "ignore"
        kept = Pipeline(steps) if len(steps) > 1 else steps[0][1]
        name, _, columns = pre.transformers_[i]
        pre.transformers_[i] = (name, kept, columns)
    return ServingCopy(served, unseen_to)


# --- conversion --------------------------------------------------------------------------------

def _register_float64_imputer() -> None:
    """skl2onnx imputes numbers with ONNX's float32-only Imputer; impute in float64 instead
    (IsNaN + Where), so the converted graph computes what scikit-learn computes."""
    from onnx import TensorProto
    from skl2onnx import update_registered_converter
    from skl2onnx.common._apply_operation import apply_concat
    from skl2onnx.common.data_types import StringTensorType
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes

    def convert(scope: Any, operator: Any, container: Any) -> None:
        op = operator.raw_operator
        if isinstance(operator.inputs[0].type, StringTensorType) or op.add_indicator or not (
                isinstance(op.missing_values, float) and np.isnan(op.missing_values)):
            convert_sklearn_imputer(scope, operator, container)
            return
        x = operator.inputs[0].full_name
        if len(operator.inputs) > 1:
            x = scope.get_unique_variable_name("imputer_input")
            apply_concat(scope, [v.full_name for v in operator.inputs], x, container, axis=1)
        fill = scope.get_unique_variable_name("fill")
        stats = np.asarray(op.statistics_, dtype=np.float64)
        container.add_initializer(fill, TensorProto.DOUBLE, [1, len(stats)], stats.tolist())
        missing = scope.get_unique_variable_name("missing")
        container.add_node("IsNaN", [x], [missing], name=scope.get_unique_operator_name("IsNaN"))
        container.add_node("Where", [missing, fill, x], [operator.outputs[0].full_name],
                           name=scope.get_unique_operator_name("Where"))

    update_registered_converter(SimpleImputer, "SklearnSimpleImputer",
                                calculate_sklearn_imputer_output_shapes, convert)


def _session(model: Any, features: list[str], numeric: set[str], classifier: bool) -> Any:
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    _register_float64_imputer()
    types = [(name, DoubleTensorType([None, 1]) if name in numeric else StringTensorType([None, 1]))
             for name in features]
    options: dict[Any, Any] = {StandardScaler: {"div": "div"}}  # true division, as sklearn
    if classifier:
        options[id(model.steps[-1][1] if isinstance(model, Pipeline) else model)] = {"zipmap": False}
    onx = convert_sklearn(model, initial_types=types, options=options, target_opset=OPSET)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1  # one predict thread serves
    so.log_severity_level = 3  # a failed check run is reported by `load`, not logged twice
    return ort.InferenceSession(onx.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _feeder(sess: Any, features: list[str], numeric: set[str], copy_: ServingCopy
            ) -> Callable[[Columns], dict[str, np.ndarray]]:
    """Columns -> the session's inputs (skl2onnx names them after the features, in their order,
    with characters other than letters, digits and _ replaced)."""
    names = [i.name for i in sess.get_inputs()]
    if len(names) != len(features):
        raise NotConvertible(f"the ONNX graph has {len(names)} inputs for {len(features)} features")

    def feed(columns: Columns) -> dict[str, np.ndarray]:
        out = {}
        for key, name in zip(names, features, strict=True):
            values = columns[name]
            if name in numeric:
                out[key] = np.asarray(values, dtype=np.float64).reshape(-1, 1)
            elif name in copy_.unseen_to:
                known, rare = copy_.unseen_to[name]
                out[key] = np.array([MISSING_TEXT if v is None else v if v in known else rare
                                     for v in values], dtype=object).reshape(-1, 1)
            else:
                out[key] = np.array([MISSING_TEXT if v is None else str(v) for v in values],
                                    dtype=object).reshape(-1, 1)
        return out

    return feed


def onnx_predictor(model: Pipeline, features: list[str], numeric: set[str], proba: bool,
                   sample: Columns) -> Callable[[Columns], np.ndarray]:
    """The whole pipeline in ONNX Runtime."""
    served = serving_copy(model, sample)
    sess = _session(served.model, features, numeric, proba)
    feed = _feeder(sess, features, numeric, served)
    want = 1 if proba else 0  # outputs: (label, probabilities) or (variable,)
    if sess.get_outputs()[want].type != "tensor(double)":
        # float32 tree thresholds flip on values near them: rare on check rows, not in traffic
        raise NotConvertible(f"the converted estimator computes in {sess.get_outputs()[want].type}")

    def output(columns: Columns) -> np.ndarray:
        out = np.asarray(sess.run(None, feed(columns))[want])
        return out if proba else out.reshape(len(out), -1)[:, 0]

    return output


def onnx_preprocessing(model: Pipeline, features: list[str], numeric: set[str], proba: bool,
                       sample: Columns) -> Callable[[Columns], np.ndarray]:
    """The preprocessing in ONNX Runtime, the fitted estimator in scikit-learn."""
    from scipy.sparse import csr_matrix

    served = serving_copy(model, sample)
    if len(served.model.steps) != 2:
        raise NotConvertible("not a two-step Pipeline (preprocessing, estimator)")
    pre, est = served.model.steps[0][1], model.steps[-1][1]
    sess = _session(pre, features, numeric, classifier=False)
    method = est.predict_proba if proba else est.predict
    sparse = bool(getattr(model.steps[0][1], "sparse_output_", False))  # what est was fitted on
    feed = _feeder(sess, features, numeric, served)

    def output(columns: Columns) -> np.ndarray:
        x = sess.run(None, feed(columns))[0]
        return np.asarray(method(csr_matrix(x) if sparse else x))

    return output


# --- checking a converted predictor against the pipeline ---------------------------------------

def check_rows(model: Any, features: list[str], numeric: set[str], n: int = CHECK_ROWS,
               seed: int = 0) -> Columns:
    """Rows made from the fitted statistics: values around each numeric column's mean (and the
    imputation value), every known category, missing values and a category never seen."""
    rng = np.random.default_rng(seed)
    stats: dict[str, tuple[float, float]] = {}
    categories: dict[str, list[Any]] = {}
    pre = model.steps[0][1] if isinstance(model, Pipeline) else None
    for _, transformer, cols in _groups(pre) if isinstance(pre, ColumnTransformer) else []:
        steps = transformer.steps if isinstance(transformer, Pipeline) else [("", transformer)]
        for _, step in steps:
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


def difference(got: np.ndarray, want: np.ndarray, proba: bool) -> float:
    """Largest absolute probability difference, or regression difference relative to the larger
    of |prediction| and the predictions' spread."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if got.shape != want.shape:
        return float("inf")
    if proba:
        return float(np.nanmax(np.abs(got - want))) if got.size else 0.0
    scale = np.maximum(np.abs(want), float(np.std(want)) or 1.0)
    return float(np.max(np.abs(got - want) / scale)) if got.size else 0.0


def load(model: Any, features: list[str], numeric: set[str], proba: bool) -> Predictor:
    """The fastest predictor that reproduces the pipeline on the check rows (see the docstring)."""
    rows = check_rows(model, features, numeric)
    want = np.asarray((model.predict_proba if proba else model.predict)(as_frame(rows)))
    if want.dtype.kind not in "fiub":
        return sklearn_predictor(model, proba, "not converted: non-numeric predictions")
    why = []
    for kind, build in (("onnx", onnx_predictor), ("onnx+sklearn", onnx_preprocessing)):
        try:
            output = build(model, features, numeric, proba, rows)
            diff = difference(output(rows), want, proba)
        except ImportError as e:
            return sklearn_predictor(model, proba, f"not converted: {e.name} is not installed")
        except Exception as e:  # noqa: BLE001 - any surprise means: try the next, or sklearn
            why.append(f"{kind}: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
            continue
        if diff <= MAX_DIFF:
            return Predictor(output, kind, f"reproduces the pipeline on {len(want)} check rows "
                             f"(max difference {diff:.2g} <= {MAX_DIFF:g})")
        why.append(f"{kind}: differs from the pipeline by {diff:.2g} > {MAX_DIFF:g}")
    return sklearn_predictor(model, proba, "not converted: " + "; ".join(why))
