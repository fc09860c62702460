"""The generated API's compiled predictor (templates/deployment/api/predictor.py): it reproduces
the saved pipeline exactly for the model families the built-in agent trains, on real data with
missing values and unseen categories, and falls back to the pipeline for anything else."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from datagen import data_file

TEMPLATES = Path(__file__).parent.parent / "src" / "mlpipe_flow" / "builtin" / "templates"


def _module(rel: str, name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, TEMPLATES / rel)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


predictor = _module("deployment/api/predictor.py", "generated_predictor")
features = _module("feature_engineering/features.py", "generated_features")


def telco() -> tuple[pd.DataFrame, pd.Series, list[str], set[str]]:
    df = pd.read_csv(data_file("telco_churn.csv")).sample(n=2000, random_state=1)
    y = df.pop("Churn")
    df = df.drop(columns=["customerID"])
    # as the ingestion leaves it in the splits: blank numeric text is missing
    df["TotalCharges"] = pd.to_numeric(df["TotalCharges"], errors="coerce")
    numeric = {"SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges"}
    return df, y, list(df.columns), numeric


def columns_of(frame: pd.DataFrame, features_: list[str], numeric: set[str]) -> dict:
    rows = json.loads(frame.to_json(orient="records"))  # what the API gets: str / float / None
    return {c: np.array([np.nan if r[c] is None else float(r[c]) if not isinstance(r[c], str)
                         else r[c] for r in rows], dtype=float if c in numeric else object)
            if c in numeric else np.array([r[c] for r in rows], dtype=object) for c in features_}


def schema(features_: list[str], numeric: set[str]) -> dict:
    return {"columns": [{"name": c, "type": "number" if c in numeric else "category"}
                        for c in features_]}


@pytest.mark.parametrize("estimator", [
    LogisticRegression(max_iter=500), HistGradientBoostingClassifier(max_iter=30),
    RandomForestClassifier(n_estimators=20, random_state=0)], ids=lambda e: type(e).__name__)
def test_compiled_reproduces_the_feature_engineering_pipeline(estimator) -> None:  # type: ignore[no-untyped-def]
    df, y, feats, numeric = telco()
    df.loc[df.index[:40], "PaymentMethod"] = None  # missing categories, imputed
    model = Pipeline([("preprocess", features.build_preprocessor(schema(feats, numeric), feats)),
                      ("model", estimator)]).fit(df.iloc[:1500], y.iloc[:1500])
    p = predictor.load(model, feats, numeric, proba=True)
    assert p.kind == "compiled", p.reason
    hold = df.iloc[1500:].copy()
    hold.loc[hold.index[:5], "Contract"] = "Ten-year"  # never seen in training
    hold.loc[hold.index[5:10], "MonthlyCharges"] = np.nan
    cols = columns_of(hold, feats, numeric)
    want = model.predict_proba(pd.DataFrame(cols))
    np.testing.assert_array_equal(p.output(cols), want)


def test_compiled_regression_with_sparse_one_hot() -> None:
    df = pd.read_csv(data_file("telco_churn.csv")).head(1500)
    df["TotalCharges"] = pd.to_numeric(df["TotalCharges"], errors="coerce")
    y = df.pop("MonthlyCharges")
    feats = ["tenure", "TotalCharges", "Contract", "InternetService", "gender"]
    numeric = {"tenure", "TotalCharges"}
    for est, sparse in ((Ridge(), 1.0), (HistGradientBoostingRegressor(max_iter=20), 0.0)):
        pre = ColumnTransformer([
            ("num", Pipeline([("i", SimpleImputer(strategy="mean")), ("s", StandardScaler())]),
             ["tenure", "TotalCharges"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["Contract", "InternetService",
                                                             "gender"]),
        ], sparse_threshold=sparse)
        model = Pipeline([("pre", pre), ("model", est)]).fit(df[feats], y)
        p = predictor.load(model, feats, numeric, proba=False)
        assert p.kind == "compiled", p.reason
        cols = columns_of(df[feats].tail(300), feats, numeric)
        np.testing.assert_allclose(p.output(cols), model.predict(pd.DataFrame(cols)), rtol=1e-12)


def test_what_it_cannot_reproduce_is_served_by_the_pipeline() -> None:
    df, y, feats, numeric = telco()
    num = sorted(numeric)
    odd = [
        ("an imputer with an indicator", ColumnTransformer([
            ("n", Pipeline([("c", FunctionTransformer(pd.DataFrame.apply, kw_args={
                "func": pd.to_numeric, "errors": "coerce"})),
                ("i", SimpleImputer(add_indicator=True))]), num)])),
        ("a passthrough remainder", ColumnTransformer([
            ("n", SimpleImputer(), ["tenure"])], remainder="passthrough")),
    ]
    for why, pre in odd:
        frame = df[num].apply(pd.to_numeric, errors="coerce").fillna(0)
        model = Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=300))]).fit(frame, y)
        p = predictor.load(model, num, set(num), proba=True)
        assert p.kind == "sklearn" and p.reason.startswith("not compiled"), (why, p.reason)
        cols = columns_of(frame.head(50), num, set(num))
        np.testing.assert_array_equal(p.output(cols), model.predict_proba(pd.DataFrame(cols)))


def test_a_compiled_function_that_disagrees_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    df, y, feats, numeric = telco()
    model = Pipeline([("preprocess", features.build_preprocessor(schema(feats, numeric), feats)),
                      ("model", LogisticRegression(max_iter=300))]).fit(df, y)
    real = predictor.compile_pipeline

    def off_by_a_little(model_, proba):  # type: ignore[no-untyped-def]
        f = real(model_, proba)
        return lambda cols: f(cols) * (1 + 1e-9)

    monkeypatch.setattr(predictor, "compile_pipeline", off_by_a_little)
    p = predictor.load(model, feats, numeric, proba=True)
    assert p.kind == "sklearn" and "disagreed" in p.reason
