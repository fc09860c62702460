"""Model serving API: /health, /predict (micro-batched), /metrics (Prometheus).

Run with ONE worker:  uvicorn deployment.api.main:app --host 0.0.0.0 --port 8000
Concurrent /predict requests are gathered for up to BATCH_WAIT_MS and predicted as one
batch: a scikit-learn pipeline costs milliseconds per call but microseconds per row, so
one call per batch (not per request) is what holds a high request rate on one worker; the
pipeline itself is compiled to numpy when it can be (predictor.py), /health says whether.

The model served is the registry's champion (registry/champion.json) when a registry exists,
else artifacts/model.joblib; MODEL_DIR overrides both.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

# One predict thread serves every request: OpenMP worker threads (HistGradientBoosting, BLAS)
# would only spin against the event loop for the same cores. Set before numpy/sklearn load.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from deployment.api import predictor
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

ROOT = Path(__file__).resolve().parents[2]
BATCH_WAIT_MS = float(os.environ.get("BATCH_WAIT_MS", "2"))
# under load wait up to as long as the last predict took (scaled by how full the last batch
# was, full at LOADED_BATCH_REQUESTS), at most MAX_BATCH_WAIT_MS: predicting then takes at most
# about half of the CPU, leaving the rest to HTTP, and batches grow instead of predict calls
# multiplying; a lightly loaded server keeps the short BATCH_WAIT_MS. (Greedy batching,
# MAX_BATCH_WAIT_MS=0 BATCH_WAIT_MS=0, measured better on a ~14 ms-per-call test model but
# worse on the built-in agent's own Telco model in whole runs: see the README.)
LOADED_BATCH_REQUESTS = int(os.environ.get("LOADED_BATCH_REQUESTS", "32"))
MAX_BATCH_WAIT_MS = float(os.environ.get("MAX_BATCH_WAIT_MS", "25"))
MAX_BATCH_ROWS = int(os.environ.get("MAX_BATCH_ROWS", "2048"))
MAX_RECORDS = 1000
DRIFT_REPORT = ROOT / "monitoring" / "drift_detection" / "latest_report.json"


def model_dir() -> Path:
    if os.environ.get("MODEL_DIR"):
        return Path(os.environ["MODEL_DIR"])
    champion = ROOT / "registry" / "champion.json"
    if champion.is_file():
        version = json.loads(champion.read_text(encoding="utf-8"))["version"]
        return ROOT / "registry" / "versions" / str(version)
    return ROOT / "artifacts"


MODEL_DIR = model_dir()
META: dict[str, Any] = json.loads((MODEL_DIR / "model_meta.json").read_text(encoding="utf-8"))
MODEL = joblib.load(MODEL_DIR / "model.joblib")
FEATURES: list[str] = list(META["feature_columns"])
VERSION = str(META["version"])
IS_CLASSIFIER = META["problem_type"] != "regression" and hasattr(MODEL, "predict_proba")
FEATURE_TYPES: dict[str, str] = json.loads(
    (Path(__file__).parent / "features.json").read_text(encoding="utf-8"))
NUMERIC = {name for name in FEATURES if FEATURE_TYPES.get(name) == "number"}
PREDICTOR = predictor.load(MODEL, FEATURES, NUMERIC, proba=IS_CLASSIFIER)
CLASSES = [str(c) for c in MODEL.classes_] if IS_CLASSIFIER else []

# --- request validation, built from the feature columns -----------------------------------
# Each record is a TypedDict keyed by the raw column names (any spelling), every feature
# required but nullable (the pipeline imputes); unknown keys such as ids are ignored.
Record = TypedDict(  # type: ignore[misc]
    "Record", {name: (float | None) if FEATURE_TYPES.get(name) == "number" else (str | None)
               for name in FEATURES})


class PredictRequest(BaseModel):
    records: list[Record] = Field(min_length=1, max_length=MAX_RECORDS)  # type: ignore[valid-type]


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[Any]
    confidence: list[float] | None = None
    probabilities: list[dict[str, float]] | None = None


REQUEST_ADAPTER: TypeAdapter[PredictRequest] = TypeAdapter(PredictRequest)


# --- metrics ------------------------------------------------------------------------------
# Every series the dashboards and alerts read exists from start-up (Prometheus practice: a
# labelled series that appears only with its first event breaks rate() and absent()); the
# endpoint label is the route, never the raw path (unknown paths are "other").
ROUTES = ("/predict", "/health", "/metrics")
REGISTRY = CollectorRegistry()
REQUESTS = Counter("mlpipe_requests", "HTTP requests by endpoint and status code",
                   ["endpoint", "status"], registry=REGISTRY)
LATENCY = Histogram("mlpipe_request_latency_seconds", "Request latency in seconds", ["endpoint"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .075, .1, .25, .5, 1, 2.5),
                    registry=REGISTRY)
for _endpoint, _codes in (("/predict", ("200", "422", "500")), ("/health", ("200",)),
                          ("/metrics", ("200",))):
    for _code in _codes:
        REQUESTS.labels(endpoint=_endpoint, status=_code)
    if _endpoint != "/metrics":
        LATENCY.labels(endpoint=_endpoint)
CONFIDENCE = Histogram("mlpipe_prediction_confidence", "Confidence of each prediction",
                       buckets=(.5, .6, .7, .8, .9, .95, .99, 1.0),
                       registry=REGISTRY) if IS_CLASSIFIER else None
PREDICTIONS = Counter("mlpipe_predictions", "Rows predicted", registry=REGISTRY)
BATCH_ROWS = Histogram("mlpipe_batch_rows", "Rows per micro-batch",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024), registry=REGISTRY)
MODEL_INFO = Gauge("mlpipe_model_version_info", "The model version being served (value 1)",
                   ["version"], registry=REGISTRY)
MODEL_INFO.labels(version=VERSION).set(1)


class QualityCollector:
    """Offline quality and drift figures (from the drift detector's last report) as gauges;
    NaN (unknown) until a report says otherwise, 0 for 'drift detected'."""

    def collect(self):  # type: ignore[no-untyped-def]
        ref = GaugeMetricFamily("mlpipe_model_reference_score",
                                "Primary metric of the served model on the hold-out split")
        if isinstance(META.get("test_score"), (int, float)):
            ref.add_metric([], float(META["test_score"]))
        live = GaugeMetricFamily("mlpipe_model_live_score",
                                 "Primary metric on the latest labelled production sample")
        psi = GaugeMetricFamily("mlpipe_feature_drift_psi", "PSI of each feature vs training",
                                labels=["feature"])
        drifted = GaugeMetricFamily("mlpipe_drift_detected", "1 when the last drift check fired")
        try:
            report = json.loads(DRIFT_REPORT.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = None
        report = report if isinstance(report, dict) else {}
        score = report.get("live_score")
        live.add_metric([], float(score) if isinstance(score, (int, float)) else float("nan"))
        features = report.get("features")
        features = features if isinstance(features, dict) else {}
        for feat in FEATURES:
            stats = features.get(feat)
            value = stats.get("psi") if isinstance(stats, dict) else None
            psi.add_metric([feat], float(value) if isinstance(value, (int, float)) else float("nan"))
        drifted.add_metric([], 1.0 if report.get("drift_detected") else 0.0)
        yield from (ref, live, psi, drifted)


REGISTRY.register(QualityCollector())  # type: ignore[arg-type]

# --- micro-batching -------------------------------------------------------------------------
_queue: asyncio.Queue[tuple[list[dict[str, Any]], asyncio.Future[Any]]] | None = None
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")


def to_columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """One numpy array per feature (floats for numeric features, nulls as NaN): the input both
    the compiled predictor and the pipeline (as a DataFrame) take."""
    columns = {}
    for name in FEATURES:
        values = [r[name] for r in rows]
        if name in NUMERIC:
            columns[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        else:
            columns[name] = np.array(values, dtype=object)
    return columns


def predict_rows(rows: list[dict[str, Any]]) -> tuple[list[Any], list[float] | None,
                                                       list[dict[str, float]] | None]:
    columns = to_columns(rows)
    if not IS_CLASSIFIER:
        return PREDICTOR.output(columns).tolist(), None, None
    proba = PREDICTOR.output(columns)
    labels = MODEL.classes_[proba.argmax(axis=1)].tolist()
    conf = proba.max(axis=1).tolist()
    probs = [dict(zip(CLASSES, row, strict=True)) for row in proba.tolist()]
    return labels, conf, probs


async def _batcher() -> None:
    assert _queue is not None
    loop = asyncio.get_running_loop()
    last_predict_s, last_requests = 0.0, 0
    while True:
        first = await _queue.get()
        wait = BATCH_WAIT_MS / 1000
        load = min(1.0, last_requests / LOADED_BATCH_REQUESTS)
        wait = max(wait, min(load * last_predict_s, MAX_BATCH_WAIT_MS / 1000))
        if wait > 0:
            await asyncio.sleep(wait)
        batch = [first]
        rows = len(first[0])
        while not _queue.empty() and rows < MAX_BATCH_ROWS:
            item = _queue.get_nowait()
            batch.append(item)
            rows += len(item[0])
        all_rows = [r for records, _ in batch for r in records]
        started = time.perf_counter()
        try:
            labels, conf, probs = await loop.run_in_executor(_executor, predict_rows, all_rows)
        except Exception as e:  # noqa: BLE001 - one bad batch fails its requests, not the server
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            continue
        last_predict_s, last_requests = time.perf_counter() - started, len(batch)
        BATCH_ROWS.observe(len(all_rows))
        PREDICTIONS.inc(len(all_rows))
        start = 0
        for records, fut in batch:
            end = start + len(records)
            if not fut.done():
                fut.set_result((labels[start:end], conf[start:end] if conf else None,
                                probs[start:end] if probs else None))
            start = end


@asynccontextmanager
async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
    global _queue
    _queue = asyncio.Queue()
    task = asyncio.create_task(_batcher())
    yield
    task.cancel()


async def handle_predict(body: bytes) -> tuple[int, bytes]:
    """Validate the body with pydantic (a bad request is a 422), queue it for the batcher."""
    assert _queue is not None
    try:
        req = REQUEST_ADAPTER.validate_json(body)
    except ValidationError as e:
        errors = json.loads(e.json(include_url=False, include_context=False))
        return 422, json.dumps({"detail": errors}).encode()
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    _queue.put_nowait((req.records, fut))  # type: ignore[arg-type]
    labels, conf, probs = await fut
    if conf is not None and CONFIDENCE is not None:
        for c in conf:
            CONFIDENCE.observe(c)
    out = {"model_version": VERSION, "predictions": labels, "confidence": conf,
           "probabilities": probs}
    return 200, json.dumps(out).encode()


class ObserveMiddleware:
    """Plain ASGI middleware: status counts and latency for every request, and the hot path.

    POST /predict is answered here, without Starlette's routing and Request objects (a few
    hundred microseconds per request that matter at 1000 req/s on one worker); the FastAPI
    route below documents the same endpoint in OpenAPI and serves it if this is bypassed.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        started = time.perf_counter()
        endpoint = scope["path"]
        status = ["500"]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            if endpoint == "/predict" and scope["method"] == "POST":
                chunks = []
                more = True
                while more:
                    message = await receive()
                    chunks.append(message.get("body", b""))
                    more = message.get("more_body", False)
                code, payload = await handle_predict(b"".join(chunks))
                await send_wrapper({"type": "http.response.start", "status": code,
                                    "headers": [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(payload)).encode())]})
                await send({"type": "http.response.body", "body": payload})
            else:
                await self.inner(scope, receive, send_wrapper)
        finally:
            route = endpoint if endpoint in ROUTES else "other"
            if route != "/metrics":
                LATENCY.labels(endpoint=route).observe(time.perf_counter() - started)
            REQUESTS.labels(endpoint=route, status=status[0]).inc()


app = FastAPI(title="Model API", version=VERSION, lifespan=lifespan)
app.add_middleware(ObserveMiddleware)


@app.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "ok", "model_version": VERSION, "problem_type": META["problem_type"],
            "features": len(FEATURES), "predictor": PREDICTOR.kind,
            "predictor_note": PREDICTOR.reason}


@app.post("/predict", response_model=PredictResponse,
          openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
              "schema": PredictRequest.model_json_schema()}}}})
async def predict(request: Request) -> Response:
    code, payload = await handle_predict(await request.body())
    return Response(payload, status_code=code, media_type="application/json")


@app.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
