"""The gate's own scoring: a metric computed from a model's raw outputs (labels, class
probabilities, numbers) that the gate obtained itself, with the gate's scikit-learn. Nothing
here is shared with the code the agent wrote."""

from __future__ import annotations

import math
from typing import Any

from mlpipe_flow.spec import LOWER_IS_BETTER

PROBA_METRICS = {"roc_auc", "average_precision", "log_loss", "brier"}
REGRESSION = {"rmse", "mae", "r2", "mape"}
#: every metric the gate measures for a problem type (the model card may state any of them)
BINARY = ["roc_auc", "average_precision", "log_loss", "brier", "accuracy", "balanced_accuracy",
          "f1_macro", "f1", "precision", "recall"]
MULTICLASS = ["roc_auc", "log_loss", "accuracy", "balanced_accuracy", "f1_macro", "precision",
              "recall"]  # precision and recall: macro averages


def score(metric: str, truth: Any, predictions: Any = None, probabilities: Any = None,
          classes: list[str] | None = None, positive: Any = None) -> float:
    """`truth` and `predictions` as sequences; `probabilities` rows aligned with `classes`."""
    import numpy as np
    from sklearn import metrics as skm

    if metric in REGRESSION:
        yt = np.asarray(truth, dtype=float)
        pred = np.asarray(predictions, dtype=float)
        if metric == "rmse":
            return float(math.sqrt(skm.mean_squared_error(yt, pred)))
        if metric == "mae":
            return float(skm.mean_absolute_error(yt, pred))
        if metric == "mape":
            return float(skm.mean_absolute_percentage_error(yt, pred))
        return float(skm.r2_score(yt, pred))
    truth_s = np.asarray([label(v) for v in truth], dtype=object)
    if metric in PROBA_METRICS:
        if probabilities is None or classes is None:
            raise ValueError(f"{metric} needs class probabilities")
        proba = np.asarray(probabilities, dtype=float)
        names = [label(c) for c in classes]
        if metric == "log_loss":
            return float(skm.log_loss(truth_s, proba, labels=names))
        if metric == "brier":
            pos = label(positive) if positive is not None else names[-1]
            return float(skm.brier_score_loss(truth_s == pos, proba[:, names.index(pos)]))
        if len(names) == 2:
            pos = label(positive) if positive is not None else names[1]
            col = proba[:, names.index(pos)]
            fn = skm.roc_auc_score if metric == "roc_auc" else skm.average_precision_score
            return float(fn(truth_s == pos, col))
        return float(skm.roc_auc_score(truth_s, proba, multi_class="ovr", labels=names))
    guess = np.asarray([label(v) for v in predictions], dtype=object)
    if metric == "accuracy":
        return float(skm.accuracy_score(truth_s, guess))
    if metric == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(truth_s, guess))
    if metric == "f1_macro":
        return float(skm.f1_score(truth_s, guess, average="macro"))
    fns = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}
    if metric in fns:
        if positive is None:  # no positive class (multiclass): the macro average
            return float(fns[metric](truth_s, guess, average="macro", zero_division=0))
        return float(fns[metric](truth_s, guess, pos_label=label(positive), zero_division=0))
    raise ValueError(f"unknown metric {metric!r}")


def applicable(problem_type: str, has_proba: bool) -> list[str]:
    """The metrics the gate can compute for a problem from what the model returns."""
    if problem_type == "regression":
        return ["rmse", "mae", "r2", "mape"]
    names = BINARY if problem_type == "binary_classification" else MULTICLASS
    return [m for m in names if has_proba or m not in PROBA_METRICS]


def score_all(problem_type: str, truth: Any, predictions: Any, probabilities: Any = None,
              classes: list[str] | None = None, positive: Any = None) -> dict[str, float | None]:
    """Every applicable metric; None where it is undefined on these rows (one class only)."""
    out: dict[str, float | None] = {}
    for m in applicable(problem_type, probabilities is not None and classes is not None):
        try:
            value = score(m, truth, predictions, probabilities, classes, positive)
        except (ValueError, IndexError, ZeroDivisionError):
            value = None
        out[m] = value if value is None or math.isfinite(value) else None
    return out


def label(v: Any) -> str:
    """A class label as text, the same whether it came as 1, 1.0, '1', True or 'Yes'."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER and metric != "brier"
