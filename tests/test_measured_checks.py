"""Every measured check of phases 1-3: passes on the built-in agent's Telco workspace, and
fails on a copy with one thing broken (a dummy model, an inflated reported score, overlapping
splits, a schema violation, a missing model-card section, ...)."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import mlpipe
from mlpipe_flow.checks import CHECKS, CheckContext
from mlpipe_flow.models import CheckResult


def check(ws: Path, kind: str, **params: Any) -> CheckResult:
    k = CHECKS[kind]
    return k.run(CheckContext(workspace=ws, phase="test", timeout_s=300), k.params(**params))


@pytest.fixture
def broken(telco_workspace: Path, tmp_path: Path) -> Path:
    """A private copy of the Telco workspace to break."""
    dest = tmp_path / "ws"
    shutil.copytree(telco_workspace, dest, ignore=shutil.ignore_patterns(".mlpipe"))
    return dest


def edit_yaml(path: Path, **changes: Any) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def edit_json(path: Path, fn: Any) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def write_rows(path: Path, data: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(data)


# -- phase 1 -------------------------------------------------------------------------
def test_ml_spec(telco_workspace: Path, broken: Path) -> None:
    assert check(telco_workspace, "ml_spec").status == "passed"
    edit_yaml(broken / "ml-spec.yaml", primary_metric="rmse")
    res = check(broken, "ml_spec")
    assert res.status == "failed"
    assert "primary_metric 'rmse' does not fit a classification" in res.message
    edit_yaml(broken / "ml-spec.yaml", primary_metric="roc_auc", colour="blue")
    res = check(broken, "ml_spec")
    assert res.status == "failed" and "unknown field 'colour'" in res.message


def test_target_in_data(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "target_in_data")
    assert res.status == "passed" and res.evidence["columns"] == 21
    edit_yaml(broken / "ml-spec.yaml", target="Churned")
    res = check(broken, "target_in_data")
    assert res.status == "failed"
    assert "'Churned' is not a column of data/raw/telco_churn.csv" in res.message
    assert "'customerID'" in res.message  # what was measured: the real header


# -- phase 2 -------------------------------------------------------------------------
def test_splits_schema(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "splits_schema")
    assert res.status == "passed" and res.evidence["violations"] == 0
    test_csv = broken / "data/splits/test.csv"
    data = rows(test_csv)
    col = data[0].index("Contract")
    data[5][col] = "Three year"
    data[6][data[0].index("tenure")] = "9999"
    write_rows(test_csv, data)
    res = check(broken, "splits_schema")
    assert res.status == "failed" and res.evidence["violations"] == 2
    assert "'Three year' is not an allowed category" in res.message or \
        any("Three year" in e for e in res.evidence["examples"])
    assert any("above the maximum" in e for e in res.evidence["examples"])
    # a schema that checks nothing is not accepted either
    schema_file = broken / "data_quality/schema.json"
    schema = json.loads(schema_file.read_text())
    schema["columns"] = [{"name": h, "type": "anything", "nullable": True} for h in data[0]]
    schema_file.write_text(json.dumps(schema))
    res = check(broken, "splits_schema")
    assert res.status == "failed" and "does not constrain its columns" in res.message, res
    assert "type 'anything' is not one of" in res.message


def test_splits_completeness(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "splits_completeness")
    assert res.status == "passed" and res.evidence["completeness"] > 0.999
    train = broken / "data/splits/train.csv"
    data = rows(train)
    for r in data[1:]:
        for i in range(0, len(r), 4):
            r[i] = ""
    write_rows(train, data)
    res = check(broken, "splits_completeness")
    assert res.status == "failed" and "expected > 95%" in res.message
    assert res.evidence["completeness"] < 0.95


def test_splits_disjoint(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "splits_disjoint")
    assert res.status == "passed" and res.evidence["shared_rows"] == 0
    train = rows(broken / "data/splits/train.csv")
    test_csv = broken / "data/splits/test.csv"
    write_rows(test_csv, rows(test_csv) + train[1:4])
    res = check(broken, "splits_disjoint")
    assert res.status == "failed" and res.evidence["shared_rows"] == 3
    assert "3 row(s) present in two splits" in res.message


def test_dag_structure(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "dag_structure")
    assert res.status == "passed", res
    assert res.evidence["tasks"] == ["build_features", "ingest_data", "validate_data"]
    dag = broken / "airflow_dags/data_pipeline.py"
    dag.write_text(dag.read_text().replace("ingest >> validate >> features",
                                           "ingest >> features\n    features >> validate"))
    res = check(broken, "dag_structure")
    assert res.status == "failed" and "not in order" in res.message
    dag.write_text("def ingest():\n    pass\n")
    res = check(broken, "dag_structure")
    assert res.status == "failed" and "creates no DAG" in res.message
    dag.write_text("with DAG(:\n")
    assert check(broken, "dag_structure").status == "failed"


def test_schema_fits_data(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "schema_fits_data")
    assert res.status == "passed", res
    assert "no recorded run" in res.evidence["note"]  # judged against data/raw as found
    schema_file = broken / "data_quality/schema.json"
    good = json.loads(schema_file.read_text())

    def with_column(name: str, **changes: Any) -> CheckResult:
        schema = json.loads(json.dumps(good))
        for col in schema["columns"]:
            if col["name"] == name:
                col.update(changes)
        schema_file.write_text(json.dumps(schema))
        return check(broken, "schema_fits_data")

    res = with_column("tenure", min=-1e300, max=1e300)
    assert res.status == "failed" and "far wider than the raw range [0, 72]" in res.message, res
    res = with_column("tenure", min=1)
    assert res.status == "failed" and "does not contain the raw range" in res.message, res
    res = with_column("gender", nullable=True)
    assert res.status == "failed" and "no missing value" in res.message, res
    res = with_column("Contract", categories=["Month-to-month", "One year"])
    assert res.status == "failed" and "lack 1 value(s)" in res.message, res
    res = with_column("Contract", type="string")
    assert res.status == "failed" and "only 3 distinct values" in res.message, res
    assert with_column("TotalCharges", min=0, max=10000).status == "passed"  # a sane rounding


def test_splits_from_raw(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "splits_from_raw")
    assert res.status == "passed", res
    raw = next((telco_workspace / "data/raw").glob("*.csv"))
    raw_rows = len(rows(raw)) - 1
    assert res.evidence["coverage"] >= 0.99
    assert 0.99 * raw_rows <= res.evidence["expected_rows"] <= raw_rows, (res.evidence, raw_rows)
    test_csv = broken / "data/splits/test.csv"
    data = rows(test_csv)
    data[3][data[0].index("MonthlyCharges")] = "12.34"
    write_rows(test_csv, data)
    res = check(broken, "splits_from_raw")
    assert res.status == "failed" and "1 split row(s) that are not rows of the raw" in res.message
    assert "customerID=" in res.message  # the row is named by its id


def test_split_not_easier(telco_workspace: Path) -> None:
    res = check(telco_workspace, "split_not_easier")
    assert res.status == "passed", res
    test_rows = len(rows(telco_workspace / "data/splits/test.csv")) - 1
    assert abs(res.evidence["test"]["z"]) < 4 and res.evidence["test"]["rows"] == test_rows


def test_notebook_valid(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "notebook_valid")
    assert res.status == "passed", res
    nb_rel = "eda_notebooks/eda.ipynb"
    assert res.evidence["notebooks"][nb_rel]["differing_cells"] == 0
    assert res.evidence["notebooks"][nb_rel]["data_read"] == ["data/interim/dataset.csv"]
    nb_path = broken / "eda_notebooks/eda.ipynb"
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
    nb_path.write_text(json.dumps(nb))
    res = check(broken, "notebook_valid")
    assert res.status == "failed" and "no code cell has output" in res.message
    nb["cells"][0]["cell_type"] = "slides"
    nb_path.write_text(json.dumps(nb))
    res = check(broken, "notebook_valid")
    assert res.status == "failed" and "not a valid notebook" in res.message


# -- phase 3 -------------------------------------------------------------------------
def save_dummy_model(ws: Path) -> None:
    import joblib
    import pandas as pd
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline

    spec = yaml.safe_load((ws / "ml-spec.yaml").read_text())
    train = pd.read_csv(ws / "data/splits/train.csv")
    model = Pipeline([("model", DummyClassifier(strategy="prior"))])
    model.fit(train[spec["feature_columns"]], train[spec["target"]])
    joblib.dump(model, ws / "artifacts/model.joblib")


def test_model_beats_baseline(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "model_beats_baseline")
    assert res.status == "passed", res.message
    assert res.evidence["baseline"] == pytest.approx(0.5) and res.evidence["margin"] > 0.5
    assert res.evidence["formula"] == "(m - b) / (1 - b)"
    save_dummy_model(broken)
    res = check(broken, "model_beats_baseline")
    assert res.status == "failed"
    assert "margin (m - b) / (1 - b) = 0.0%" in res.message and "expected > 10%" in res.message


def test_a_test_split_edited_after_phase_2_is_not_scored(telco_workspace: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Cutting the test split down to the rows the model gets right would inflate the score;
    mlpipe recorded the split's hash in its own records (MLPIPE_HOME) when phase 2 passed, so
    the gate refuses to score it — even when the agent rewrites the hash in .mlpipe/state.json."""
    from mlpipe_flow.state import file_sha256

    monkeypatch.setenv("MLPIPE_HOME", str(telco_workspace.parent / "home"))
    ws = tmp_path / "ws"
    shutil.copytree(telco_workspace, ws)  # with .mlpipe/state.json this time
    test_csv = ws / "data/splits/test.csv"
    data = rows(test_csv)
    write_rows(test_csv, data[:-50])
    state_file = ws / ".mlpipe" / "state.json"
    state = json.loads(state_file.read_text())
    for rec in state["phases"]:
        if "data/splits/test.csv" in rec["output_hashes"]:
            rec["output_hashes"]["data/splits/test.csv"] = file_sha256(test_csv)
    state_file.write_text(json.dumps(state))
    k = CHECKS["model_beats_baseline"]
    ctx = CheckContext(workspace=ws, phase="test", timeout_s=300, run_id=state["run_id"])
    res = k.run(ctx, k.params())
    assert res.status == "failed", res.message
    assert "data/splits/test.csv changed since the phase that made it passed" in res.message
    # a run whose records are gone cannot be judged against them: an error, never a pass
    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path / "elsewhere"))
    res = k.run(ctx, k.params())
    assert res.status == "error" and "records of run" in res.message, res.message


def test_reported_score_matches(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "reported_score_matches")
    assert res.status == "passed", res.message
    measured = res.evidence["measured"]
    edit_json(broken / "artifacts/model_meta.json",
              lambda d: d.update(test_score=min(1.0, measured + 0.05)))
    res = check(broken, "reported_score_matches")
    assert res.status == "failed" and "artifacts/model_meta.json reports" in res.message
    assert f"{measured:.4f}" in res.message


def test_cv_stability(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "cv_stability")
    assert res.status == "passed", res.message
    assert res.evidence["gate_cv_std"] < 0.05 and res.evidence["repeats"] == 3
    results = broken / "experiments/results.json"

    def widen(d: dict) -> None:
        scores = [0.60, 0.90, 0.70, 0.95, 0.65]
        mean = sum(scores) / 5
        std = (sum((s - mean) ** 2 for s in scores) / 5) ** 0.5
        d["models"][d["best_model"]].update(cv_scores=scores, cv_mean=mean, cv_std=std)

    edit_json(results, widen)
    res = check(broken, "cv_stability")
    assert res.status == "failed" and "implausibly large" in res.message, res.message
    edit_json(results, lambda d: d["models"][d["best_model"]].update(cv_std=0.001))
    res = check(broken, "cv_stability")
    assert res.status == "failed" and "is not the std of its fold scores" in res.message


def test_cv_stability_uses_the_gates_own_spread(telco_workspace: Path, broken: Path) -> None:
    """An unstable model fails on the spread the gate measures, whatever results.json says."""
    res = check(telco_workspace, "cv_stability", max_std=0.001, noise_k=0.01)
    assert res.status == "failed" and "expected a std < 0.001" in res.message
    assert "gate's 3x5-fold CV" in res.message


def test_cv_stability_allows_what_sampling_noise_alone_gives(telco_workspace: Path) -> None:
    """On small data a fold's score varies from its few rows alone: the limit is then
    noise_k x that noise (measured by resampling each fold), not the fixed max_std."""
    res = check(telco_workspace, "cv_stability", max_std=0.001, noise_k=100)
    ev = res.evidence
    assert res.status == "passed", res.message
    assert 0 < ev["normalised_noise"] < 0.1
    assert abs(ev["limit"] - 100 * ev["normalised_noise"]) < 1e-3
    assert "x the folds' sampling noise" in res.message


def test_fold_noise_matches_the_theory() -> None:
    """RMSE of n normal errors of std s has a sampling std of about s / sqrt(2 n)."""
    import numpy as np

    from mlpipe_flow.checks.model_measure import CV_FOLDS, _fold_noise

    rng = np.random.default_rng(0)
    n, sigma = 75 * CV_FOLDS, 10.0
    truth = rng.normal(100, 30, n)
    preds = truth + rng.normal(0, sigma, n)
    ids = np.arange(n) % CV_FOLDS
    outputs = [{"predictions": preds[ids == j].tolist()} for j in range(CV_FOLDS)]
    noise = _fold_noise(outputs, ids.tolist(), np.asarray(truth, dtype=object), "rmse", None, 1)
    assert abs(noise / (sigma / np.sqrt(2 * 75)) - 1) < 0.25, noise


def test_model_refit(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "model_refit")
    assert res.status == "passed", res.message
    ev = res.evidence
    assert ev["distances"]["train_valid"] < 1e-6 < ev["distances"]["train_valid_test"]
    import joblib
    import pandas as pd
    from sklearn.base import clone

    spec = yaml.safe_load((broken / "ml-spec.yaml").read_text())
    data = pd.concat([pd.read_csv(broken / f"data/splits/{n}.csv")
                      for n in ("train", "valid", "test")], ignore_index=True)
    model = clone(joblib.load(broken / "artifacts/model.joblib"))
    joblib.dump(model.fit(data[spec["feature_columns"]], data[spec["target"]]),
                broken / "artifacts/model.joblib")
    res = check(broken, "model_refit")
    assert res.status == "failed" and "it was trained on the test split" in res.message


def test_model_refit_needs_a_refittable_model(broken: Path) -> None:
    """A saved object that predicts but cannot be cloned and refitted: the gate cannot check
    how it was trained, so the check fails (scoring it still works)."""
    import importlib
    import sys

    import joblib

    (broken / "frozen.py").write_text(
        "class Frozen:\n"
        "    def __init__(self, model):\n        self.model = model\n"
        "        self.classes_ = model.classes_\n"
        "    def predict(self, X):\n        return self.model.predict(X)\n"
        "    def predict_proba(self, X):\n        return self.model.predict_proba(X)\n")
    sys.path.insert(0, str(broken))
    try:
        frozen = importlib.import_module("frozen")
        model = joblib.load(broken / "artifacts/model.joblib")
        joblib.dump(frozen.Frozen(model), broken / "artifacts/model.joblib")
    finally:
        sys.path.remove(str(broken))
        sys.modules.pop("frozen", None)
    res = check(broken, "model_refit")
    assert res.status == "failed" and "could not refit a clone" in res.message, res.message
    assert check(broken, "model_beats_baseline").status == "passed"


def test_mlflow_runs(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "mlflow_runs")
    assert res.status == "passed", res.message
    assert res.evidence["runs"] >= 4
    con = sqlite3.connect(broken / "mlflow.db")
    con.execute("update runs set lifecycle_stage = 'deleted' where run_uuid in "
                "(select run_uuid from runs limit 2)")
    con.commit()
    con.close()
    res = check(broken, "mlflow_runs")
    assert res.status == "failed" and "expected at least" in res.message
    assert "expected an active FINISHED run" in res.message
    (broken / "mlflow.db").unlink()
    assert "does not exist" in check(broken, "mlflow_runs").message


def test_mlflow_runs_metrics_must_be_those_of_results(broken: Path) -> None:
    results = json.loads((broken / "experiments/results.json").read_text())
    best = results["models"][results["best_model"]]
    edit_json(broken / "experiments/results.json",
              lambda d: d["models"][d["best_model"]].update(cv_mean=best["cv_mean"] + 0.01))
    res = check(broken, "mlflow_runs")
    assert res.status == "failed" and "logged no metric equal to the cv_mean" in res.message


def test_model_card_sections(telco_workspace: Path, broken: Path) -> None:
    assert check(telco_workspace, "model_card_sections").status == "passed"
    card = broken / "model_cards/model_card.md"
    text = card.read_text()
    card.write_text(text[:text.index("## Fairness")])
    res = check(broken, "model_card_sections")
    assert res.status == "failed" and "missing section 'Fairness'" in res.message
    card.write_text(text.replace("## Limitations\n", "## Limitations\n\nTBD.\n"))
    res = check(broken, "model_card_sections")
    assert res.status == "failed" and "'Limitations' is filler" in res.message


def test_model_card_claims(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "model_card_claims")
    assert res.status == "passed", res.message
    assert res.evidence["claims"] >= 10 and set(res.evidence["groups"]) == {"gender",
                                                                           "SeniorCitizen"}
    card = broken / "model_cards/model_card.md"
    text = card.read_text()
    card.write_text(text.replace("Secondary metrics", "Accuracy on the test split: 0.99. "
                                 "Secondary metrics", 1))
    res = check(broken, "model_card_claims")
    assert res.status == "failed" and "states 0.99" in res.message, res.message
    cut = text[:text.index("### By SeniorCitizen")]
    card.write_text(cut)
    res = check(broken, "model_card_claims")
    assert res.status == "failed" and "no per-group table for 'SeniorCitizen'" in res.message


def test_feature_importance(telco_workspace: Path, broken: Path) -> None:
    res = check(telco_workspace, "feature_importance")
    assert res.status == "passed", res.message
    assert res.evidence["concordance"] >= 0.8 and res.evidence["confident_pairs"] >= 10
    top = next(iter(res.evidence["gate_importance"]))

    def bury(d: dict) -> None:
        for f in d["features"]:
            if f["feature"] == top:
                f["importance"] = f["importance_mean"] = -1.0

    edit_json(broken / "interpretability/feature_importance.json", bury)
    res = check(broken, "feature_importance")
    assert res.status == "failed" and f"most important feature {top!r}" in res.message
    (broken / "interpretability/feature_importance.json").unlink()
    (broken / "interpretability/feature_importance.md").unlink()
    res = check(broken, "feature_importance")
    assert res.status == "failed" and "no machine-readable feature importance" in res.message


def test_model_tests_fail_on_a_sabotaged_copy(broken: Path) -> None:
    """The pytest check runs the agent's tests again on a copy with a dummy model: tests that
    pass whatever the model is fail the check."""
    from ml_workspace import check as gate_check

    res = gate_check(broken, "pytest", path="tests/test_models.py", sabotage=["dummy_model"])
    assert res.status == "passed", res.message
    assert "fails when the gate replaced every copy of artifacts/model.joblib" in res.message
    (broken / "tests/test_models.py").write_text("def test_ok():\n    assert True\n")
    res = gate_check(broken, "pytest", path="tests/test_models.py", sabotage=["dummy_model"])
    assert res.status == "failed" and "still passes (1 passed)" in res.message


def test_hanging_model_cannot_hang_the_gate(broken: Path) -> None:
    class Sleeper:
        def __reduce__(self) -> tuple:
            return (time.sleep, (60,))

    (broken / "artifacts/model.joblib").write_bytes(pickle.dumps(Sleeper()))
    started = time.monotonic()
    res = check(broken, "model_beats_baseline", score_timeout_s=3)
    assert time.monotonic() - started < 20
    assert res.status == "failed" and "wall-clock limit" in res.message


def test_gate_cli_reports_the_dummy_model(broken: Path) -> None:
    save_dummy_model(broken)
    res = mlpipe("gate", "phase3", "-w", str(broken))
    assert res.returncode == 1
    assert "Model does not beat the baseline" in res.stdout
    assert "the gate's baseline" in res.stdout
