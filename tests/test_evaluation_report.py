"""The generated project's evaluation report (templates/models/report.py), measured against
scikit-learn computed here: per-class precision/recall, the decision threshold against its
objective, calibration, per-group tables, real PNG figures and an executed notebook; for a
binary, a multiclass and a regression model, and through its command on a saved workspace."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpipe_flow.builtin import workspace_code

TEMPLATES = Path(__file__).resolve().parents[1] / "src/mlpipe_flow/builtin/templates"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def project(root: Path) -> ModuleType:
    """The generated models/ package copied into `root`, and its report module imported."""
    shutil.copytree(TEMPLATES / "models", root / "models",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return workspace_code.load(root, "models.report")


def fitted(X: pd.DataFrame, y: pd.Series, regression: bool = False) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = Ridge() if regression else LogisticRegression(max_iter=2000)
    return make_pipeline(StandardScaler(), est).fit(X, y)


def spec_for(problem_type: str, target: str, features: list[str], metric: str,
             secondary: list[str], positive: Any = None, groups: list[str] | None = None) -> dict:
    return {"problem_type": problem_type, "target": target, "primary_metric": metric,
            "secondary_metrics": secondary, "feature_columns": features,
            "positive_class": positive, "group_columns": groups or []}


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer(as_frame=True)
    X = data.data.iloc[:, :8]  # a weaker model than all 30 columns: thresholds matter
    y = data.target.map({0: "malignant", 1: "benign"})
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, random_state=0, stratify=y)
    return X_tr, y_tr, X_te.reset_index(drop=True), y_te.reset_index(drop=True)


def assert_png(path: Path) -> None:
    from matplotlib import image

    raw = path.read_bytes()
    assert raw[:8] == PNG_MAGIC and len(raw) > 5_000, path
    pixels = image.imread(path)
    assert pixels.shape[0] >= 200 and pixels.shape[1] >= 200, (path, pixels.shape)
    assert float(pixels[..., :3].std()) > 0.01, f"{path} is blank"


def assert_notebook(root: Path, figures: dict[str, str]) -> None:
    import nbformat

    nb = nbformat.read(root / "notebooks/02_model_evaluation.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)  # every cell ran
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == len(figures)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "<table" in html  # the metric tables are shown, not only printed


def test_binary_report_matches_sklearn(tmp_path: Path, cancer: Any) -> None:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import accuracy_score, brier_score_loss, precision_recall_fscore_support

    report = project(tmp_path)
    X_tr, y_tr, X_te, y_te = cancer
    model = fitted(X_tr, y_tr)
    spec = spec_for("binary_classification", "diagnosis", list(X_te.columns), "roc_auc",
                    ["accuracy", "f1_macro"], positive="malignant", groups=["site"])
    groups = pd.DataFrame({"site": np.where(np.arange(len(X_te)) % 3 == 0, "north", "south")})
    importances = {c: float(i) for i, c in enumerate(X_te.columns)}
    ev = report.write_evaluation(model, X_te, y_te, spec, tmp_path, importances=importances,
                                 groups=groups)

    assert ev == json.loads((tmp_path / "reports/evaluation.json").read_text())
    proba = model.predict_proba(X_te)[:, list(model.classes_).index("malignant")]
    is_pos = (y_te == "malignant").to_numpy()
    t = ev["decision_threshold"]["threshold"]
    # the deployed rule: positive when P(malignant) >= t; per class as sklearn computes it
    pred = np.where(proba >= t, "malignant", "benign")
    p, r, f, s = precision_recall_fscore_support(y_te, pred, labels=["benign", "malignant"],
                                                 zero_division=0)
    got = {row["class"]: row for row in ev["per_class"]}
    for i, c in enumerate(["benign", "malignant"]):
        assert got[c]["precision"] == pytest.approx(p[i]) and got[c]["recall"] == pytest.approx(r[i])
        assert got[c]["f1"] == pytest.approx(f[i]) and got[c]["support"] == s[i]
    p0, r0, _, _ = precision_recall_fscore_support(y_te, model.predict(X_te),
                                                   labels=["benign", "malignant"])
    assert [row["recall"] for row in ev["per_class_default_predict"]] == pytest.approx(list(r0))
    assert ev["metrics"]["accuracy"] == pytest.approx(accuracy_score(y_te, model.predict(X_te)))

    # no selection data: the F1 threshold is the best of every cut on the test scores
    f1_at = {c: f1(is_pos, proba >= c) for c in np.unique(proba)}
    assert f1(is_pos, proba >= t) == pytest.approx(max(f1_at.values()))
    assert "test split itself" in ev["decision_threshold"]["chosen_on"]
    saved = json.loads((tmp_path / "artifacts/decision_threshold.json").read_text())
    assert saved["threshold"] == t and saved["positive_class"] == "malignant"
    assert saved["objective"] == "f1"

    cal = ev["calibration"]
    assert cal["brier_score"] == pytest.approx(brier_score_loss(is_pos, proba))
    observed, predicted = calibration_curve(is_pos, proba, n_bins=10)
    assert [b["observed"] for b in cal["bins"]] == pytest.approx(list(observed))
    assert sum(b["rows"] for b in cal["bins"]) == len(X_te)
    bins = np.minimum((proba * 10).astype(int), 9)  # equal-width bins, counted here
    ece = sum((bins == b).sum() / len(proba) * abs(is_pos[bins == b].mean() - proba[bins == b].mean())
              for b in np.unique(bins))
    assert cal["expected_calibration_error"] == pytest.approx(ece)

    top = ev["budgets"][1]  # the top 10% of scored rows
    k = round(0.1 * len(proba))
    assert top["contacted"] == k
    assert top["precision"] == pytest.approx(is_pos[np.argsort(-proba, kind="stable")[:k]].mean())

    sites = {g["group"]: g for g in ev["groups"]["site"]}
    north = groups["site"].to_numpy() == "north"
    assert sites["north"]["rows"] == north.sum() and sites["south"]["rows"] == (~north).sum()
    assert sites["north"]["metrics"]["accuracy"] == pytest.approx(
        accuracy_score(y_te[north], model.predict(X_te[north])))
    assert sites["north"]["at_threshold"]["recall"] == pytest.approx(
        precision_recall_fscore_support(is_pos[north], proba[north] >= t, average="binary")[1])

    assert set(ev["figures"]) == {"roc_curve", "precision_recall_curve", "calibration_curve",
                                  "confusion_matrix", "feature_importance"}
    for rel in ev["figures"].values():
        assert_png(tmp_path / rel)
    assert_notebook(tmp_path, ev["figures"])


def f1(truth: np.ndarray, flagged: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, flagged, zero_division=0))


@pytest.mark.parametrize("objective", ["top_share:0.2", "min_precision:0.95", "min_recall:0.9"])
def test_threshold_meets_its_objective(tmp_path: Path, cancer: Any, objective: str) -> None:
    from sklearn.metrics import precision_score, recall_score

    report = project(tmp_path)
    X_tr, y_tr, X_te, y_te = cancer
    model = fitted(X_tr, y_tr)
    spec = spec_for("binary_classification", "diagnosis", list(X_te.columns), "roc_auc",
                    ["accuracy"], positive="malignant")
    ev = report.write_evaluation(model, X_te, y_te, spec, tmp_path, objective=objective,
                                 notebook=False)
    proba = model.predict_proba(X_te)[:, list(model.classes_).index("malignant")]
    is_pos = (y_te == "malignant").to_numpy()
    t = ev["decision_threshold"]["threshold"]
    kind, target = objective.split(":")[0], float(objective.split(":")[1])
    cuts = np.unique(proba)
    share = {c: float((proba >= c).mean()) for c in cuts}
    prec = {c: float(precision_score(is_pos, proba >= c, zero_division=0)) for c in cuts}
    rec = {c: float(recall_score(is_pos, proba >= c)) for c in cuts}
    assert ev["decision_threshold"]["met_on_test"]
    if kind == "top_share":  # within budget, and no lower cut stays within it
        assert share[t] <= target
        assert all(share[c] > target for c in cuts if c < t)
    elif kind == "min_precision":  # precision held, and no cut meeting it recalls more
        assert prec[t] >= target
        assert rec[t] == max(rec[c] for c in cuts if prec[c] >= target)
    else:
        assert rec[t] >= target
        assert prec[t] == pytest.approx(max(prec[c] for c in cuts if rec[c] >= target))
    assert ev["decision_threshold"]["on_test"]["precision"] == pytest.approx(prec[t])


def test_threshold_chosen_out_of_fold_is_measured_on_test(tmp_path: Path, cancer: Any) -> None:
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    report = project(tmp_path)
    X_tr, y_tr, X_te, y_te = cancer
    model = fitted(X_tr, y_tr)
    spec = spec_for("binary_classification", "diagnosis", list(X_te.columns), "roc_auc",
                    ["accuracy"], positive="malignant")
    ev = report.write_evaluation(model, X_te, y_te, spec, tmp_path, objective="top_share:0.3",
                                 select=(X_tr, y_tr), notebook=False)
    d = ev["decision_threshold"]
    assert d["chosen_on"].startswith(f"out-of-fold probabilities on {len(X_tr)} ")
    oof = cross_val_predict(model, X_tr, y_tr, method="predict_proba",
                            cv=StratifiedKFold(5, shuffle=True, random_state=0))
    oof_pos = oof[:, list(model.classes_).index("malignant")]
    assert (oof_pos >= d["threshold"]).mean() == pytest.approx(d["on_selection"]["flagged_share"])
    assert d["on_selection"]["flagged_share"] <= 0.3
    proba = model.predict_proba(X_te)[:, list(model.classes_).index("malignant")]
    assert d["on_test"]["flagged_share"] == pytest.approx((proba >= d["threshold"]).mean())
    assert d["met_on_test"] == (d["on_test"]["flagged_share"] <= 0.3)
    with pytest.raises(ValueError, match="unknown objective"):
        report.write_evaluation(model, X_te, y_te, spec, tmp_path, objective="top_share:2",
                                notebook=False)


def test_multiclass_report(tmp_path: Path) -> None:
    from sklearn.datasets import load_wine
    from sklearn.metrics import brier_score_loss, precision_recall_fscore_support
    from sklearn.model_selection import train_test_split

    report = project(tmp_path)
    data = load_wine(as_frame=True)
    X = data.data[["alcohol", "malic_acid", "ash", "magnesium"]]
    X_tr, X_te, y_tr, y_te = train_test_split(X, data.target, test_size=0.4, random_state=1,
                                              stratify=data.target)
    model = fitted(X_tr, y_tr)
    spec = spec_for("multiclass_classification", "cultivar", list(X.columns), "f1_macro",
                    ["accuracy", "roc_auc"])
    ev = report.write_evaluation(model, X_te, y_te, spec, tmp_path)
    p, r, _, s = precision_recall_fscore_support(y_te, model.predict(X_te), labels=[0, 1, 2],
                                                 zero_division=0)
    assert [c["class"] for c in ev["per_class"]] == ["0", "1", "2"]
    assert [c["precision"] for c in ev["per_class"]] == pytest.approx(list(p))
    assert [c["recall"] for c in ev["per_class"]] == pytest.approx(list(r))
    assert [c["support"] for c in ev["per_class"]] == list(s)
    assert "decision_threshold" not in ev and not (tmp_path / "artifacts").exists()
    proba = model.predict_proba(X_te)
    assert ev["calibration"]["brier_score"] == pytest.approx(
        brier_score_loss(y_te, proba, labels=[0, 1, 2]))
    assert set(ev["figures"]) == {"roc_curve", "precision_recall_curve", "calibration_curve",
                                  "confusion_matrix"}
    for rel in ev["figures"].values():
        assert_png(tmp_path / rel)
    assert_notebook(tmp_path, ev["figures"])


def test_regression_report(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
    from sklearn.model_selection import train_test_split

    report = project(tmp_path)
    data = load_diabetes(as_frame=True)
    X = data.data
    X_tr, X_te, y_tr, y_te = train_test_split(X, data.target, test_size=0.3, random_state=0)
    model = fitted(X_tr, y_tr, regression=True)
    spec = spec_for("regression", "progression", list(X.columns), "rmse", ["mae", "r2"],
                    groups=["sex"])
    ev = report.write_evaluation(model, X_te, y_te, spec, tmp_path)
    pred = model.predict(X_te)
    assert ev["metrics"]["rmse"] == pytest.approx(root_mean_squared_error(y_te, pred))
    assert ev["metrics"]["r2"] == pytest.approx(r2_score(y_te, pred))
    res = ev["residuals"]
    assert res["mean"] == pytest.approx(float(np.mean(y_te - pred)))
    assert res["mae"] == pytest.approx(mean_absolute_error(y_te, pred))
    assert res["q50"] == pytest.approx(float(np.median(y_te - pred)))
    sexes = ev["groups"]["sex"]
    assert len(sexes) == 2 and sum(g["rows"] for g in sexes) == len(X_te)
    first = X_te["sex"].map(report.group_label) == sexes[0]["group"]
    assert sexes[0]["metrics"]["mae"] == pytest.approx(
        mean_absolute_error(y_te[first], pred[first.to_numpy()]))
    assert set(ev["figures"]) == {"predicted_vs_actual", "residuals"}
    for rel in ev["figures"].values():
        assert_png(tmp_path / rel)
    assert_notebook(tmp_path, ev["figures"])


def test_command_on_a_saved_workspace(tmp_path: Path) -> None:
    """`python -m models.report` in a workspace: the saved model, the splits on disk,
    the threshold chosen out of fold for a contact budget and measured on the test split."""
    import joblib
    import yaml

    from ml_workspace import build

    ws = build(tmp_path / "ws", "telco", rows=900)
    shutil.copytree(TEMPLATES / "models", ws / "models",
                    ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((ws / "ml-spec.yaml").read_text())
    spec.update(positive_class="Yes", secondary_metrics=["accuracy"], group_columns=["gender"])
    (ws / "ml-spec.yaml").write_text(yaml.safe_dump(spec))
    (ws / "interpretability").mkdir()
    (ws / "interpretability/feature_importance.json").write_text(json.dumps(
        {"features": [{"feature": "tenure", "importance": 0.08},
                      {"feature": "Contract", "importance": 0.05}]}))
    bad = subprocess.run([sys.executable, "-m", "models.report", "--objective", "top_share"],
                         cwd=ws, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "unknown objective" in bad.stderr
    assert not (ws / "reports").exists()
    res = subprocess.run([sys.executable, "-m", "models.report", "--objective", "top_share:0.1"],
                         cwd=ws, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    ev = json.loads((ws / "reports/evaluation.json").read_text())
    saved = json.loads((ws / "artifacts/decision_threshold.json").read_text())
    assert saved["positive_class"] == "Yes" and saved["objective"] == "top_share:0.1"
    assert "out-of-fold" in saved["chosen_on"]
    assert saved["model_sha256"] == hashlib.sha256((ws / "artifacts/model.joblib").read_bytes()).hexdigest()
    model = joblib.load(ws / "artifacts/model.joblib")
    test = pd.read_csv(ws / "data/splits/test.csv")
    proba = model.predict_proba(test[spec["feature_columns"]])[:, list(model.classes_).index("Yes")]
    flagged = proba >= saved["threshold"]
    assert ev["decision_threshold"]["on_test"]["flagged_share"] == pytest.approx(flagged.mean())
    assert 0.03 < flagged.mean() < 0.2  # a 10% budget chosen out of fold, roughly held on test
    assert ev["decision_threshold"]["on_test"]["precision"] == pytest.approx(
        (test["Churn"][flagged] == "Yes").mean())
    assert [g["group"] for g in ev["groups"]["gender"]] == ["Female", "Male"]
    assert "feature_importance" in ev["figures"]
    for rel in ev["figures"].values():
        assert_png(ws / rel)
    assert_notebook(ws, ev["figures"])


def requirements(problem_type: str, groups: list[str]) -> str:
    from mlpipe_flow.builtin.files import render

    regression = problem_type == "regression"
    spec = {"problem": "p", "problem_type": problem_type, "target": "y", "primary_metric":
            "rmse" if regression else "roc_auc", "metric_threshold": None,
            "secondary_metrics": ["mae"] if regression else ["accuracy"], "id_columns": [],
            "feature_columns": ["a"], "group_columns": groups,
            "positive_class": "Yes" if problem_type == "binary_classification" else None,
            "data_source": {"kind": "file", "path": "data/raw/d.csv"},
            "serving": {"mode": "realtime", "latency_p95_ms": 100, "throughput_rps": 1000},
            "retraining": {"schedule": "0 2 * * 1", "triggers": ["drift"]}}
    summary = ({"mean": 1, "std": 1, "min": 0, "max": 2} if regression
               else {"classes": {"No": {"count": 9, "share": 0.9}, "Yes": {"count": 1, "share": 0.1}}})
    profile = {"rows": 10, "columns": [], "constant_columns": [], "target_summary": summary,
               "missing_cells": 0, "cells": 20, "duplicate_rows": 0, "schedule_words": "weekly"}
    return render("ml-requirements.md.j2", {"spec": spec, "profile": profile})


@pytest.mark.parametrize("problem_type", ["binary_classification", "multiclass_classification",
                                          "regression"])
def test_requirements_promise_what_the_report_writes(tmp_path: Path, problem_type: str) -> None:
    """Every figure and file the requirements name is one report.py writes for that problem."""
    import re

    from sklearn.datasets import make_classification, make_regression

    text = requirements(problem_type, ["region"])
    report = project(tmp_path)
    regression = problem_type == "regression"
    if regression:
        X_, y_ = make_regression(n_samples=300, n_features=4, noise=5.0, random_state=0)
    else:
        X_, y_ = make_classification(n_samples=300, n_features=4, n_informative=3,
                                     n_redundant=0, random_state=0,
                                     n_classes=2 if problem_type == "binary_classification" else 3)
    X = pd.DataFrame(X_, columns=["a", "b", "c", "d"]).assign(region=np.arange(300) % 2)
    y = pd.Series(y_)
    model = fitted(X, y, regression)
    spec = spec_for(problem_type, "y", list(X.columns), "rmse" if regression else "accuracy",
                    [], positive=1 if problem_type == "binary_classification" else None,
                    groups=["region"])
    ev = report.write_evaluation(model, X, y, spec, tmp_path, importances={"a": 1.0},
                                 notebook=False)
    named = set(re.findall(r"`([a-z_]+)\.png`", text))
    assert named == set(ev["figures"])  # the requirements name each figure written, no other
    assert set(ev["groups"]) == {"region"}
    for path in ("reports/evaluation.json", report.NOTEBOOK, "models/report.py"):
        assert path in text
    assert ("artifacts/decision_threshold.json" in text) == (problem_type == "binary_classification")
    assert "Per group of `region`" in text
    assert "Per group" not in requirements(problem_type, [])
