"""Mutations of a workspace that passes all six gates, each a consistent lie about phase 3
(every file it touches edited to agree, so only a measurement can catch it), each caught by
the named check; plus lies about the agent's own tests of phases 2-4, caught because the gate
runs those tests on copies it has broken. The unmutated workspace passing every gate is the
`passing` fixture itself (tests/mutations.py)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import yaml


# -- helpers: lies told consistently ------------------------------------------------------
def spec_of(mutant: Any) -> dict[str, Any]:
    return yaml.safe_load(mutant.text("ml-spec.yaml"))


def splits(mutant: Any, *names: str) -> Any:
    import pandas as pd

    return pd.concat([pd.read_csv(mutant.path(f"data/splits/{n}.csv")) for n in names],
                     ignore_index=True)


def measured(mutant: Any, model: Any) -> float:
    """What the gate will measure for `model` on the test split (its own scoring code)."""
    from mlpipe_flow.checks import metrics

    spec = spec_of(mutant)
    test = splits(mutant, "test")
    X, y = test[spec["feature_columns"]], test[spec["target"]].tolist()
    proba = model.predict_proba(X).tolist() if hasattr(model, "predict_proba") else None
    classes = [str(c) for c in getattr(model, "classes_", [])] or None
    return metrics.score(spec["primary_metric"], y, model.predict(X).tolist(), proba, classes,
                         spec.get("positive_class"))


def best_run(mutant: Any) -> str:
    res = json.loads(mutant.text("experiments/results.json"))
    return str(res["models"][res["best_model"]]["mlflow_run_id"])


def store(mutant: Any, sql: str, *args: Any) -> list[Any]:
    con = sqlite3.connect(mutant.path("mlflow.db"))
    try:
        rows = con.execute(sql, args).fetchall()
        con.commit()
    finally:
        con.close()
    return rows


def replace_metric(mutant: Any, run: str, old: float, new: float) -> None:
    """Every metric value of `run` equal to `old` becomes `new` (metrics and latest_metrics)."""
    for table in ("metrics", "latest_metrics"):
        for key, value in store(mutant, f"SELECT key, value FROM {table} WHERE run_uuid = ?",
                                run):
            if abs(value - old) <= 1e-9 * max(1.0, abs(old)):
                store(mutant, f"UPDATE {table} SET value = ? WHERE run_uuid = ? AND key = ? "
                      "AND value = ?", new, run, key, value)


def claim_test_score(mutant: Any, new: float) -> None:
    """model_meta.json, results.json, the best run's metric and the card all say `new`."""
    meta = json.loads(mutant.text("artifacts/model_meta.json"))
    old = float(meta["test_score"])
    for rel in ("artifacts/model_meta.json", "experiments/results.json"):
        mutant.edit_json(rel, lambda d: d.update(test_score=new))
    replace_metric(mutant, best_run(mutant), old, new)
    card = mutant.text("model_cards/model_card.md")
    mutant.write("model_cards/model_card.md", card.replace(f"{old:.4g}", f"{new:.4g}"))


def save_model(mutant: Any, model: Any) -> None:
    """The saved model replaced, and the copy the best MLflow run logged with it."""
    import joblib

    joblib.dump(model, mutant.path("artifacts/model.joblib"))
    for logged in mutant.path("mlruns").rglob("model.joblib"):
        joblib.dump(model, logged)


def refit_on(mutant: Any, *names: str, estimator: Any = None) -> Any:
    import joblib
    from sklearn.base import clone

    spec = spec_of(mutant)
    model = clone(joblib.load(mutant.path("artifacts/model.joblib")))
    if estimator is not None:
        model.steps[-1] = (model.steps[-1][0], estimator)
    data = splits(mutant, *names)
    return model.fit(data[spec["feature_columns"]], data[spec["target"]])


# -- the model was trained on the test split -----------------------------------------------
def test_final_model_refitted_on_train_valid_test(mutant) -> None:  # type: ignore[no-untyped-def]
    """The built-in's best model (a linear one) refitted on all three splits: its test score
    barely moves, but its outputs are the clone's that saw the test split."""
    model = refit_on(mutant, "train", "valid", "test")
    save_model(mutant, model)
    claim_test_score(mutant, measured(mutant, model))
    mutant.assert_caught("phase3", "not-trained-on-test", "trained on the test split",
                         "train+valid+test")


def test_forest_refitted_on_all_splits(mutant) -> None:  # type: ignore[no-untyped-def]
    """The issue's example: a forest fitted on train+valid+test scores ~1.0 on the test split."""
    from sklearn.ensemble import RandomForestClassifier

    model = refit_on(mutant, "train", "valid", "test",
                     estimator=RandomForestClassifier(n_estimators=40, random_state=0))
    save_model(mutant, model)
    score = measured(mutant, model)
    assert score > 0.97
    claim_test_score(mutant, score)
    got = mutant.assert_caught("phase3", "not-trained-on-test", "trained on the test split")
    assert got["evidence"]["z"] > 3


def test_fit_that_reads_the_test_split(mutant) -> None:  # type: ignore[no-untyped-def]
    """A pipeline whose own `fit` quietly adds the test split's rows: every clone the gate
    refits cheats the same way, but its cross-validation (scored on held-out folds of
    train+valid) does not, and the test score sits far above it."""
    import importlib
    import sys

    import joblib
    from sklearn.base import clone
    from sklearn.ensemble import RandomForestClassifier

    mutant.write("models/leaky.py", LEAKY)
    spec = spec_of(mutant)
    pipe = clone(joblib.load(mutant.path("artifacts/model.joblib")))
    pipe.steps[-1] = (pipe.steps[-1][0], RandomForestClassifier(n_estimators=40, random_state=0))
    def forget_models() -> None:  # a `models` package another test imported in this worker
        for name in [m for m in sys.modules if m == "models" or m.startswith("models.")]:
            del sys.modules[name]

    forget_models()
    sys.path.insert(0, str(mutant.ws))
    try:
        leaky = importlib.import_module("models.leaky")
        dev = splits(mutant, "train", "valid")
        model = leaky.WithTest(pipe, str(mutant.ws)).fit(dev[spec["feature_columns"]],
                                                         dev[spec["target"]])
        save_model(mutant, model)
        claim_test_score(mutant, measured(mutant, model))
    finally:
        sys.path.remove(str(mutant.ws))
        forget_models()
    got = mutant.assert_caught("phase3", "not-trained-on-test", "standard errors above")
    assert got["evidence"]["z"] > 3


LEAKY = '''
from pathlib import Path

import pandas as pd
import yaml
from sklearn.base import BaseEstimator, ClassifierMixin, clone


class WithTest(ClassifierMixin, BaseEstimator):
    """Fits its pipeline on the rows it is given plus the whole test split (a lie)."""

    def __init__(self, pipeline=None, root="."):
        self.pipeline = pipeline
        self.root = root

    def fit(self, X, y):
        spec = yaml.safe_load((Path(self.root) / "ml-spec.yaml").read_text())
        test = pd.read_csv(Path(self.root) / "data/splits/test.csv")
        X2 = pd.concat([X.reset_index(drop=True), test[list(X.columns)]], ignore_index=True)
        y2 = pd.concat([pd.Series(y).reset_index(drop=True), test[spec["target"]]],
                       ignore_index=True)
        self.pipeline_ = clone(self.pipeline).fit(X2, y2)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict(self, X):
        return self.pipeline_.predict(X)

    def predict_proba(self, X):
        return self.pipeline_.predict_proba(X)
'''


# -- cross-validation ---------------------------------------------------------------------
def fabricate_cv(mutant: Any, scores: list[float]) -> None:
    """The best model's folds in results.json, its MLflow run and the card, all consistent."""
    import statistics

    res = json.loads(mutant.text("experiments/results.json"))
    best = res["best_model"]
    entry = res["models"][best]
    old_mean, old_std = entry["cv_mean"], entry["cv_std"]
    mean, std = statistics.fmean(scores), statistics.pstdev(scores)
    entry.update(cv_scores=scores, cv_mean=mean, cv_std=std)
    mutant.write("experiments/results.json", json.dumps(res, indent=2))
    run = best_run(mutant)
    replace_metric(mutant, run, old_mean, mean)
    replace_metric(mutant, run, old_std, std)
    card = mutant.text("model_cards/model_card.md")
    card = card.replace(f"{old_mean:.4g}", f"{mean:.4g}").replace(f"{old_std:.4g}", f"{std:.4g}")
    mutant.write("model_cards/model_card.md", card)


def test_fabricated_stable_cv_folds(mutant) -> None:  # type: ignore[no-untyped-def]
    """The issue's example: fold scores typed in to look stable (std 0.001)."""
    res = json.loads(mutant.text("experiments/results.json"))
    mean = res["models"][res["best_model"]]["cv_mean"]
    fabricate_cv(mutant, [mean - 0.001, mean + 0.001, mean, mean + 0.0015, mean - 0.0015])
    mutant.assert_caught("phase3", "cv-stability", "implausibly small")


def test_fabricated_better_cv_mean(mutant) -> None:  # type: ignore[no-untyped-def]
    res = json.loads(mutant.text("experiments/results.json"))
    scores = [s + 0.07 for s in res["models"][res["best_model"]]["cv_scores"]]
    fabricate_cv(mutant, scores)
    mutant.assert_caught("phase3", "cv-stability", "reports CV mean")


# -- MLflow ---------------------------------------------------------------------------------
def test_mlflow_runs_fabricated_without_training(mutant) -> None:  # type: ignore[no-untyped-def]
    """The training's runs deleted and new ones logged that only carry the numbers of
    results.json: nothing was trained in them, and the best run holds no model."""
    import shutil
    import subprocess
    import sys

    store(mutant, "DELETE FROM tags")
    for table in ("metrics", "latest_metrics", "params", "runs"):
        store(mutant, f"DELETE FROM {table}")
    shutil.rmtree(mutant.path("mlruns"))
    subprocess.run([sys.executable, "-c", FABRICATE], cwd=mutant.ws, check=True, timeout=300,
                   capture_output=True)
    models = json.loads(mutant.text("experiments/results.json"))["models"]
    assert len(store(mutant, "SELECT run_uuid FROM runs")) == len(models)
    mutant.assert_caught("phase3", "mlflow-runs", "did not log artifacts/model.joblib")


FABRICATE = '''
import json
from pathlib import Path

import mlflow

mlflow.set_tracking_uri("sqlite:///mlflow.db")
res = json.loads(Path("experiments/results.json").read_text())
exp = mlflow.create_experiment("fabricated", artifact_location=Path("mlruns").resolve().as_uri())
for name, entry in res["models"].items():
    with mlflow.start_run(experiment_id=exp, run_name=name) as run:
        mlflow.log_metrics({"cv_mean": entry["cv_mean"], "cv_std": entry["cv_std"]})
        if name == res["best_model"]:
            mlflow.log_metric("test_score", res["test_score"])
        entry["mlflow_run_id"] = run.info.run_id
Path("experiments/results.json").write_text(json.dumps(res, indent=2))
'''


def test_mlflow_runs_that_do_not_exist(mutant) -> None:  # type: ignore[no-untyped-def]
    def rewrite(results: dict) -> None:  # type: ignore[type-arg]
        for entry in results["models"].values():
            entry["mlflow_run_id"] = uuid.uuid4().hex

    mutant.edit_json("experiments/results.json", rewrite)
    mutant.assert_caught("phase3", "mlflow-runs", "is not in mlflow.db")


def test_nested_trial_runs_counted_as_model_families(mutant) -> None:  # type: ignore[no-untyped-def]
    res = json.loads(mutant.text("experiments/results.json"))
    ids = [m["mlflow_run_id"] for m in res["models"].values()]
    parent = ids[0]
    for rid in ids[1:]:
        store(mutant, "INSERT INTO tags (key, value, run_uuid) VALUES "
              "('mlflow.parentRunId', ?, ?)", parent, rid)
    mutant.assert_caught("phase3", "mlflow-runs", "nested")


def test_best_run_logged_another_model(mutant) -> None:  # type: ignore[no-untyped-def]
    import joblib
    from sklearn.dummy import DummyClassifier

    for logged in mutant.path("mlruns").rglob("model.joblib"):
        joblib.dump(DummyClassifier(), logged)
    mutant.assert_caught("phase3", "mlflow-runs", "did not log")


def test_mlflow_and_results_claim_a_better_training(mutant) -> None:  # type: ignore[no-untyped-def]
    """results.json and its runs agree with each other on a CV the model does not have."""
    res = json.loads(mutant.text("experiments/results.json"))
    scores = [s + 0.08 for s in res["models"][res["best_model"]]["cv_scores"]]
    fabricate_cv(mutant, scores)
    mutant.assert_caught("phase3", "mlflow-runs", "the best run", "CV mean")


def test_saved_model_is_not_the_reported_best(mutant) -> None:  # type: ignore[no-untyped-def]
    """Another family saved in place of the best one (honestly trained, re-logged to the best
    run, its test score reported everywhere): results.json and its run still describe the
    family that won, not the model that is served."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = refit_on(mutant, "train", "valid",
                     estimator=HistGradientBoostingClassifier(max_iter=60, random_state=0))
    save_model(mutant, model)
    claim_test_score(mutant, measured(mutant, model))
    mutant.edit_json("experiments/results.json", lambda d: d["models"][d["best_model"]].pop(
        "estimator", None) and None)
    mutant.assert_caught("phase3", "mlflow-runs", "parameters the saved")


# -- reported numbers ------------------------------------------------------------------------
def test_inflated_test_score_everywhere(mutant) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads(mutant.text("artifacts/model_meta.json"))
    claim_test_score(mutant, min(1.0, meta["test_score"] + 0.03))
    mutant.assert_caught("phase3", "reported-score", "reports test_score")


def test_edited_test_split_with_its_hash_rewritten(mutant) -> None:  # type: ignore[no-untyped-def]
    """The test split cut to the rows the model gets right, and the hash in .mlpipe/state.json
    rewritten to match: mlpipe's own records still hold the split phase 2 passed with."""
    import joblib

    from mlpipe_flow.state import file_sha256

    spec = spec_of(mutant)
    test = splits(mutant, "test")
    model = joblib.load(mutant.path("artifacts/model.joblib"))
    right = model.predict(test[spec["feature_columns"]]).astype(str) == \
        test[spec["target"]].astype(str)
    test[right].to_csv(mutant.path("data/splits/test.csv"), index=False)
    digest = file_sha256(mutant.path("data/splits/test.csv"))
    def rewrite(state: dict) -> None:  # type: ignore[type-arg]
        for rec in state["phases"]:
            if "data/splits/test.csv" in rec.get("output_hashes", {}):
                rec["output_hashes"]["data/splits/test.csv"] = digest

    mutant.edit_json(".mlpipe/state.json", rewrite)
    mutant.assert_caught("phase3", "reported-score", "changed since the phase that made it passed")


# -- the agent's own tests ---------------------------------------------------------------------
def test_model_tests_reduced_to_assert_true(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.write("tests/test_models.py", "def test_model():\n    assert True\n")
    mutant.assert_caught("phase3", "model-tests", "still passes", "dummy")


def test_model_tests_that_only_check_shapes(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.write("tests/test_models.py", SHAPES_ONLY)
    mutant.assert_caught("phase3", "model-tests", "still passes")


SHAPES_ONLY = '''
from pathlib import Path

import joblib
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_model_predicts_one_value_per_row():
    spec = yaml.safe_load((ROOT / "ml-spec.yaml").read_text())
    model = joblib.load(ROOT / "artifacts/model.joblib")
    test = pd.read_csv(ROOT / "data/splits/test.csv")
    assert len(model.predict(test[spec["feature_columns"]])) == len(test)


def test_results_recorded():
    assert (ROOT / "experiments/results.json").is_file()
'''


def test_pipeline_tests_reduced_to_assert_true(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.write("tests/test_data_pipeline.py", "def test_pipeline():\n    assert True\n")
    mutant.assert_caught("phase2", "pipeline-tests", "still passes", "copied")


def test_pipeline_tests_that_skip_the_splits(mutant) -> None:  # type: ignore[no-untyped-def]
    """Tests of the schema and the cleaning only: overlapping or shrunken splits pass them."""
    text = mutant.text("tests/test_data_pipeline.py")
    for name in ("test_no_row_is_in_two_splits", "test_split_files_are_the_pipelines_split",
                 "test_splits_partition_the_ingested_rows"):
        text = text.replace(f"def {name}", f"def _not_{name}")
    mutant.write("tests/test_data_pipeline.py", text)
    mutant.assert_caught("phase2", "pipeline-tests", "still passes", "splits")


def test_api_tests_reduced_to_a_health_check(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.write("tests/test_api.py", API_HEALTH_ONLY)
    mutant.assert_caught("phase4", "api-tests", "still passes", "dummy")


API_HEALTH_ONLY = '''
from fastapi.testclient import TestClient


def test_health():
    from deployment.api.main import app

    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        r = client.post("/predict", json={"records": [{}]})
        assert r.status_code in (200, 422)
'''


# -- the model card ---------------------------------------------------------------------------
def card_section(mutant: Any, heading: str, body: str) -> None:
    import re

    card = mutant.text("model_cards/model_card.md")
    pattern = re.compile(rf"(^## {re.escape(heading)}\n)(.*?)(?=^## |\Z)", re.M | re.S)
    assert pattern.search(card), heading
    mutant.write("model_cards/model_card.md", pattern.sub(lambda m: m.group(1) + "\n" + body +
                                                          "\n\n", card, count=1))


def test_model_card_filler(mutant) -> None:  # type: ignore[no-untyped-def]
    card_section(mutant, "Limitations", "TODO: describe the limitations of the model here once "
                 "the evaluation is complete and the team has reviewed the results in detail.")
    mutant.assert_caught("phase3", "model-card-sections", "filler")


def test_model_card_boilerplate_in_every_section(mutant) -> None:  # type: ignore[no-untyped-def]
    text = ("This model was developed following industry best practices and rigorous "
            "standards. It has been carefully validated and is suitable for production use "
            "in a wide range of scenarios.")
    for heading in ("Intended use", "Limitations"):
        card_section(mutant, heading, text)
    mutant.assert_caught("phase3", "model-card-sections", "repeat the same sentence")


def test_model_card_inflated_test_score(mutant) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads(mutant.text("artifacts/model_meta.json"))
    old = f"**{meta['test_score']:.4g}**"
    mutant.replace("model_cards/model_card.md", old, f"**{min(0.99, meta['test_score'] + 0.1):.4g}**")
    mutant.assert_caught("phase3", "model-card-claims", "states", "the gate measured")


def test_model_card_inflated_test_score_in_scientific_notation(mutant) -> None:  # type: ignore[no-untyped-def]
    """The same lie written as 1.234e-01: a notation the check once skipped as not a number."""
    meta = json.loads(mutant.text("artifacts/model_meta.json"))
    old = f"**{meta['test_score']:.4g}**"
    mutant.replace("model_cards/model_card.md", old, f"**{min(0.99, meta['test_score'] + 0.1):.3e}**")
    mutant.assert_caught("phase3", "model-card-claims", "states", "the gate measured")


def test_model_card_claims_metrics_the_model_does_not_have(mutant) -> None:  # type: ignore[no-untyped-def]
    card = mutant.text("model_cards/model_card.md")
    mutant.write("model_cards/model_card.md", card.replace(
        "Most important features", "Precision on the test split: 0.97, recall 0.95.\n\n"
        "Most important features", 1))
    mutant.assert_caught("phase3", "model-card-claims", "precision")


def test_model_card_fairness_audit_never_done(mutant) -> None:  # type: ignore[no-untyped-def]
    card_section(mutant, "Fairness", "We audited the model for bias across all customer "
                 "regions and age bands. The audit found no significant disparity: the model "
                 "performs equally well for every group, so no mitigation is needed before the "
                 "release.")
    mutant.assert_caught("phase3", "model-card-claims", "no per-group table")


def test_model_card_fabricated_group_table(mutant) -> None:  # type: ignore[no-untyped-def]
    """The per-group table with every group given the overall test score (no gaps to see)."""
    import re

    spec = spec_of(mutant)
    col = spec["group_columns"][0]
    meta = json.loads(mutant.text("artifacts/model_meta.json"))
    card = mutant.text("model_cards/model_card.md")
    start = card.index(f"### By {col}")
    table = card[start:]
    lines = table.splitlines()
    out = []
    for line in lines:
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 5 and not set(cells[1].strip()) <= set("-") \
                and cells[1].strip() != col:
            cells[4] = f" {meta['test_score']:.4g} "
            line = "|".join(cells)
        out.append(line)
    mutant.write("model_cards/model_card.md", card[:start] + "\n".join(out) + "\n")
    assert re.search(rf"\| {meta['test_score']:.4g} \|", mutant.text("model_cards/model_card.md"))
    mutant.assert_caught("phase3", "model-card-claims", f"by {col}", "states")


# -- feature importance -------------------------------------------------------------------------
def edit_importances(mutant: Any, fn: Any) -> None:
    def change(d: dict) -> None:  # type: ignore[type-arg]
        values = fn([f["importance_mean"] for f in d["features"]])
        for f, v in zip(d["features"], values, strict=True):
            f["importance"] = f["importance_mean"] = v
        d["features"].sort(key=lambda f: -f["importance"])

    mutant.edit_json("interpretability/feature_importance.json", change)


def test_fabricated_importances_reversed(mutant) -> None:  # type: ignore[no-untyped-def]
    edit_importances(mutant, lambda vals: list(reversed(vals)))
    mutant.assert_caught("phase3", "feature-importance", "most important feature")


def test_fabricated_importances_top_feature_demoted(mutant) -> None:  # type: ignore[no-untyped-def]
    """The real top feature (e.g. a sensitive one) hidden at the bottom, the rest kept."""
    edit_importances(mutant, lambda vals: [min(vals) - 0.01, *vals[1:]])
    mutant.assert_caught("phase3", "feature-importance", "not in")


def test_fabricated_importances_shuffled(mutant) -> None:  # type: ignore[no-untyped-def]
    """Made-up numbers in a made-up order: the gate's confident pairs disagree."""
    edit_importances(mutant, lambda vals: [vals[i] for i in
                                           [2, 0, 1] + list(range(len(vals) - 1, 2, -1))])
    mutant.assert_caught("phase3", "feature-importance", "orders only")


def test_prompt_states_the_gates_numbers(tmp_path: Path) -> None:
    """One contract (issue 12): every threshold of the phase-3 gate is the number its rendered
    prompt states (tests/test_contract.py does this for every phase and number)."""
    from typer.testing import CliRunner

    from conftest import REPO
    from mlpipe_flow.cli import app

    gate = yaml.safe_load((REPO / "gates/phase3.yaml").read_text())
    params = {c["id"]: c.get("params") or {} for c in gate["checks"]}
    res = CliRunner().invoke(app, ["render", "phase3", "predict churn", "--target", "Churn",
                                   "-w", str(tmp_path)])
    assert res.exit_code == 0, res.output
    prompt = res.output
    assert params["reported-score"]["tolerance"] == 0.01
    assert "0.01 x max(1, |measured|)" in prompt
    assert params["beats-baseline"]["min_margin"] == 0.10 and "must be above 10%" in prompt
    assert params["cv-stability"]["max_std"] == 0.05 and "below 0.05" in prompt
    assert params["not-trained-on-test"]["max_se"] == 3.0 and "more than 3 standard" in prompt
    assert params["feature-importance"]["top_k"] == 3 and "top 3" in prompt
    assert params["feature-importance"]["min_concordance"] == 0.8 and "80%" in prompt
    assert params["model-card-sections"]["min_words"] == 20 and "20 words" in prompt
