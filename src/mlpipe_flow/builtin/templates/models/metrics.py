"""The primary metric of ml-spec.yaml, computed the same way for CV, test and monitoring."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

LOWER_IS_BETTER = {"rmse", "mae", "mape", "log_loss"}


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def score(metric: str, model: Any, X: pd.DataFrame, y: pd.Series,
          positive_class: Any = None) -> float:
    if metric in ("roc_auc", "average_precision", "log_loss"):
        proba = model.predict_proba(X)
        classes = [str(c) for c in model.classes_]
        truth = y.astype(str).to_numpy()
        if metric == "log_loss":
            return float(skm.log_loss(truth, proba, labels=classes))
        if len(classes) == 2:
            pos = str(positive_class) if positive_class is not None else classes[1]
            column = proba[:, classes.index(pos)]
            if metric == "average_precision":
                return float(skm.average_precision_score(truth == pos, column))
            return float(skm.roc_auc_score(truth == pos, column))
        return float(skm.roc_auc_score(truth, proba, multi_class="ovr", labels=classes))
    pred = model.predict(X)
    if metric == "rmse":
        return float(math.sqrt(skm.mean_squared_error(y, pred)))
    if metric == "mae":
        return float(skm.mean_absolute_error(y, pred))
    if metric == "r2":
        return float(skm.r2_score(y, pred))
    if metric == "mape":
        return float(skm.mean_absolute_percentage_error(y, pred))
    truth, guess = y.astype(str).to_numpy(), np.asarray(pred).astype(str)
    if metric == "accuracy":
        return float(skm.accuracy_score(truth, guess))
    if metric == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(truth, guess))
    if metric == "f1_macro":
        return float(skm.f1_score(truth, guess, average="macro"))
    if metric in ("f1", "precision", "recall"):
        fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}
        return float(fn[metric](truth, guess, pos_label=str(positive_class), zero_division=0))
    raise ValueError(f"unknown metric {metric!r}")
