"""The project's one metric table: how each metric of ml-spec.yaml is computed and which way is
better. Training (CV, test score), validation (deployment/validate_model.py), retraining
(continuous_training/retrain.py) and monitoring import it from here; nothing else spells out a
metric rule.

Each metric is a scikit-learn scorer (`sklearn.metrics.get_scorer`). sklearn's scorers are
"greater is better": an error such as RMSE is the scorer `neg_root_mean_squared_error`, which
returns minus the error. `score()` undoes that sign, so it returns the metric as people quote
it (an RMSE of 3.2, not -3.2), and `higher_is_better()` says which way is better. Metrics that
depend on a positive class (f1, precision, recall, average precision, Brier) are scored for the
spec's `positive_class`; on more than two classes, f1/precision/recall are macro averages and
ROC AUC is one-vs-rest. A metric not in the table is an error, never a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Metric:
    scorer: str  # the sklearn scorer name (`get_scorer`) for two classes or regression
    higher_is_better: bool
    needs_proba: bool
    multiclass_scorer: str | None = None  # on more than two classes, when it differs
    #: metrics of a positive class: the sklearn function the scorer wraps, scored with
    #: pos_label=the spec's positive_class (sklearn's scorers assume the class 1)
    positive_fn: str | None = None


METRICS: dict[str, Metric] = {
    # classification, from class probabilities
    "roc_auc": Metric("roc_auc", True, True, multiclass_scorer="roc_auc_ovr"),
    "average_precision": Metric("average_precision", True, True,
                                positive_fn="average_precision_score"),
    "log_loss": Metric("neg_log_loss", False, True),
    "brier": Metric("neg_brier_score", False, True, positive_fn="brier_score_loss"),
    # classification, from labels
    "accuracy": Metric("accuracy", True, False),
    "balanced_accuracy": Metric("balanced_accuracy", True, False),
    "f1_macro": Metric("f1_macro", True, False),
    "f1": Metric("f1", True, False, multiclass_scorer="f1_macro", positive_fn="f1_score"),
    "precision": Metric("precision", True, False, multiclass_scorer="precision_macro",
                        positive_fn="precision_score"),
    "recall": Metric("recall", True, False, multiclass_scorer="recall_macro",
                     positive_fn="recall_score"),
    # regression
    "rmse": Metric("neg_root_mean_squared_error", False, False),
    "mae": Metric("neg_mean_absolute_error", False, False),
    "mape": Metric("neg_mean_absolute_percentage_error", False, False),
    "r2": Metric("r2", True, False),
}


class UnknownMetricError(LookupError):
    """A metric name the table does not hold (not a ValueError: callers that skip metrics
    undefined on a subgroup must not swallow it)."""


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownMetricError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def higher_is_better(name: str) -> bool:
    return metric(name).higher_is_better


def needs_proba(name: str) -> bool:
    return metric(name).needs_proba


def scorer(name: str, classes: Any = None, positive_class: Any = None) -> Any:
    """The sklearn scorer for `name` (greater is better, as sklearn's are) for a model with
    these `classes_`: usable as `scoring=` in cross_validate or a search."""
    from sklearn import metrics as skm

    m = metric(name)
    labels = list(classes) if classes is not None else []
    if len(labels) > 2:
        if name in ("average_precision", "brier"):
            raise ValueError(f"{name} is defined for two classes only")
        return skm.get_scorer(m.multiclass_scorer or m.scorer)
    if m.positive_fn is None or not labels:
        return skm.get_scorer(m.scorer)
    pos = _as_class(positive_class, labels) if positive_class is not None else labels[-1]
    extra = {} if m.needs_proba else {"zero_division": 0}
    return skm.make_scorer(getattr(skm, m.positive_fn), greater_is_better=m.higher_is_better,
                           response_method="predict_proba" if m.needs_proba else "predict",
                           pos_label=pos, **extra)


def _as_class(value: Any, classes: list[Any]) -> Any:
    """The element of `classes` that `value` names (1, 1.0 and '1' name the same class)."""
    text = _label(value)
    for c in classes:
        if _label(c) == text:
            return c
    raise ValueError(f"positive class {value!r} is not one of the model's classes {classes}")


def _label(v: Any) -> str:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def score(name: str, model: Any, X: pd.DataFrame, y: pd.Series,
          positive_class: Any = None) -> float:
    """`name` of a fitted model on (X, y), as people quote it (errors positive)."""
    m = metric(name)
    classes = list(getattr(model, "classes_", [])) if _is_classifier(model) else []
    truth: Any = y
    if classes:  # the labels as the model knows them: '1' read as text is the class 1
        by_text = {_label(c): c for c in classes}
        known = np.asarray(model.classes_)
        truth = np.asarray([by_text.get(_label(v), v) for v in y],
                           dtype=object if known.dtype.kind in "OUS" else known.dtype)
    if m.needs_proba and not classes:
        raise ValueError(f"{name} needs a classifier with predict_proba")
    value = float(scorer(name, classes, positive_class)(model, X, truth))
    return -value if m.scorer.startswith("neg_") else value  # sklearn's sign undone


def _is_classifier(model: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(model)) or hasattr(model, "predict_proba")


def score_outputs(name: str, y: Any, predictions: Any, probabilities: Any = None,
                  classes: Any = None, positive_class: Any = None) -> float:
    """`name` of outputs a model already gave (the API's answers, logged predictions): the same
    scorer as `score()`, on a stand-in estimator that replays them. `probabilities` rows align
    with `classes`; leave both out for regression or label metrics."""
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

    answers = np.asarray(predictions)
    if classes is None:
        class Replay(RegressorMixin, BaseEstimator):
            def predict(self, X: Any) -> Any:
                return answers.astype(float)
        return score(name, Replay(), pd.DataFrame(index=range(len(answers))), pd.Series(y))

    known = np.asarray(classes)
    proba = None if probabilities is None else np.asarray(probabilities, dtype=float)

    class ReplayClassifier(ClassifierMixin, BaseEstimator):
        classes_ = known

        def predict(self, X: Any) -> Any:
            by_text = {_label(c): c for c in known}
            return np.asarray([by_text.get(_label(p), p) for p in answers], dtype=known.dtype)

        def predict_proba(self, X: Any) -> Any:
            if proba is None:
                raise ValueError(f"{name} needs class probabilities")
            return proba

    return score(name, ReplayClassifier(), pd.DataFrame(index=range(len(answers))),
                 pd.Series(list(y)), positive_class)
