"""The generated project's one metric table (templates/models/metrics.py) against scikit-learn
and against the gate's own scoring (mlpipe_flow.checks.metrics, spec.LOWER_IS_BETTER): every
metric, on fitted models, for binary and multiclass classification and regression, computed
three ways — through the table, straight through `sklearn.metrics.get_scorer` (its neg_ sign
undone by hand), and by the gate from the model's raw outputs — must agree, and so must the
direction (higher or lower is better) everywhere a direction is written."""

from __future__ import annotations

import importlib.util
import math
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpipe_flow import spec
from mlpipe_flow.checks import metrics as gate

TEMPLATES = Path(__file__).resolve().parents[1] / "src/mlpipe_flow/builtin/templates"


def load(rel: str, name: str) -> ModuleType:
    mod_spec = importlib.util.spec_from_file_location(name, TEMPLATES / rel)
    assert mod_spec is not None and mod_spec.loader is not None
    mod = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    mod_spec.loader.exec_module(mod)
    return mod


table = load("models/metrics.py", "project_metrics")
SPEC_METRICS = set(typing.get_args(spec.Metric))


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                      "c": rng.choice(["x", "y", "z"], size=n)})
    return X


def pipeline(regression: bool) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    pre = ColumnTransformer([("num", "passthrough", ["a", "b"]),
                             ("cat", OneHotEncoder(), ["c"])])
    return Pipeline([("pre", pre), ("model", Ridge() if regression else LogisticRegression())])


def problem(kind: str) -> tuple[Any, pd.DataFrame, pd.Series, Any]:
    """(fitted model, test X, test y, positive class) for one problem kind; noisy targets, so
    no metric sits at its bound."""
    rng = np.random.default_rng(1)
    X = frame(600, 0)
    signal = X["a"] + 0.5 * X["b"] + (X["c"] == "x") + rng.normal(scale=1.0, size=len(X))
    if kind == "regression":
        y = pd.Series(10 + 3 * signal, name="y")  # positive values: MAPE is defined
        positive = None
    elif kind == "binary":
        y = pd.Series(np.where(signal > 0.3, "Yes", "No"), name="y")
        positive = "Yes"
    elif kind == "binary-int":  # 0/1 labels, the positive class given as text
        y = pd.Series((signal > 0.3).astype(int), name="y")
        positive = "1"
    else:
        y = pd.Series(pd.cut(signal, [-np.inf, -0.3, 0.8, np.inf],
                             labels=["low", "mid", "high"]).astype(str), name="y")
        positive = None
    model = pipeline(kind == "regression").fit(X.iloc[:400], y.iloc[:400])
    return model, X.iloc[400:], y.iloc[400:].reset_index(drop=True), positive


KINDS = {"binary": "binary_classification", "binary-int": "binary_classification",
         "multiclass": "multiclass_classification", "regression": "regression"}


def metrics_of(kind: str) -> list[str]:
    return gate.applicable(KINDS[kind], has_proba=kind != "regression")


def direct(name: str, model: Any, X: pd.DataFrame, y: pd.Series, positive: Any) -> float:
    """The metric straight through sklearn: get_scorer (make_scorer where the positive class
    must be passed), with the neg_ sign undone here."""
    from sklearn import metrics as skm

    classes = list(getattr(model, "classes_", []))
    truth = np.asarray(y)
    if positive is not None and classes and not isinstance(classes[0], str):
        positive = type(classes[0])(positive)
    multi = len(classes) > 2
    by_name = {"roc_auc": "roc_auc_ovr" if multi else "roc_auc",
               "average_precision": "average_precision", "log_loss": "neg_log_loss",
               "accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy",
               "f1_macro": "f1_macro", "rmse": "neg_root_mean_squared_error",
               "mae": "neg_mean_absolute_error", "mape": "neg_mean_absolute_percentage_error",
               "r2": "r2", "brier": "neg_brier_score",
               "f1": "f1_macro", "precision": "precision_macro", "recall": "recall_macro"}
    if name in ("f1", "precision", "recall", "average_precision", "brier") and not multi:
        fn = {"f1": skm.f1_score, "precision": skm.precision_score,
              "recall": skm.recall_score, "average_precision": skm.average_precision_score,
              "brier": skm.brier_score_loss}[name]
        proba = name in ("average_precision", "brier")
        col = model.predict_proba(X)[:, classes.index(positive)] if proba else None
        if name == "brier":
            return float(fn(truth == positive, col))
        if proba:
            return float(fn(truth, col, pos_label=positive))
        return float(fn(truth, model.predict(X), pos_label=positive, zero_division=0))
    scorer_name = by_name[name]
    value = float(skm.get_scorer(scorer_name)(model, X, truth))
    return -value if scorer_name.startswith("neg_") else value


def by_gate(name: str, model: Any, X: pd.DataFrame, y: pd.Series, positive: Any) -> float:
    """The gate's score from the model's raw outputs (as the phase-3 and phase-6 gates do)."""
    classes = [gate.label(c) for c in getattr(model, "classes_", [])] or None
    proba = model.predict_proba(X).tolist() if name in gate.PROBA_METRICS else None
    multi = classes is not None and len(classes) > 2
    return gate.score(name, y.tolist(), model.predict(X).tolist(), proba, classes,
                      None if multi else positive)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_metric_is_the_same_through_the_table_sklearn_and_the_gate(kind: str) -> None:
    model, X, y, positive = problem(kind)
    names = metrics_of(kind)
    assert names, kind
    for name in names:
        mine = table.score(name, model, X, y, None if kind == "multiclass" else positive)
        ref = direct(name, model, X, y, positive)
        judged = by_gate(name, model, X, y, positive)
        assert math.isfinite(mine), (kind, name)
        assert mine == pytest.approx(ref, rel=1e-9, abs=1e-12), (kind, name, mine, ref)
        assert mine == pytest.approx(judged, rel=1e-9, abs=1e-12), (kind, name, mine, judged)
        if not table.higher_is_better(name):  # errors and losses come out positive
            assert mine > 0, (kind, name, mine)


def test_the_positive_class_decides_the_one_sided_metrics() -> None:
    model, X, y, _ = problem("binary")
    for name in ("f1", "precision", "recall", "average_precision"):
        yes = table.score(name, model, X, y, "Yes")
        no = table.score(name, model, X, y, "No")
        assert yes != pytest.approx(no), name  # a table that ignored it would agree
    assert table.score("roc_auc", model, X, y, "Yes") == pytest.approx(
        table.score("roc_auc", model, X, y, "No"))


def test_directions_agree_with_the_gate_for_every_metric() -> None:
    names = set(table.METRICS) | SPEC_METRICS | set(gate.BINARY) | set(gate.MULTICLASS) | \
        set(gate.REGRESSION)
    assert set(table.METRICS) >= SPEC_METRICS, SPEC_METRICS - set(table.METRICS)
    for name in sorted(names):
        assert table.higher_is_better(name) == gate.higher_is_better(name), name
        if name in SPEC_METRICS:
            assert table.higher_is_better(name) == spec.higher_is_better(name), name
        assert table.needs_proba(name) == (name in gate.PROBA_METRICS), name
    lower = {n for n in table.METRICS if not table.higher_is_better(n)}
    assert lower == spec.LOWER_IS_BETTER | {"brier"}
    # every sklearn scorer the table names exists, and errors are sklearn's neg_ scorers
    from sklearn.metrics import get_scorer_names

    for name, m in table.METRICS.items():
        for scorer in filter(None, (m.scorer, m.multiclass_scorer)):
            assert scorer in get_scorer_names(), (name, scorer)
        assert m.scorer.startswith("neg_") == (not m.higher_is_better), name


def test_an_unknown_metric_is_an_error_not_a_fallback() -> None:
    model, X, y, positive = problem("binary")
    for call in (lambda: table.score("accuracy_typo", model, X, y, positive),
                 lambda: table.higher_is_better("mse")):
        with pytest.raises(table.UnknownMetricError, match="unknown metric"):
            call()
    # not a ValueError: evaluate() skips metrics undefined on a group by catching ValueError
    assert not issubclass(table.UnknownMetricError, ValueError)


def test_no_other_file_of_the_project_writes_a_metric_rule() -> None:
    """Validation, retraining (and the registry) import the table; none spells out a direction
    or an sklearn metric function of its own."""
    for rel in ("deployment/validate_model.py", "continuous_training/retrain.py",
                "continuous_training/registry.py", "rollback/rollback.py"):
        text = (TEMPLATES / rel).read_text(encoding="utf-8")
        assert "LOWER_IS_BETTER" not in text and "sklearn.metrics" not in text, rel
        assert "from sklearn import metrics" not in text, rel
    for rel in ("deployment/validate_model.py", "continuous_training/retrain.py"):
        assert "from models.metrics import" in (TEMPLATES / rel).read_text(encoding="utf-8"), rel


@pytest.mark.parametrize("kind", list(KINDS))
def test_outputs_already_given_score_as_their_model_does(kind: str) -> None:
    """`score_outputs` (the API's answers, logged predictions) through the same scorers: equal
    to scoring the model itself, and to the gate's score of the same outputs."""
    model, X, y, positive = problem(kind)
    pos = None if kind == "multiclass" else positive
    preds = model.predict(X).tolist()
    for name in metrics_of(kind):
        if kind == "regression":
            got = table.score_outputs(name, y.tolist(), preds)
        else:  # answers as JSON carries them: labels and class names as text
            classes = [gate.label(c) for c in model.classes_]
            got = table.score_outputs(name, [gate.label(v) for v in y], [gate.label(p) for p in preds],
                                      model.predict_proba(X).tolist(), classes, pos)
        assert got == pytest.approx(table.score(name, model, X, y, pos), rel=1e-9, abs=1e-12), \
            (kind, name)
        assert got == pytest.approx(by_gate(name, model, X, y, positive), rel=1e-9, abs=1e-12), \
            (kind, name)
