"""Tests of the trained model, measured on the held-out test split: it loads and predicts from
the raw feature columns, reproduces the score recorded for it, beats a dummy baseline fitted
here, and matches its per-group results. A wrong model in artifacts/model.joblib fails them."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pandas as pd
import pytest
import yaml
from models.evaluate import by_group
from models.metrics import higher_is_better, score
from sklearn.dummy import DummyClassifier, DummyRegressor

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load((ROOT / "ml-spec.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model():
    return joblib.load(ROOT / "artifacts/model.joblib")


@pytest.fixture(scope="module")
def test_split() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data/splits/test.csv", low_memory=False)


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((ROOT / "experiments/results.json").read_text())


def measured(model, spec: dict, frame: pd.DataFrame) -> float:
    return score(spec["primary_metric"], model, frame[spec["feature_columns"]],
                 frame[spec["target"]], spec.get("positive_class"))


def test_model_predicts_from_raw_feature_columns(model, spec: dict, test_split) -> None:
    pred = model.predict(test_split[spec["feature_columns"]].head(20))
    assert len(pred) == 20
    if spec["problem_type"] != "regression":
        proba = model.predict_proba(test_split[spec["feature_columns"]].head(20))
        assert abs(proba.sum(axis=1) - 1).max() < 1e-6


def test_recorded_test_score_is_reproducible(model, spec: dict, test_split, results) -> None:
    meta = json.loads((ROOT / "artifacts/model_meta.json").read_text())
    got = measured(model, spec, test_split)
    assert got == pytest.approx(meta["test_score"], rel=1e-6, abs=1e-9)
    assert got == pytest.approx(results["test_score"], rel=1e-6, abs=1e-9)


def test_model_beats_a_dummy_baseline_on_the_test_split(model, spec: dict, test_split) -> None:
    train = pd.read_csv(ROOT / "data/splits/train.csv", low_memory=False)
    features, target = spec["feature_columns"], spec["target"]
    dummy = (DummyRegressor(strategy="mean") if spec["problem_type"] == "regression"
             else DummyClassifier(strategy="prior")).fit(train[features], train[target])
    mine, base = measured(model, spec, test_split), measured(dummy, spec, test_split)
    assert (mine > base) if higher_is_better(spec["primary_metric"]) else (mine < base)


def test_group_results_are_the_models(model, spec: dict, test_split, results) -> None:
    recorded = results.get("group_metrics") or {}
    assert set(recorded) == set(spec.get("group_columns") or [])
    for col, rows in by_group(model, test_split, spec).items():
        assert [r["group"] for r in rows] == [r["group"] for r in recorded[col]]
        for got, want in zip(rows, recorded[col], strict=True):
            for name, value in want["metrics"].items():
                assert got["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), (col, name)


def test_every_model_was_cross_validated(results) -> None:
    assert len(results["models"]) >= 4
    for name, r in results["models"].items():
        assert len(r["cv_scores"]) == results["cv_folds"], name
        assert r["mlflow_run_id"], name


def test_model_tolerates_a_missing_value(model, spec: dict, test_split) -> None:
    row = test_split[spec["feature_columns"]].head(1).copy().astype(object)
    row.iloc[0, 0] = None
    assert len(model.predict(row)) == 1
