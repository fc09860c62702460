"""Evaluation of a fitted model on the held-out test split: the primary and secondary metrics of
ml-spec.yaml, and the same per group of each of its `group_columns` (the model card's fairness
tables). A metric that is undefined on a group (one class only) is None ("n/a" in the card).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from models.metrics import METRICS, score

SUPPORTED = set(METRICS)  # the project's metric table (models/metrics.py)


def metric_names(spec: dict[str, Any]) -> list[str]:
    names = [spec["primary_metric"], *spec.get("secondary_metrics", [])]
    if spec["problem_type"] == "multiclass_classification":
        names = [m for m in names
                 if m not in ("f1", "precision", "recall", "average_precision", "brier")]
    return [m for i, m in enumerate(names) if m in SUPPORTED and m not in names[:i]]


def group_label(value: Any) -> str:
    """A group's name as text: 1.0 and 1 are the same group '1'; a missing value is 'missing'."""
    if value is None or (isinstance(value, float) and value != value):
        return "missing"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def evaluate(model: Any, frame: pd.DataFrame, spec: dict[str, Any]) -> dict[str, float | None]:
    X, y = frame[spec["feature_columns"]], frame[spec["target"]]
    out: dict[str, float | None] = {}
    for name in metric_names(spec):
        try:
            value = score(name, model, X, y, spec.get("positive_class"))
        except ValueError:  # e.g. ROC AUC on a group holding one class only
            value = None
        out[name] = value if value is None or value == value else None
    return out


def by_group(model: Any, frame: pd.DataFrame, spec: dict[str, Any]) -> dict[str, list[dict]]:
    """{group column: [{"group", "rows", "share", "metrics"}, ...]} on `frame`."""
    out: dict[str, list[dict]] = {}
    for col in spec.get("group_columns") or []:
        labels = frame[col].map(group_label)
        rows = []
        for level in sorted(labels.unique()):
            part = frame[labels == level]
            rows.append({"group": level, "rows": int(len(part)),
                         "share": float(len(part) / len(frame)),
                         "metrics": evaluate(model, part, spec)})
        out[col] = rows
    return out
