"""The gate's own scorer, run as a subprocess by the phase-3 checks:

    python -m mlpipe_flow.checks.score_model SPEC MODEL TRAIN TEST

Unpickles the workspace's model (the agent's output, so untrusted: the parent runs this
with a scrubbed environment and a timeout), scores it on the test split with the spec's
primary metric, fits its own dummy baseline on the train split and scores that on the same
test rows. Prints one JSON object. Nothing here is shared with the code the agent wrote.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

LOWER_IS_BETTER = {"rmse", "mae", "mape", "log_loss"}


def metric_value(metric: str, model: Any, X: Any, y: Any, positive: Any) -> float:
    import numpy as np
    from sklearn import metrics as skm

    if metric in ("roc_auc", "average_precision", "log_loss"):
        proba = np.asarray(model.predict_proba(X))
        classes = [str(c) for c in model.classes_]
        truth = y.astype(str).to_numpy()
        if metric == "log_loss":
            return float(skm.log_loss(truth, proba, labels=classes))
        if len(classes) == 2:
            pos = str(positive) if positive is not None else classes[1]
            col = proba[:, classes.index(pos)]
            fn = skm.roc_auc_score if metric == "roc_auc" else skm.average_precision_score
            return float(fn(truth == pos, col))
        return float(skm.roc_auc_score(truth, proba, multi_class="ovr", labels=classes))
    pred = np.asarray(model.predict(X))
    if metric in ("rmse", "mae", "r2", "mape"):
        yt = y.astype(float).to_numpy()
        pred = pred.astype(float)
        if metric == "rmse":
            return float(math.sqrt(skm.mean_squared_error(yt, pred)))
        if metric == "mae":
            return float(skm.mean_absolute_error(yt, pred))
        if metric == "mape":
            return float(skm.mean_absolute_percentage_error(yt, pred))
        return float(skm.r2_score(yt, pred))
    truth, guess = y.astype(str).to_numpy(), pred.astype(str)
    if metric == "accuracy":
        return float(skm.accuracy_score(truth, guess))
    if metric == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(truth, guess))
    if metric == "f1_macro":
        return float(skm.f1_score(truth, guess, average="macro"))
    fns = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}
    if metric in fns:
        return float(fns[metric](truth, guess, pos_label=str(positive), zero_division=0))
    raise ValueError(f"unknown metric {metric!r}")


def score(spec_path: str, model_path: str, train_path: str, test_path: str) -> dict[str, Any]:
    import warnings

    import joblib
    import pandas as pd
    import yaml
    from sklearn.dummy import DummyClassifier, DummyRegressor

    warnings.filterwarnings("ignore")
    with open(spec_path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    metric, target = spec["primary_metric"], spec["target"]
    features = list(spec["feature_columns"])
    train = pd.read_csv(train_path, low_memory=False)
    test = pd.read_csv(test_path, low_memory=False)
    missing = [c for c in [*features, target] if c not in test.columns]
    if missing:
        raise SystemExit(f"the test split lacks columns {missing[:5]}")
    model = joblib.load(model_path)
    positive = spec.get("positive_class")
    X_test, y_test = test[features], test[target]
    measured = metric_value(metric, model, X_test, y_test, positive)
    if spec["problem_type"] == "regression":
        baseline: Any = DummyRegressor(strategy="mean")
        strategy = "mean of the train split's target"
    elif metric in ("roc_auc", "average_precision", "log_loss"):
        baseline = DummyClassifier(strategy="prior")
        strategy = "class prior of the train split"
    else:
        baseline = DummyClassifier(strategy="most_frequent")
        strategy = "most frequent class of the train split"
    y_train = train[target]
    if spec["problem_type"] != "regression":
        y_train = y_train.astype(y_test.dtype) if y_train.dtype != y_test.dtype else y_train
    baseline.fit(train[features], y_train)
    base = metric_value(metric, baseline, X_test, y_test, positive)
    return {"metric": metric, "score": measured, "baseline": base, "baseline_strategy": strategy,
            "n_test": int(len(test)), "n_train": int(len(train)),
            "higher_is_better": metric not in LOWER_IS_BETTER,
            "model_type": type(model).__name__}


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m mlpipe_flow.checks.score_model SPEC MODEL TRAIN TEST",
              file=sys.stderr)
        return 2
    try:
        out = score(*argv)
    except SystemExit as e:
        print(json.dumps({"error": str(e.code)}))
        return 1
    except Exception as e:  # noqa: BLE001 - reported to the gate as one JSON line
        print(json.dumps({"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
