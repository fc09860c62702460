"""API tests for deployment/api/main.py, with FastAPI's TestClient (no network)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import joblib
import pandas as pd
import pytest
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
META = json.loads((ROOT / "artifacts" / "model_meta.json").read_text())
FEATURES = META["feature_columns"]


@pytest.fixture(scope="module")
def client():
    from deployment.api.main import app

    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def test_rows() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data" / "splits" / "test.csv").head(20)[FEATURES]


def records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def test_health_reports_model_version(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["model_version"] == str(META["version"])


def test_predict_matches_the_saved_model(client, test_rows):
    from deployment.api.main import MODEL_DIR

    model = joblib.load(MODEL_DIR / "model.joblib")
    r = client.post("/predict", json={"records": records(test_rows)})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    expected = model.predict(test_rows).tolist()
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        if isinstance(b, float):
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
        else:
            assert str(a) == str(b)


def test_predict_single_record_and_confidence(client, test_rows):
    r = client.post("/predict", json={"records": records(test_rows.head(1))})
    assert r.status_code == 200
    body = r.json()
    assert len(body["predictions"]) == 1
    if META["problem_type"] != "regression":
        assert 0.0 <= body["confidence"][0] <= 1.0


@pytest.mark.parametrize("payload", [{}, {"records": []}, {"records": [{}]},
                                     {"records": "nope"}])
def test_bad_requests_get_422(client, payload):
    assert client.post("/predict", json=payload).status_code == 422


def test_malformed_json_gets_422_and_the_api_stays_up(client):
    r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert client.get("/health").status_code == 200


def test_metrics_exposed(client, test_rows):
    client.post("/predict", json={"records": records(test_rows.head(2))})
    text = client.get("/metrics").text
    for name in ("mlpipe_requests_total", "mlpipe_request_latency_seconds_bucket",
                 "mlpipe_model_version_info"):
        assert name in text
    if META["problem_type"] != "regression":
        assert "mlpipe_prediction_confidence_bucket" in text


def test_predictor_reproduces_the_pipeline_on_the_test_split(client):
    """Whichever predictor serves (compiled to numpy or the pipeline itself), its output on the
    whole test split equals the saved pipeline's own predict_proba / predict."""
    import numpy as np
    from deployment.api import main

    frame = pd.read_csv(ROOT / "data" / "splits" / "test.csv")[FEATURES]
    columns = main.to_columns(records(frame))
    method = main.MODEL.predict_proba if main.IS_CLASSIFIER else main.MODEL.predict
    want = np.asarray(method(pd.DataFrame(columns)))
    np.testing.assert_allclose(main.PREDICTOR.output(columns), want, rtol=1e-9, atol=1e-12)
    assert client.get("/health").json()["predictor"] == main.PREDICTOR.kind


def test_compiled_predictor_refuses_what_it_cannot_reproduce():
    from deployment.api import predictor
    from sklearn.dummy import DummyClassifier

    p = predictor.load(DummyClassifier().fit([[0], [1]], [0, 1]), ["x"], {"x"}, proba=True)
    assert p.kind == "sklearn" and "not compiled" in p.reason
