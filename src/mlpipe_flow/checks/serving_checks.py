"""Checks that start the workspace's API: it answers, agrees with the saved model, rejects bad
input with a 422, and holds an open-loop load within its latency objective."""

from __future__ import annotations

import json
import math

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.serving import ApiDown, http, running_api, test_records
from mlpipe_flow.models import CheckResult


class ApiServesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: int = Field(default=200, ge=1, description="test-split rows compared with the model")
    min_agreement: float = Field(default=1.0, gt=0, le=1)
    rel_tol: float = Field(default=1e-6, ge=0, description="regression: relative tolerance")


def _agree(a: object, b: object, rel_tol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=rel_tol)
    return str(a) == str(b)


def api_serves(ctx: CheckContext, params: ApiServesParams) -> CheckResult:
    import joblib

    try:
        frame, records, meta = test_records(ctx, params.rows)
        model = joblib.load(ctx.workspace / "artifacts" / "model.joblib")
    except Exception as e:  # noqa: BLE001 - an unreadable model is a failed check
        return result("failed", f"cannot read the saved model or the test split: "
                      f"{type(e).__name__}: {e}")
    expected = model.predict(frame).tolist()
    try:
        with running_api(ctx) as api:
            version = api.health.get("model_version")
            if version is None:
                return result("failed", "/health does not report model_version", health=api.health)
            status, body = http("POST", f"{api.base}/predict",
                                json.dumps({"records": records}).encode(), timeout=60)
            if status != 200:
                return result("failed", f"/predict on {len(records)} test rows answered HTTP "
                              f"{status}", body=body[:300].decode(errors="replace"))
            got = json.loads(body).get("predictions")
            singles = []
            for rec in records[:5]:  # one record per request, as the load test sends them
                s, b = http("POST", f"{api.base}/predict", json.dumps({"records": [rec]}).encode())
                singles.append((json.loads(b).get("predictions") or [None])[0] if s == 200 else None)
            bad = {}
            for name, payload in (("not JSON", b"{not json"), ("no records", b"{}"),
                                  ("empty record", b'{"records": [{}]}'),
                                  ("wrong type", json.dumps({"records": [
                                      {k: {"x": 1} for k in meta["feature_columns"]}]}).encode())):
                bad[name] = http("POST", f"{api.base}/predict", payload)[0]
            alive = api.server.alive() and http("GET", f"{api.base}/health")[0] == 200
    except ApiDown as e:
        return result("failed", str(e))
    if not isinstance(got, list) or len(got) != len(expected):
        return result("failed", f"/predict returned {type(got).__name__} of "
                      f"{len(got) if isinstance(got, list) else '-'} predictions for "
                      f"{len(expected)} records")
    same = sum(_agree(a, b, params.rel_tol) for a, b in zip(got, expected, strict=True))
    agreement = same / len(expected)
    singles_ok = all(_agree(a, b, params.rel_tol) for a, b in zip(singles, expected[:5], strict=False))
    evidence = {"model_version": version, "rows": len(expected), "agreement": round(agreement, 4),
                "single_record_requests_agree": singles_ok, "bad_requests": bad,
                "alive_after_bad_requests": alive}
    if agreement < params.min_agreement or not singles_ok:
        return result("failed", f"/predict agrees with the saved model on {agreement:.1%} of "
                      f"{len(expected)} test rows (single-record requests agree: {singles_ok}); "
                      f"expected {params.min_agreement:.0%}", **evidence)
    not_422 = {k: v for k, v in bad.items() if v != 422}
    if not_422 or not alive:
        return result("failed", f"bad requests must get a 422 and leave the API up; got "
                      f"{not_422 or bad}, alive: {alive}", **evidence)
    return result("passed", f"/health reports version {version}; /predict agrees with the model "
                  f"on {len(expected)} test rows; bad requests get 422", **evidence)


class ApiLoadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: float = Field(default=1000, gt=0, description="open-loop arrival rate, requests/s")
    duration_s: float = Field(default=10, gt=0, description="measured seconds after warm-up")
    warmup_s: float = Field(default=3, ge=0)
    p95_ms: float = Field(default=100, gt=0)
    min_rate_fraction: float = Field(default=0.95, gt=0, le=1)
    max_error_rate: float = Field(default=0.001, ge=0, le=1)
    connections: int = Field(default=128, ge=1)
    distinct_rows: int = Field(default=500, ge=1)


def api_load(ctx: CheckContext, params: ApiLoadParams) -> CheckResult:
    from mlpipe_flow.checks.loadgen import run_load

    try:
        _, records, _ = test_records(ctx, params.distinct_rows)
    except (OSError, ValueError, KeyError) as e:
        return result("failed", f"cannot read the test split: {e}")
    bodies = [json.dumps({"records": [r]}).encode() for r in records]
    try:
        with running_api(ctx) as api:
            load = run_load("127.0.0.1", api.port, "/predict", bodies, rate=params.rate,
                            duration_s=params.duration_s, warmup_s=params.warmup_s,
                            connections=params.connections)
    except ApiDown as e:
        return result("failed", str(e))
    ev = {**load.evidence(), "p95_limit_ms": params.p95_ms,
          "min_rate": params.rate * params.min_rate_fraction, "warmup_s": params.warmup_s}
    summary = (f"{load.achieved_rps:.0f} req/s achieved of {params.rate:.0f} offered, p50 "
               f"{load.p50_ms:.1f} ms, p95 {load.p95_ms:.1f} ms, p99 {load.p99_ms:.1f} ms, "
               f"errors {load.errors}/{load.sent}")
    problems = []
    if load.achieved_rps < params.rate * params.min_rate_fraction:
        problems.append(f"rate below {params.min_rate_fraction:.0%} of target")
    if not load.p95_ms < params.p95_ms:
        problems.append(f"p95 not under {params.p95_ms:.0f} ms")
    if load.error_rate > params.max_error_rate:
        problems.append(f"error rate {load.error_rate:.2%} above {params.max_error_rate:.2%}")
    if problems:
        return result("failed", f"{summary}: {'; '.join(problems)}", **ev)
    return result("passed", summary, **ev)
