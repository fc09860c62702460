"""The generated API's predictor (templates/deployment/api/predictor.py): ONNX Runtime reproduces
the saved pipeline for the model families the built-in agent trains, on real data with missing
values, unseen categories and empty text, and anything it cannot reproduce is served by the
pipeline itself, saying why."""

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

pytest.importorskip("onnxruntime", reason="the [ml] extra's onnxruntime is not installed")
pytest.importorskip("skl2onnx", reason="the [ml] extra's skl2onnx is not installed")

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
    """What the API builds from a request: float64 with NaN, or text with None."""
    rows = json.loads(frame.to_json(orient="records"))
    return {c: np.array([np.nan if r[c] is None else float(r[c]) for r in rows], dtype=float)
            if c in numeric else np.array([r[c] for r in rows], dtype=object) for c in features_}


def schema(features_: list[str], numeric: set[str]) -> dict:
    return {"columns": [{"name": c, "type": "number" if c in numeric else "category"}
                        for c in features_]}


def hold_out(df: pd.DataFrame) -> pd.DataFrame:
    hold = df.iloc[1500:].copy()
    hold.loc[hold.index[:5], "Contract"] = "Ten-year"  # never seen in training
    hold.loc[hold.index[5:10], "MonthlyCharges"] = np.nan
    hold.loc[hold.index[10:15], "PaymentMethod"] = None
    hold.loc[hold.index[15:20], "InternetService"] = ""  # empty text is a value, not missing
    return hold


@pytest.mark.parametrize(("estimator", "kinds"), [
    (LogisticRegression(max_iter=500), {"onnx"}),
    (HistGradientBoostingClassifier(max_iter=30), {"onnx", "onnx+sklearn"}),
    (RandomForestClassifier(n_estimators=20, random_state=0), {"onnx", "onnx+sklearn"}),
], ids=lambda e: type(e).__name__ if not isinstance(e, set) else "")
def test_onnx_reproduces_the_feature_engineering_pipeline(estimator, kinds) -> None:  # type: ignore[no-untyped-def]
    df, y, feats, numeric = telco()
    df.loc[df.index[:40], "PaymentMethod"] = None  # missing categories, imputed
    model = Pipeline([("preprocess", features.build_preprocessor(schema(feats, numeric), feats)),
                      ("model", estimator)]).fit(df.iloc[:1500], y.iloc[:1500])
    p = predictor.load(model, feats, numeric, proba=True)
    assert p.kind in kinds, p.reason
    cols = columns_of(hold_out(df), feats, numeric)
    want = model.predict_proba(pd.DataFrame(cols))
    np.testing.assert_allclose(p.output(cols), want, rtol=0, atol=1e-9)


def test_onnx_regression_with_sparse_one_hot() -> None:
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
        assert p.kind in ("onnx", "onnx+sklearn"), p.reason
        cols = columns_of(df[feats].tail(300), feats, numeric)
        np.testing.assert_allclose(p.output(cols), model.predict(pd.DataFrame(cols)), rtol=1e-9)


def test_column_names_onnx_cannot_spell() -> None:
    """skl2onnx renames inputs with spaces and brackets; the feed follows its names."""
    df, y, feats, numeric = telco()
    renamed = {c: f"{c} (raw, %)" for c in feats}
    df = df.rename(columns=renamed)
    feats, numeric = [renamed[c] for c in feats], {renamed[c] for c in numeric}
    model = Pipeline([("preprocess", features.build_preprocessor(schema(feats, numeric), feats)),
                      ("model", LogisticRegression(max_iter=300))]).fit(df, y)
    p = predictor.load(model, feats, numeric, proba=True)
    assert p.kind == "onnx", p.reason
    cols = columns_of(df.head(200), feats, numeric)
    np.testing.assert_allclose(p.output(cols), model.predict_proba(pd.DataFrame(cols)), atol=1e-9)


def test_what_onnx_cannot_reproduce_is_served_by_the_pipeline() -> None:
    """A FunctionTransformer that changes its input (here log1p) has no ONNX converter."""
    df, y, feats, numeric = telco()
    num = sorted(numeric)
    pre = ColumnTransformer([("n", Pipeline([("log", FunctionTransformer(np.log1p)),
                                             ("i", SimpleImputer())]), num)])
    frame = df[num].clip(lower=0)
    model = Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=300))]).fit(frame, y)
    p = predictor.load(model, num, set(num), proba=True)
    assert p.kind == "sklearn" and p.reason.startswith("not converted"), p.reason
    cols = columns_of(frame.head(50), num, set(num))
    np.testing.assert_array_equal(p.output(cols), model.predict_proba(pd.DataFrame(cols)))


def test_a_converted_predictor_that_disagrees_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    df, y, feats, numeric = telco()
    model = Pipeline([("preprocess", features.build_preprocessor(schema(feats, numeric), feats)),
                      ("model", LogisticRegression(max_iter=300))]).fit(df, y)

    def off_by_a_little(build):  # type: ignore[no-untyped-def]
        def wrapped(*args):  # type: ignore[no-untyped-def]
            f = build(*args)
            return lambda cols: f(cols) + 1e-5
        return wrapped

    monkeypatch.setattr(predictor, "onnx_predictor", off_by_a_little(predictor.onnx_predictor))
    monkeypatch.setattr(predictor, "onnx_preprocessing",
                        off_by_a_little(predictor.onnx_preprocessing))
    p = predictor.load(model, feats, numeric, proba=True)
    assert p.kind == "sklearn" and "differs from the pipeline by 1e-05" in p.reason, p.reason


def test_without_onnxruntime_the_pipeline_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    df, y, feats, numeric = telco()
    model = Pipeline([("preprocess", features.build_preprocessor(schema(feats, numeric), feats)),
                      ("model", LogisticRegression(max_iter=300))]).fit(df, y)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    p = predictor.load(model, feats, numeric, proba=True)
    assert p.kind == "sklearn" and "onnxruntime is not installed" in p.reason, p.reason
