"""Model serving API: GET /health, POST /predict (micro-batched), GET /metrics (Prometheus).

Run with ONE worker:  uvicorn deployment.api.main:app --host 0.0.0.0 --port 8000

- The model is loaded at start-up (the lifespan), served through ONNX Runtime when the pipeline
  converts and reproduces itself on check rows, else through scikit-learn (predictor.py);
  /health says which.
- POST /predict validates its body with pydantic models built from the feature columns
  (features.json): a bad request is a 422 in FastAPI's format (PredictEndpoint says why it is
  plain ASGI inside the router). Concurrent requests are gathered
  for a few milliseconds and predicted as one batch in one predict thread: a predict call costs
  far more than a row within it, so one call per batch (not per request) is what holds a high
  request rate on one worker.
- A sample of the inputs is logged for the drift job (input_log.py), in the predict thread.
- Metrics are labelled with the route template (`/predict`), never the raw path: requests that
  match no route share the endpoint label "unmatched". Every series carries `track` (MODEL_TRACK,
  "stable" or "canary") and `model_version`, so a canary is judged by what its pods report.

The model served is the registry's champion (registry/champion.json) when a registry exists,
else artifacts/model.joblib; MODEL_DIR overrides both.
"""

from __future__ import annotations

import os

# One predict thread serves every request: OpenMP worker threads (HistGradientBoosting, BLAS)
# would only spin against the event loop for the same cores. Set before numpy/sklearn load.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import asyncio
import json
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from deployment.api import predictor
from deployment.api.input_log import InputLog
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
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
from starlette.routing import Match, Route
from starlette.types import Scope
from typing_extensions import NotRequired, TypedDict

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BATCH_WAIT_MS = float(os.environ.get("BATCH_WAIT_MS", "2"))
# under load wait up to as long as the last predict took (scaled by how full the last batch
# was, full at LOADED_BATCH_REQUESTS), at most MAX_BATCH_WAIT_MS: predicting then takes at most
# about half of the CPU, leaving the rest to HTTP, and batches grow instead of predict calls
# multiplying; a lightly loaded server keeps the short BATCH_WAIT_MS.
LOADED_BATCH_REQUESTS = int(os.environ.get("LOADED_BATCH_REQUESTS", "32"))
MAX_BATCH_WAIT_MS = float(os.environ.get("MAX_BATCH_WAIT_MS", "25"))
MAX_BATCH_ROWS = int(os.environ.get("MAX_BATCH_ROWS", "2048"))
MAX_RECORDS = 1000
TRACK = os.environ.get("MODEL_TRACK", "stable")
DRIFT_REPORT = ROOT / "monitoring" / "drift_detection" / "latest_report.json"
UNMATCHED = "unmatched"  # the endpoint label of every request that matches no route


def model_dir() -> Path:
    if os.environ.get("MODEL_DIR"):
        return Path(os.environ["MODEL_DIR"])
    champion = ROOT / "registry" / "champion.json"
    if champion.is_file():
        version = json.loads(champion.read_text(encoding="utf-8"))["version"]
        return ROOT / "registry" / "versions" / str(version)
    return ROOT / "artifacts"


# --- request and response models, built from the feature columns ------------------------------
# Each record is keyed by the raw column names (any spelling): every feature required but
# nullable (the pipeline imputes it), typed as the training data reads it; the id columns are
# optional (kept in the input log, so labelled outcomes can be joined to what was served);
# other keys are ignored.
FEATURE_TYPES: dict[str, str] = json.loads((HERE / "features.json").read_text(encoding="utf-8"))
ID_COLUMNS: list[str] = (json.loads((HERE / "id_columns.json").read_text(encoding="utf-8"))
                         if (HERE / "id_columns.json").is_file() else [])
FEATURES = list(FEATURE_TYPES)
NUMERIC = {name for name, kind in FEATURE_TYPES.items() if kind == "number"}
Record = TypedDict(  # type: ignore[misc]
    "Record", {**{name: NotRequired[str | int | None] for name in ID_COLUMNS},  # type: ignore[misc]
               **{name: (float | None) if name in NUMERIC else (str | None)
                  for name in FEATURES}})


class PredictRequest(BaseModel):
    records: list[Record] = Field(min_length=1, max_length=MAX_RECORDS)  # type: ignore[valid-type]


PREDICT_REQUEST: TypeAdapter[PredictRequest] = TypeAdapter(PredictRequest)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined (OpenAPI resolves "#/$defs/..." against
    the whole document)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.rsplit("/", 1)[1]])
            return {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node

    return resolve(schema)  # type: ignore[no-any-return]


REQUEST_SCHEMA = inline_schema(PredictRequest)


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[Any]
    confidence: list[float] | None = None
    probabilities: list[dict[str, float]] | None = None


class HealthResponse(BaseModel):
    status: str
    model_version: str
    problem_type: str
    track: str
    features: int
    predictor: str
    predictor_note: str


# --- the model --------------------------------------------------------------------------------
@dataclass
class Served:
    folder: Path
    meta: dict[str, Any]
    model: Any
    predictor: predictor.Predictor
    is_classifier: bool

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @classmethod
    def load(cls, folder: Path) -> Served:
        meta = json.loads((folder / "model_meta.json").read_text(encoding="utf-8"))
        if list(meta["feature_columns"]) != FEATURES:
            raise RuntimeError(f"{folder}/model_meta.json's feature columns are not those of "
                               f"{HERE / 'features.json'}: rebuild the API for this model")
        model = joblib.load(folder / "model.joblib")
        is_classifier = meta["problem_type"] != "regression" and hasattr(model, "predict_proba")
        return cls(folder, meta, model, predictor.load(model, FEATURES, NUMERIC, is_classifier),
                   is_classifier)

    def predict(self, rows: list[dict[str, Any]]) -> tuple[list[Any], list[float] | None,
                                                          list[dict[str, float]] | None]:
        columns = to_columns(rows)
        if not self.is_classifier:
            return self.predictor.output(columns).tolist(), None, None
        proba = self.predictor.output(columns)
        labels = self.model.classes_[proba.argmax(axis=1)].tolist()
        conf = proba.max(axis=1).tolist()
        classes = [str(c) for c in self.model.classes_]
        probs = [dict(zip(classes, row, strict=True)) for row in proba.tolist()]
        return labels, conf, probs


def to_columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """One numpy array per feature (float64 for numeric features, nulls as NaN; objects for
    text): the input every predictor takes."""
    columns = {}
    for name in FEATURES:
        values = [r[name] for r in rows]
        if name in NUMERIC:
            columns[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        else:
            columns[name] = np.array(values, dtype=object)
    return columns


# --- metrics ------------------------------------------------------------------------------------
# Every series the dashboards and alerts read exists from start-up (Prometheus practice: a
# labelled series that appears only with its first event breaks rate() and absent()).
SERVING = ("track", "model_version")
SERVING_LABELS: dict[str, str] = {"track": TRACK, "model_version": "none"}  # set at start-up
REGISTRY = CollectorRegistry()
REQUESTS = Counter("mlpipe_requests", "HTTP requests by route template and status code",
                   ["endpoint", "status", *SERVING], registry=REGISTRY)
LATENCY = Histogram("mlpipe_request_latency_seconds", "Request latency in seconds",
                    ["endpoint", *SERVING],
                    buckets=(.001, .0025, .005, .01, .025, .05, .075, .1, .25, .5, 1, 2.5),
                    registry=REGISTRY)
CONFIDENCE = Histogram("mlpipe_prediction_confidence", "Confidence of each prediction",
                       SERVING, buckets=(.5, .6, .7, .8, .9, .95, .99, 1.0), registry=REGISTRY)
PREDICTIONS = Counter("mlpipe_predictions", "Rows predicted", SERVING, registry=REGISTRY)
BATCH_ROWS = Histogram("mlpipe_batch_rows", "Rows per micro-batch", SERVING,
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024), registry=REGISTRY)
MODEL_INFO = Gauge("mlpipe_model_version_info", "The model version being served (value 1)",
                   ["version", "track", "predictor"], registry=REGISTRY)


def start_series(served: Served) -> None:
    SERVING_LABELS["model_version"] = served.version
    for endpoint, codes in (("/predict", ("200", "422", "500")), ("/health", ("200",)),
                            ("/metrics", ("200",)), (UNMATCHED, ("404",))):
        for code in codes:
            REQUESTS.labels(endpoint=endpoint, status=code, **SERVING_LABELS)
        if endpoint != "/metrics":
            LATENCY.labels(endpoint=endpoint, **SERVING_LABELS)
    if served.is_classifier:
        CONFIDENCE.labels(**SERVING_LABELS)
    PREDICTIONS.labels(**SERVING_LABELS)
    BATCH_ROWS.labels(**SERVING_LABELS)
    MODEL_INFO.labels(version=served.version, track=TRACK, predictor=served.predictor.kind).set(1)


class QualityCollector:
    """Offline quality and drift figures (from the drift detector's last report) as gauges;
    NaN (unknown) until a report says otherwise, 0 for 'drift detected'."""

    served: Served | None = None  # set at start-up

    def collect(self):  # type: ignore[no-untyped-def]
        meta = self.served.meta if self.served is not None else {}
        ref = GaugeMetricFamily("mlpipe_model_reference_score",
                                "Primary metric of the served model on the hold-out split")
        if isinstance(meta.get("test_score"), (int, float)):
            ref.add_metric([], float(meta["test_score"]))
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


QUALITY = QualityCollector()
REGISTRY.register(QUALITY)  # type: ignore[arg-type]


class MetricsMiddleware:
    """Plain ASGI middleware: a count by status and the latency of every request, labelled with
    the template of the route that matched (FastAPI puts it in the scope), never the raw path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ["500"]  # what an exception that escapes the app becomes

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            if route != "/metrics":
                LATENCY.labels(endpoint=route, **SERVING_LABELS).observe(
                    time.perf_counter() - started)
            REQUESTS.labels(endpoint=route, status=status[0], **SERVING_LABELS).inc()


# --- micro-batching -------------------------------------------------------------------------------
Answer = tuple[list[Any], list[float] | None, list[dict[str, float]] | None]


class Batcher:
    """Gathers concurrent requests and predicts them as one batch in the predict thread."""

    def __init__(self, served: Served, inputs: InputLog) -> None:
        self.served, self.inputs = served, inputs
        self.queue: asyncio.Queue[tuple[list[dict[str, Any]], asyncio.Future[Answer]]] = \
            asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")

    async def predict(self, records: list[dict[str, Any]]) -> Answer:
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((records, fut))
        return await fut

    def _predict(self, rows: list[dict[str, Any]]) -> Answer:
        labels, conf, probs = self.served.predict(rows)
        BATCH_ROWS.labels(**SERVING_LABELS).observe(len(rows))
        PREDICTIONS.labels(**SERVING_LABELS).inc(len(rows))
        if conf is not None:
            confidence = CONFIDENCE.labels(**SERVING_LABELS)
            for c in conf:
                confidence.observe(c)
        return labels, conf, probs

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_predict_s, last_requests = 0.0, 0
        while True:
            first = await self.queue.get()
            load = min(1.0, last_requests / LOADED_BATCH_REQUESTS)
            wait = max(BATCH_WAIT_MS / 1000, min(load * last_predict_s, MAX_BATCH_WAIT_MS / 1000))
            if wait > 0:
                await asyncio.sleep(wait)
            batch = [first]
            rows = len(first[0])
            while not self.queue.empty() and rows < MAX_BATCH_ROWS:
                item = self.queue.get_nowait()
                batch.append(item)
                rows += len(item[0])
            all_rows = [r for records, _ in batch for r in records]
            started = time.perf_counter()
            try:
                labels, conf, probs = await loop.run_in_executor(self.executor, self._predict,
                                                                 all_rows)
            except Exception as e:  # noqa: BLE001 - one bad batch fails its requests, not the server
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            last_predict_s, last_requests = time.perf_counter() - started, len(batch)
            start = 0
            for records, fut in batch:
                end = start + len(records)
                if not fut.done():
                    fut.set_result((labels[start:end], conf[start:end] if conf else None,
                                    probs[start:end] if probs else None))
                start = end
            if self.inputs.enabled:  # after the answers, in the predict thread
                self.executor.submit(self.inputs.write, all_rows)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.inputs.close()


# --- the app --------------------------------------------------------------------------------------
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    served = Served.load(model_dir())
    start_series(served)
    QUALITY.served = served
    batcher = Batcher(served, InputLog.from_env(ROOT / "data" / "production", dict(SERVING_LABELS)))
    task = asyncio.create_task(batcher.run())
    app.state.served, app.state.batcher = served, batcher
    app.version = served.version
    try:
        yield
    finally:
        task.cancel()
        batcher.close()


app = FastAPI(title="Model API", lifespan=lifespan)
app.add_middleware(MetricsMiddleware)


@app.get("/health")
async def health(request: Request) -> HealthResponse:
    served: Served = request.app.state.served
    return HealthResponse(status="ok", model_version=served.version, track=TRACK,
                          problem_type=served.meta["problem_type"], features=len(FEATURES),
                          predictor=served.predictor.kind, predictor_note=served.predictor.reason)


class PredictEndpoint:
    """POST /predict, a route of the app's router (so its template labels the metrics) whose
    endpoint is plain ASGI: the body parsed and validated in one pass by pydantic
    (`validate_json`; a bad body is a 422 in FastAPI's format), the answer serialized by
    pydantic. Measured on one worker at 1000 requests/s (bench/serve.py), FastAPI's request
    machinery around it (a body parameter, a returned model, or even a `Request` argument)
    cost more CPU per request than the worker can spare; OpenAPI still documents it."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            body = PREDICT_REQUEST.validate_json(b"".join(chunks))
        except ValidationError as e:
            code = 422
            errors = [{**err, "loc": ["body", *err["loc"]]}
                      for err in e.errors(include_url=False, include_context=False)]
            payload = json.dumps({"detail": errors}, default=str).encode()
        else:
            state = scope["app"].state
            labels, conf, probs = await state.batcher.predict(body.records)
            answer = PredictResponse(model_version=state.served.version, predictions=labels,
                                     confidence=conf, probabilities=probs)
            code, payload = 200, answer.model_dump_json().encode()
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


class TemplateRoute(Route):
    """A plain route that puts itself in the scope when it matches, as FastAPI's own routes do:
    the metrics middleware labels the request with its template."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match != Match.NONE:
            child["route"] = self
        return match, child


app.router.routes.append(TemplateRoute("/predict", PredictEndpoint(), methods=["POST"]))


def openapi() -> dict[str, Any]:
    """FastAPI's schema, with POST /predict's request and response models."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schema["paths"]["/predict"] = {"post": {
            "summary": "Predict", "operationId": "predict",
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": REQUEST_SCHEMA}}},
            "responses": {"200": {"description": "Predictions", "content": {
                "application/json": {"schema": inline_schema(PredictResponse)}}},
                "422": {"description": "Validation error"}}}}
        app.openapi_schema = schema
    return app.openapi_schema


app.openapi = openapi  # type: ignore[method-assign]


@app.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
