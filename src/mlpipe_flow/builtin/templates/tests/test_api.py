"""API tests for deployment/api/main.py, with FastAPI's TestClient (no network). Besides the
contract of each endpoint, the API's answers over the whole test split must reproduce the test
score recorded for the model it serves: an API serving a wrong model fails them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import joblib
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
META = json.loads((ROOT / "artifacts" / "model_meta.json").read_text())
FEATURES = META["feature_columns"]
SPEC = yaml.safe_load((ROOT / "ml-spec.yaml").read_text())


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
    model = joblib.load(client.app.state.served.folder / "model.joblib")
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


def served_score(answers: list[dict], meta: dict) -> float:
    """The primary metric of the API's answers over the test split (sklearn, as in training)."""
    import numpy as np
    from sklearn import metrics as skm

    metric, y = meta["primary_metric"], pd.read_csv(ROOT / "data/splits/test.csv")[SPEC["target"]]
    pred = [a["prediction"] for a in answers]
    if SPEC["problem_type"] == "regression":
        errors = {"rmse": lambda t, p: skm.mean_squared_error(t, p) ** 0.5,
                  "mae": skm.mean_absolute_error, "r2": skm.r2_score,
                  "mape": skm.mean_absolute_percentage_error}
        return float(errors[metric](y.astype(float), np.asarray(pred, dtype=float)))
    truth, classes = y.astype(str).to_numpy(), [str(c) for c in meta["classes"]]
    positive = str(meta.get("positive_class") or classes[-1])
    if metric in ("roc_auc", "average_precision", "log_loss"):
        proba = np.asarray([[a["probabilities"][c] for c in classes] for a in answers])
        if metric == "log_loss":
            return float(skm.log_loss(truth, proba, labels=classes))
        if len(classes) > 2:
            return float(skm.roc_auc_score(truth, proba, multi_class="ovr", labels=classes))
        fn = skm.roc_auc_score if metric == "roc_auc" else skm.average_precision_score
        return float(fn(truth == positive, proba[:, classes.index(positive)]))
    guess = np.asarray(pred).astype(str)
    labels = {"accuracy": skm.accuracy_score, "balanced_accuracy": skm.balanced_accuracy_score}
    if metric in labels:
        return float(labels[metric](truth, guess))
    if metric == "f1_macro":
        return float(skm.f1_score(truth, guess, average="macro"))
    fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[metric]
    return float(fn(truth, guess, pos_label=positive, zero_division=0))


def test_api_reproduces_the_recorded_test_score(client):
    meta = client.app.state.served.meta
    frame = pd.read_csv(ROOT / "data" / "splits" / "test.csv")[FEATURES]
    answers = []
    for start in range(0, len(frame), 500):
        r = client.post("/predict", json={"records": records(frame.iloc[start:start + 500])})
        assert r.status_code == 200, r.text
        body = r.json()
        probs = body.get("probabilities") or [None] * len(body["predictions"])
        answers += [{"prediction": p, "probabilities": q}
                    for p, q in zip(body["predictions"], probs, strict=True)]
    assert served_score(answers, meta) == pytest.approx(meta["test_score"], rel=1e-6, abs=1e-6)


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


def predicted(client) -> float:
    """The rows predicted, by the counter of this track and model version."""
    series = f'mlpipe_predictions_total{{model_version="{META["version"]}",track="stable"}} '
    lines = [ln for ln in client.get("/metrics").text.splitlines() if ln.startswith(series)]
    return float(lines[0].split(" ")[1]) if lines else float("nan")


def test_metrics_exposed(client, test_rows):
    before = predicted(client)
    client.post("/predict", json={"records": records(test_rows.head(2))})
    assert predicted(client) == before + 2
    text = client.get("/metrics").text
    for name in ("mlpipe_requests_total", "mlpipe_request_latency_seconds_bucket",
                 "mlpipe_model_version_info"):
        assert name in text
    if META["problem_type"] != "regression":
        assert "mlpipe_prediction_confidence_bucket" in text


def test_metrics_label_routes_not_raw_paths(client):
    """Requests to paths no route matches share one series: an endpoint label per raw path
    would grow a new series with every scanner's request."""
    import re

    def series() -> set[str]:
        return {line.split(" ")[0] for line in client.get("/metrics").text.splitlines()
                if line.startswith("mlpipe_request")}

    client.get("/no-such-path-1")
    before = series()
    for i in range(2, 6):
        assert client.get(f"/no-such-path-{i}").status_code == 404
    after = series()
    assert after == before
    assert not [s for s in after if "no-such-path" in s]
    assert re.search(r'mlpipe_requests_total\{endpoint="unmatched",[^}]*status="404"', "\n".join(after))


def test_predict_requests_carry_the_route_template(client, test_rows):
    """What the alerts select on: a prediction lands in the `/predict` series, not `unmatched`."""
    import re

    def count(endpoint: str) -> float:
        text = client.get("/metrics").text
        pattern = (rf'^mlpipe_requests_total\{{endpoint="{re.escape(endpoint)}",'
                   r'[^}]*status="200"[^}]*\} (\S+)')
        return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))

    before = count("/predict")
    assert client.post("/predict", json={"records": records(test_rows.head(2))}).status_code == 200
    assert count("/predict") == before + 1


def test_predictor_reproduces_the_pipeline_on_the_test_split(client):
    """Whichever predictor serves (ONNX Runtime or the pipeline itself), its output on the
    whole test split agrees with the saved pipeline's own predict_proba / predict."""
    import numpy as np
    from deployment.api import main

    served = client.app.state.served
    frame = pd.read_csv(ROOT / "data" / "splits" / "test.csv")[FEATURES]
    columns = main.to_columns(records(frame))
    method = served.model.predict_proba if served.is_classifier else served.model.predict
    want = np.asarray(method(pd.DataFrame(columns)))
    np.testing.assert_allclose(served.predictor.output(columns), want, rtol=1e-7, atol=1e-7)
    assert client.get("/health").json()["predictor"] == served.predictor.kind


def test_predictor_falls_back_to_the_pipeline():
    from deployment.api import predictor
    from sklearn.dummy import DummyClassifier

    p = predictor.load(DummyClassifier().fit([[0], [1]], [0, 1]), ["x"], {"x"}, proba=True)
    assert p.kind == "sklearn" and "not converted" in p.reason


def test_inputs_are_logged_for_the_drift_job(test_rows, tmp_path, monkeypatch):
    """Every record when INPUT_LOG_SAMPLE=1: its features, `ts`, `model_version` and `track`,
    one JSON object per line in INPUT_LOG_DIR/inputs-*.jsonl."""
    from deployment.api.main import app

    monkeypatch.setenv("INPUT_LOG_DIR", str(tmp_path))
    monkeypatch.setenv("INPUT_LOG_SAMPLE", "1")
    monkeypatch.setenv("MODEL_TRACK", "stable")
    with TestClient(app) as c:
        assert c.post("/predict", json={"records": records(test_rows.head(3))}).status_code == 200
    lines = [json.loads(line) for f in tmp_path.glob("inputs-*.jsonl")
             for line in f.read_text().splitlines()]
    assert len(lines) == 3
    assert all(set(FEATURES) | {"ts", "model_version", "track"} <= set(line) for line in lines)
    assert lines[0]["model_version"] == str(META["version"])


def test_input_log_is_bounded(tmp_path):
    from deployment.api.input_log import InputLog

    log = InputLog(tmp_path, sample=1.0, max_bytes=4000, files=3, stamp={"track": "stable"})
    for i in range(200):
        log.write([{"x": i, "text": "y" * 50}])
    log.close()
    files = list(tmp_path.glob("inputs-*.jsonl"))
    assert len(files) <= 3
    assert sum(f.stat().st_size for f in files) <= 4000 + 200
