"""Tests of the trained model: it loads, predicts from raw feature columns, matches its
recorded score and beats the baseline."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pandas as pd
import pytest
import yaml
from models.metrics import higher_is_better, score

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


def test_model_predicts_from_raw_feature_columns(model, spec: dict, test_split) -> None:
    pred = model.predict(test_split[spec["feature_columns"]].head(20))
    assert len(pred) == 20
    if spec["problem_type"] != "regression":
        proba = model.predict_proba(test_split[spec["feature_columns"]].head(20))
        assert abs(proba.sum(axis=1) - 1).max() < 1e-6


def test_recorded_test_score_is_reproducible(model, spec: dict, test_split) -> None:
    meta = json.loads((ROOT / "artifacts/model_meta.json").read_text())
    measured = score(spec["primary_metric"], model, test_split[spec["feature_columns"]],
                     test_split[spec["target"]], spec.get("positive_class"))
    assert measured == pytest.approx(meta["test_score"], rel=1e-6, abs=1e-9)


def test_model_beats_the_baseline() -> None:
    results = json.loads((ROOT / "experiments/results.json").read_text())
    better = higher_is_better(results["primary_metric"])
    model, base = results["test_score"], results["baseline_test_score"]
    assert (model > base) if better else (model < base)


def test_every_model_was_cross_validated() -> None:
    results = json.loads((ROOT / "experiments/results.json").read_text())
    assert len(results["models"]) >= 4
    for name, r in results["models"].items():
        assert len(r["cv_scores"]) == results["cv_folds"], name


def test_model_tolerates_a_missing_value(model, spec: dict, test_split) -> None:
    row = test_split[spec["feature_columns"]].head(1).copy().astype(object)
    row.iloc[0, 0] = None
    assert len(model.predict(row)) == 1
