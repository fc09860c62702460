"""Runs the workspace's saved model for a check, in a child process of the workspace's own
interpreter: unpickling a model runs its code, so it never happens inside mlpipe.

    python model_probe.py REQUEST.json RESPONSE.json

The request names the model and the operations; every operation reads its rows from a CSV
the gate wrote (feature columns only: the labels never reach this process). The response
holds raw outputs — labels, class probabilities, numbers — and the check computes every
score from them itself. This file is run by path and imports nothing of mlpipe: the
workspace's interpreter need not have mlpipe installed.

Operations (each answers for itself: an operation that fails returns {"error": ...} and the
others still run):
  {"op": "predict", "rows": CSV, "proba": bool}  -> {"predictions": [...], "probabilities": [[...]]}
  {"op": "refit", "fit_rows": CSV, "label": COLUMN, "rows": CSV, "proba": bool}
      a clone (sklearn.base.clone) of the saved model fitted on fit_rows (features + the label
      column), then asked for rows -> {"predictions", "probabilities", "classes", "seconds"}
  {"op": "cv", "fit_rows": CSV, "label": COLUMN, "folds": [[fold id per row], ...], "proba": bool}
      for each repetition (a list of fold ids the gate chose) and each fold, a clone fitted on
      the other folds predicts the fold's rows -> {"repeats": [[{"predictions", "probabilities",
      "classes"} per fold], ...]}; repetitions after the first stop at the request's deadline
  {"op": "permute", "rows": CSV, "columns": [...], "repeats": N, "seed": S, "proba": bool}
      the saved model on rows with one column shuffled (the gate's seed), N times per column
      -> {"outputs": {column: [predictions or probabilities per repeat]}}
  {"op": "dummy", "fit_rows": CSV, "label": COLUMN, "regression": bool, "out": PATH}
      a scikit-learn dummy (class prior / mean) fitted on fit_rows, saved with joblib to PATH
      (the gate's stand-in for the saved model when it tests the agent's tests)

Labels reach this process only to fit clones (the train, valid and for one refit the test
split's labels: the training code sees them anyway); every score is computed by the gate.
Fitting runs with one thread per native library (threadpoolctl): OpenMP workers spin badly on
a busy machine.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any


def read_rows(path: str, features: list[str], dtypes: dict[str, str]) -> Any:
    """The rows as the model was trained on them: read like the splits are read (pandas
    defaults), numeric columns as floats, the others as text with missing values as NaN."""
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(path, low_memory=False, keep_default_na=True)
    for col in features:
        if col not in frame.columns:
            frame[col] = np.nan
        if dtypes.get(col) == "number":
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
        else:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), np.nan)
    return frame[features]


def jsonable(values: Any) -> list[Any]:
    import numpy as np

    out: list[Any] = []
    for v in np.asarray(values, dtype=object).tolist():
        if isinstance(v, float) and v != v:  # NaN
            out.append(None)
        elif hasattr(v, "item"):
            out.append(v.item())
        else:
            out.append(v)
    return out


def op_predict(model: Any, req: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    frame = read_rows(op["rows"], req["features"], req.get("dtypes") or {})
    out: dict[str, Any] = {"rows": int(len(frame))}
    out["predictions"] = jsonable(model.predict(frame))
    if op.get("proba") and hasattr(model, "predict_proba"):
        out["probabilities"] = np.asarray(model.predict_proba(frame), dtype=float).tolist()
    return out


def read_fit(path: str, req: dict[str, Any], label: str) -> tuple[Any, Any]:
    """Features as `read_rows` reads them and the label column as pandas reads it from the
    split files (the training code saw the same values and types)."""
    import pandas as pd

    y = pd.read_csv(path, usecols=[label], low_memory=False)[label]
    return read_rows(path, req["features"], req.get("dtypes") or {}), y


def outputs(model: Any, frame: Any, proba: bool) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {"predictions": jsonable(model.predict(frame))}
    if proba and hasattr(model, "predict_proba"):
        out["probabilities"] = np.round(np.asarray(model.predict_proba(frame), dtype=float),
                                        9).tolist()
    classes = getattr(model, "classes_", None)
    out["classes"] = jsonable(classes) if classes is not None else None
    return out


def op_refit(model: Any, req: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    from sklearn.base import clone

    X, y = read_fit(op["fit_rows"], req, op["label"])
    frame = read_rows(op["rows"], req["features"], req.get("dtypes") or {})
    started = time.monotonic()
    fitted = clone(model).fit(X, y)
    out = outputs(fitted, frame, bool(op.get("proba")))
    out["seconds"] = round(time.monotonic() - started, 3)
    return out


def op_cv(model: Any, req: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from sklearn.base import clone

    X, y = read_fit(op["fit_rows"], req, op["label"])
    repeats: list[list[dict[str, Any]]] = []
    started = time.monotonic()
    for i, folds in enumerate(op["folds"]):
        if i > 0 and time.monotonic() > DEADLINE[0]:
            break
        ids = np.asarray(folds)
        one = []
        for fold in sorted(set(ids.tolist())):
            held = ids == fold
            fitted = clone(model).fit(X[~held], y[~held])
            one.append(outputs(fitted, X[held], bool(op.get("proba"))))
        repeats.append(one)
    return {"repeats": repeats, "seconds": round(time.monotonic() - started, 3)}


def op_permute(model: Any, req: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    frame = read_rows(op["rows"], req["features"], req.get("dtypes") or {})
    rng = np.random.default_rng(int(op["seed"]))
    proba = bool(op.get("proba")) and hasattr(model, "predict_proba")
    result: dict[str, list[Any]] = {}
    for col in op["columns"]:
        runs = []
        for _ in range(int(op["repeats"])):
            shuffled = frame.copy()
            shuffled[col] = rng.permutation(shuffled[col].to_numpy())
            if proba:
                runs.append(np.round(np.asarray(model.predict_proba(shuffled), dtype=float),
                                     6).tolist())
            else:
                runs.append(jsonable(model.predict(shuffled)))
        result[col] = runs
    return {"outputs": result, "proba": proba}


def op_dummy(model: Any, req: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    """A stand-in the gate makes to test the agent's tests: a scikit-learn dummy (class prior /
    mean) fitted on fit_rows, saved with joblib to op["out"]."""
    import joblib
    from sklearn.dummy import DummyClassifier, DummyRegressor

    X, y = read_fit(op["fit_rows"], req, op["label"])
    dummy = DummyRegressor(strategy="mean") if op.get("regression") else \
        DummyClassifier(strategy="prior")
    joblib.dump(dummy.fit(X, y), op["out"])
    return {"saved": op["out"]}


OPS = {"predict": op_predict, "refit": op_refit, "cv": op_cv, "permute": op_permute,
       "dummy": op_dummy}
DEADLINE = [float("inf")]  # monotonic time after which optional work (more CV repeats) stops


def run_op(model: Any, req: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    if op["op"] == "predict":  # the original operation: its failure fails the whole request
        return OPS["predict"](model, req, op)
    try:
        with single_threaded():
            return OPS[op["op"]](model, req, op)
    except Exception as e:  # noqa: BLE001 - reported to the gate as data
        first = str(e).splitlines()[0] if str(e) else ""
        return {"error": f"{type(e).__name__}: {first}"[:500]}


def single_threaded() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def describe(model: Any) -> dict[str, Any] | None:
    """The final estimator of the saved model (the last step of a Pipeline): its class name
    and its scalar parameters, as text."""
    final = model
    for _ in range(5):
        steps = getattr(final, "steps", None)
        if not steps:
            break
        final = steps[-1][1]
    if final is None or not hasattr(final, "get_params"):
        return None
    try:
        params = final.get_params(deep=False)
    except Exception:  # noqa: BLE001 - a describable model is a courtesy, not a requirement
        params = {}
    return {"class": type(final).__name__,
            "params": {str(k): str(v) for k, v in params.items()
                       if v is None or isinstance(v, (bool, int, float, str))}}


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore")
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    response: dict[str, Any] = {}
    try:
        import joblib

        # the gate's own stand-ins need no model: a broken one must not stop them being made
        needs_model = any(op["op"] != "dummy" for op in req["ops"])
        model = joblib.load(req["model"]) if needs_model else None
        classes = getattr(model, "classes_", None)
        response["model_type"] = type(model).__name__
        response["classes"] = jsonable(classes) if classes is not None else None
        response["estimator"] = describe(model)
        if req.get("deadline_s"):
            DEADLINE[0] = time.monotonic() + float(req["deadline_s"])
        response["results"] = [run_op(model, req, op) for op in req["ops"]]
    except Exception as e:  # noqa: BLE001 - reported to the gate as data, not a traceback
        first = str(e).splitlines()[0] if str(e) else ""
        response = {"error": f"{type(e).__name__}: {first}"[:500]}
    Path(argv[1]).write_text(json.dumps(response), encoding="utf-8")
    return 0 if "error" not in response else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
