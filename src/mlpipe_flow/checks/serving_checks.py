"""Checks that start the workspace's API: it answers, agrees with the saved model, rejects bad
input with a 422, and holds an open-loop load within its latency objective."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks.base import CheckContext, pct, result
from mlpipe_flow.checks.metrics import label
from mlpipe_flow.checks.serving import API_APP, ApiDown, http, running_api
from mlpipe_flow.models import CheckResult
from mlpipe_flow.state import file_sha256


class ApiServesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "artifacts/model.joblib"
    test_rows: int = Field(default=60, ge=1, description="rows sampled from the test split")
    valid_rows: int = Field(default=40, ge=0, description="rows sampled from the valid split")
    vary_rows: int = Field(default=3, ge=0,
                           description="rows varied one feature at a time over its range")
    tol: float = Field(default=1e-4, ge=0,
                       description="probabilities: absolute; regression: relative tolerance")
    batch: int = Field(default=100, ge=1, description="records per /predict request")
    singles: int = Field(default=5, ge=0, description="probe rows sent again one per request")
    startup_s: float = Field(default=90, gt=0, description="seconds for /health to answer 200")

    def describe(self) -> str:
        return (f"the gate {start_rule(self.startup_s)} holding `model_version`; the feature "
                "columns and `problem_type` come from `artifacts/model_meta.json`. It makes "
                f"probe rows with a fresh seed: {self.test_rows} rows sampled from the test split and "
                f"{self.valid_rows} from the valid split, a perturbed copy of each (numbers "
                "moved within the range the splits show, categories swapped to other values "
                f"they show), and {self.vary_rows} of them with one feature at a time set across "
                "its observed range (every feature; null too where train has missing values). "
                "It sends them to `POST /predict` as `{\"records\": [...]}` in requests of "
                f"{self.batch} records, and {self.singles} of them again one record per request "
                "(the same predictions). "
                f"Every answer must agree with the saved `{self.model}`, which the gate runs "
                f"in a separate process: {agree_rule(self.tol)}. Bad requests ("
                f"{', '.join(BAD_REQUESTS)}) must each get HTTP 422, and `/health` must still "
                "answer after them. Then it requests "
                f"{UNKNOWN_PATHS + 1} random paths that no route serves (404) and scrapes "
                "`/metrics` before and after the last "
                f"{UNKNOWN_PATHS}: no label may hold such a path, and they must add no series "
                "(label requests by route template; every unmatched request under one label). "
                "When mlpipe recorded the model phase 3 passed with, "
                f"`{self.model}` must be that file (same sha256).")


def start_rule(startup_s: float) -> str:
    """How the gate runs the workspace's API (`serving.running_api`)."""
    return (f"runs `python -m uvicorn {API_APP} --host 127.0.0.1 --port <free port>` (one "
            f"process) from the workspace folder and waits up to {startup_s:g} s for "
            "`GET /health` to answer 200 with a JSON object")


def agree_rule(tol: float) -> str:
    """What "agrees with the saved model" means (`_compare`)."""
    return (f"equal labels and every class probability within {tol:g} (absolute), as one "
            "object per record keyed by class label or one list per record in the order of "
            f"the model's `classes_`; a regression prediction within {tol:g} relative to the "
            "larger of |prediction| and the standard deviation of the model's predictions")


UNKNOWN_PATHS = 3  # random 404 paths requested between two scrapes of /metrics

BAD_REQUESTS = ("not JSON", "no records", "empty list of records", "a record missing a feature",
                "text for a numeric feature", "an object for a feature")


def _bad_bodies(record: dict[str, Any], numeric: list[str], features: list[str],
                rng: Any) -> dict[str, bytes]:
    """The malformed bodies of the contract (all must get HTTP 422)."""
    missing = dict(record)
    missing.pop(features[int(rng.integers(len(features)))])
    bodies = {"not JSON": b"{not json", "no records": b"{}",
              "empty list of records": b'{"records": []}',
              "a record missing a feature": json.dumps({"records": [missing]}).encode(),
              "an object for a feature": json.dumps(
                  {"records": [{k: {"x": 1} for k in features}]}).encode()}
    if numeric:
        wrong = {**record, numeric[int(rng.integers(len(numeric)))]: "not-a-number"}
        bodies["text for a numeric feature"] = json.dumps({"records": [wrong]}).encode()
    return bodies


def _probabilities(got: Any, n: int, classes: list[str]) -> list[list[float]] | None:
    """The API's probabilities as rows in the model's class order (None: not in the contract's
    shape: one object per record keyed by class label, or one list per record)."""
    if not isinstance(got, list) or len(got) != n:
        return None
    rows = []
    for item in got:
        if isinstance(item, dict):
            keyed = {label(k): v for k, v in item.items()}
            row = [keyed.get(c) for c in classes]
        elif isinstance(item, list) and len(item) == len(classes):
            row = item
        else:
            return None
        numbers = [float(v) for v in row if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) != len(classes):
            return None
        rows.append(numbers)
    return rows


@dataclass
class Comparison:
    """Per probe row: does the API agree with the model, and by how much does it differ."""

    agree: list[bool]
    delta: list[float]


def _compare(model_out: dict[str, Any], api_pred: list[Any], api_proba: list[list[float]] | None,
             classes: list[str] | None, tol: float) -> Comparison:
    import numpy as np

    want = model_out["predictions"]
    if classes is None:  # regression: relative to the larger of |y| and the spread of outputs
        y = np.asarray([float("nan") if v is None else v for v in want], dtype=float)
        scale = float(np.nanstd(y)) or 1.0
        got = np.asarray([float("nan") if not isinstance(v, (int, float)) else v
                          for v in api_pred], dtype=float)
        delta = np.abs(got - y) / np.maximum(np.abs(y), scale)
        delta = np.where(np.isnan(delta), np.inf, delta)
        return Comparison([bool(d <= tol) for d in delta], delta.tolist())
    labels_ok = [label(a) == label(b) for a, b in zip(api_pred, want, strict=True)]
    probs = model_out.get("probabilities")
    if probs is None:  # a classifier without predict_proba: labels only
        return Comparison(labels_ok, [0.0 if ok else 1.0 for ok in labels_ok])
    p = np.asarray(probs, dtype=float)
    q = np.asarray(api_proba, dtype=float) if api_proba is not None else np.full_like(p, np.nan)
    delta = np.nanmax(np.where(np.isnan(q), np.inf, np.abs(q - p)), axis=1)
    top2 = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.zeros((len(p), 2))
    tie = (top2[:, 1] - top2[:, 0]) <= 2 * tol  # a label may go either way on a tie
    agree = [bool(d <= tol and (ok or t)) for d, ok, t in zip(delta, labels_ok, tie, strict=True)]
    return Comparison(agree, delta.tolist())


def _served_model(ctx: CheckContext, model: str) -> str | None:
    """Why the model file cannot be the reference (None: it is the one phase 3 passed with, or
    no run is recorded to compare with)."""
    records = ctx.records()
    if records is None:
        return None
    want = records.recorded_hash(model)
    if want is None:
        return None
    got = file_sha256(ctx.workspace / model) if (ctx.workspace / model).is_file() else "missing"
    return None if got == want else (f"{model} is not the model phase 3 passed with "
                                     f"(sha256 {got[:12]} != recorded {want[:12]})")


def api_serves(ctx: CheckContext, params: ApiServesParams) -> CheckResult:
    import numpy as np

    from mlpipe_flow.checks import api_probe
    from mlpipe_flow.checks.artifacts import ProbeError, run_model

    try:
        meta = json.loads((ctx.workspace / "artifacts" / "model_meta.json")
                          .read_text(encoding="utf-8"))
        features = [str(c) for c in meta["feature_columns"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return result("failed", f"cannot read artifacts/model_meta.json: {type(e).__name__}: {e}")
    swapped = _served_model(ctx, params.model)
    if swapped:
        return result("failed", swapped)
    ran: dict[str, Any] = {}

    def prepare() -> None:
        """The probe rows and the saved model's outputs on them, while the API starts."""
        try:
            ran["probe"] = probe = api_probe.build(
                ctx.workspace / "data" / "splits", features, params.test_rows,
                params.valid_rows, params.vary_rows)
        except (OSError, ValueError, KeyError, TypeError) as e:
            ran["error"] = f"cannot make probe rows from the splits: {type(e).__name__}: {e}"
            return
        dtypes = {c: ("number" if c in probe.numeric else "text") for c in features}
        try:
            ran["out"] = run_model(ctx, params.model, features, dtypes,
                                   [{"op": "predict", "frame": probe.frame, "proba": True}])
        except ProbeError as e:
            ran["error"] = f"the gate could not run the saved model: {e}"

    try:
        with running_api(ctx, params.startup_s, while_starting=prepare) as api:
            if "error" in ran:
                return result("failed", ran["error"])
            probe, out = ran["probe"], ran["out"]
            model_out = out["results"][0]
            regression = meta.get("problem_type") == "regression"
            classes = None if regression else [label(c) for c in (out.get("classes") or [])]
            if classes is not None and not classes:
                classes = sorted({label(v) for v in model_out["predictions"]})
            rng = np.random.default_rng(probe.seed)
            records = probe.records()
            n = len(records)
            version = api.health.get("model_version")
            if version is None:
                return result("failed", "/health does not report model_version", health=api.health)
            pred: list[Any] = []
            proba: list[Any] = []
            for start in range(0, n, params.batch):
                chunk = records[start:start + params.batch]
                status, body = http("POST", f"{api.base}/predict",
                                    json.dumps({"records": chunk}).encode(), timeout=60)
                if status != 200:
                    return result("failed", f"/predict on {len(chunk)} probe records answered "
                                  f"HTTP {status}", body=body[:300].decode(errors="replace"),
                                  seed=probe.seed)
                answer = json.loads(body)
                got = answer.get("predictions") if isinstance(answer, dict) else None
                if not isinstance(got, list) or len(got) != len(chunk):
                    return result("failed", f"/predict returned "
                                  f"{len(got) if isinstance(got, list) else 'no'} predictions "
                                  f"for {len(chunk)} records")
                pred += got
                proba += answer.get("probabilities") or [None] * len(chunk)
            singles = rng.choice(n, size=min(params.singles, n), replace=False).tolist()
            single_ok = []
            for i in singles:  # one record per request, as the load test sends them
                s, b = http("POST", f"{api.base}/predict",
                            json.dumps({"records": [records[i]]}).encode())
                got1 = json.loads(b).get("predictions") if s == 200 else None
                single_ok.append(isinstance(got1, list) and len(got1) == 1
                                 and _same(got1[0], pred[i]))
            bodies = _bad_bodies(records[0], probe.numeric, features, rng)
            bad = {name: http("POST", f"{api.base}/predict", body)[0]
                   for name, body in bodies.items()}
            alive = api.server.alive() and http("GET", f"{api.base}/health")[0] == 200
            raw_paths = _unknown_path_series(api.base)
    except ApiDown as e:
        return result("failed", str(e))
    except ValueError as e:  # a body that is not JSON
        return result("failed", f"/predict answered something that is not JSON: {e}")
    api_proba = None
    if classes is not None and model_out.get("probabilities") is not None:
        api_proba = _probabilities(proba, n, classes)
        if api_proba is None:
            return result("failed", f"/predict does not return class probabilities as the "
                          f"contract says (one object per record keyed by class label "
                          f"{classes}, or one list per record in that order)",
                          sample=proba[:2])
    cmp = _compare(model_out, pred, api_proba, classes, params.tol)
    groups: dict[str, list[int]] = {}
    for i, kind in enumerate(probe.kinds):
        groups.setdefault(kind.split(":")[0], []).append(i)
    disagree = {k: sum(not cmp.agree[i] for i in idx) for k, idx in groups.items()}
    sizes = {k: len(idx) for k, idx in groups.items()}
    features_off = sorted({k.split(":", 1)[1] for k, ok in zip(probe.kinds, cmp.agree, strict=True)
                           if k.startswith("vary:") and not ok})
    effect = _features_with_effect(probe, model_out)
    worst = max(cmp.delta) if cmp.delta else 0.0
    what = "probabilities" if api_proba is not None else "predictions"
    evidence: dict[str, Any] = {
        "model_version": version, "seed": probe.seed, "probe_rows": sizes,
        "disagreeing_rows": disagree, "max_difference": _round(worst), "tolerance": params.tol,
        "compared": what, "features_the_model_responds_to": f"{len(effect)}/{len(features)}",
        "features_where_api_differs": features_off,
        "single_record_requests_agree": all(single_ok),
        "bad_requests": bad, "alive_after_bad_requests": alive, **raw_paths}
    wrong = sum(disagree.values())
    if wrong:
        parts = ", ".join(f"{k} {disagree[k]}/{sizes[k]}" for k in sizes)
        also = f"; differs on feature(s) {', '.join(features_off[:6])}" if features_off else ""
        return result("failed", f"/predict disagrees with the saved model on {wrong} of {n} "
                      f"probe rows ({parts}){also}; max difference {_round(worst)} in {what}, "
                      f"tolerance {params.tol:g}", **evidence)
    if not all(single_ok):
        return result("failed", f"/predict agrees on batches but not on single-record requests "
                      f"({sum(single_ok)}/{len(single_ok)} agree)", **evidence)
    not_422 = {k: v for k, v in bad.items() if v != 422}
    if not_422 or not alive:
        return result("failed", f"bad requests must get HTTP 422 and leave the API up; got "
                      f"{not_422 or bad}, alive: {alive}", **evidence)
    if raw_paths.get("series_naming_unknown_paths") or \
            raw_paths.get("new_series_after_unknown_paths", 0) >= UNKNOWN_PATHS:
        return result("failed", f"/metrics labels requests by their raw path: "
                      f"{UNKNOWN_PATHS} random unknown paths added "
                      f"{raw_paths['new_series_after_unknown_paths']} series, "
                      f"{raw_paths['series_naming_unknown_paths_n']} naming the path (every "
                      "scanner's request would grow a new series); label by route template",
                      **evidence)
    return result("passed", f"/health reports version {version}; /predict agrees with the saved "
                  f"model on all {n} probe rows (test, valid, perturbed, one-feature variations; "
                  f"{what} within {params.tol:g}); bad requests get 422", **evidence)


def _unknown_path_series(base: str) -> dict[str, Any]:
    """Request random paths no route serves, scraping /metrics before and after the last
    UNKNOWN_PATHS of them: the series they added, and those whose labels hold such a path.
    Empty when /metrics does not answer (the monitoring gate judges /metrics itself)."""
    import secrets

    from mlpipe_flow.checks.promtext import parse_exposition

    def scrape() -> set[tuple[str, Any]] | None:
        status, body = http("GET", f"{base}/metrics")
        if status != 200:
            return None
        return set(parse_exposition(body.decode("utf-8", errors="replace")).samples)

    paths = [f"/mlpipe-gate-{secrets.token_hex(6)}" for _ in range(UNKNOWN_PATHS + 1)]
    http("GET", base + paths[0])
    scrape()  # the first scrape may add the /metrics series themselves
    before = scrape()
    for path in paths[1:]:
        http("GET", base + path)
    after = scrape()
    if before is None or after is None:
        return {"unknown_paths_probe": "/metrics does not answer 200"}
    tokens = [p.rsplit("-", 1)[1] for p in paths]
    naming = sorted(f"{name}{dict(labels)}" for name, labels in after
                    if any(t in v for _, v in labels for t in tokens))
    return {"new_series_after_unknown_paths": len(after - before),
            "series_naming_unknown_paths": naming[:5], "series_naming_unknown_paths_n": len(naming)}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return label(a) == label(b)


def _round(x: float) -> float | str:
    return "inf" if math.isinf(x) else float(f"{x:.3g}")


def _features_with_effect(probe: Any, model_out: dict[str, Any]) -> list[str]:
    """The features whose one-at-a-time variation changed the model's own output."""
    outputs = model_out.get("probabilities") or model_out["predictions"]

    def differ(a: Any, b: Any) -> bool:
        if isinstance(a, list):
            return any(abs(x - y) > 1e-12 for x, y in zip(a, b, strict=True))
        return not _same(a, b)

    return sorted({kind.split(":", 1)[1] for i, kind in enumerate(probe.kinds)
                   if kind.startswith("vary:") and differ(outputs[i], outputs[probe.base[i]])})


class ApiLoadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: float = Field(default=1000, gt=0, description="open-loop arrival rate, requests/s")
    duration_s: float = Field(default=10, gt=0, description="measured seconds after warm-up")
    warmup_s: float = Field(default=3, ge=0)
    p95_ms: float = Field(default=100, gt=0)
    min_rate_fraction: float = Field(default=0.95, gt=0, le=1)
    max_error_rate: float = Field(default=0.001, ge=0, le=1)
    connections: int = Field(default=128, ge=1)
    model: str = "artifacts/model.joblib"
    check_every: int = Field(default=50, ge=1,
                             description="every n-th response is compared with the model")
    tol: float = Field(default=1e-4, ge=0)
    request_timeout_s: float = Field(default=10, gt=0,
                                     description="a request unanswered this long is an error")
    startup_s: float = Field(default=90, gt=0, description="seconds for /health to answer 200")

    def describe(self) -> str:
        return (f"the gate {start_rule(self.startup_s)}. It sends "
                f"`POST /predict` requests of one record each (`{{\"records\": [row]}}`, every "
                "request a distinct perturbed test row) at a constant open-loop rate of "
                f"{self.rate:,g} requests/s over {self.connections} keep-alive connections: "
                f"{self.warmup_s:g} s of warm-up, then {self.duration_s:g} s measured. Latency "
                "counts from each request's scheduled send time, so queueing counts. It passes "
                f"when the p95 latency is below {self.p95_ms:g} ms, the measured rate of 2xx "
                f"answers is at least {pct(self.min_rate_fraction)} of {self.rate:,g}/s, and "
                f"at most {pct(self.max_error_rate)} of the requests fail (a non-2xx status, "
                f"a connection error, or no answer within {self.request_timeout_s:g} s); one "
                f"response in {self.check_every} must also agree with the saved `{self.model}` "
                f"(equal labels, probabilities or predictions within {self.tol:g}).")


def api_load(ctx: CheckContext, params: ApiLoadParams) -> CheckResult:
    """Every request a distinct gate-made row (a perturbed test row), so no cache of known
    answers helps; a sample of the responses served under load must agree with the model."""
    from mlpipe_flow.checks import api_probe
    from mlpipe_flow.checks.artifacts import ProbeError, run_model
    from mlpipe_flow.checks.loadgen import run_load

    try:
        meta = json.loads((ctx.workspace / "artifacts" / "model_meta.json")
                          .read_text(encoding="utf-8"))
        features = [str(c) for c in meta["feature_columns"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return result("failed", f"cannot read artifacts/model_meta.json: {e}")
    n = max(1, int((params.warmup_s + params.duration_s) * params.rate))
    ran: dict[str, Any] = {}

    def prepare() -> None:  # while the API starts
        try:
            probe = api_probe.load_rows(ctx.workspace / "data" / "splits", features, n)
        except (OSError, ValueError, KeyError, TypeError) as e:
            ran["error"] = f"cannot make load rows from the splits: {type(e).__name__}: {e}"
            return
        ran["bodies"] = [json.dumps({"records": [r]}).encode() for r in probe.records()]
        ran["sampled"] = idx = list(range(0, n, params.check_every))
        dtypes = {c: ("number" if c in probe.numeric else "text") for c in features}
        try:
            ran["model"] = run_model(ctx, params.model, features, dtypes, [
                {"op": "predict", "frame": probe.frame.iloc[idx], "proba": True}])
        except ProbeError as e:
            ran["error"] = f"the gate could not run the saved model: {e}"

    keep: dict[int, bytes] = {}
    try:
        with running_api(ctx, params.startup_s, while_starting=prepare) as api:
            if "error" in ran:
                return result("failed", ran["error"])
            load = run_load("127.0.0.1", api.port, "/predict", ran["bodies"], rate=params.rate,
                            duration_s=params.duration_s, warmup_s=params.warmup_s,
                            connections=params.connections, keep=keep,
                            keep_every=params.check_every, timeout_s=params.request_timeout_s)
    except ApiDown as e:
        return result("failed", str(e))
    served = _served_under_load(ran, keep, meta, params.tol)
    ev = {**load.evidence(), "p95_limit_ms": params.p95_ms, "distinct_requests": n,
          "min_rate": params.rate * params.min_rate_fraction, "warmup_s": params.warmup_s,
          **served}
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
    if served["answers_disagreeing"]:
        problems.append(f"{served['answers_disagreeing']} of {served['answers_compared']} "
                        f"sampled answers disagree with the saved model")
    if problems:
        return result("failed", f"{summary}: {'; '.join(problems)}", **ev)
    return result("passed", f"{summary}; {served['answers_compared']} sampled answers agree "
                  f"with the saved model", **ev)


def _served_under_load(ran: dict[str, Any], keep: dict[int, bytes], meta: dict[str, Any],
                       tol: float) -> dict[str, int]:
    """Compare the kept responses with the model's outputs on the same rows."""
    out = ran["model"]
    model_out = out["results"][0]
    regression = meta.get("problem_type") == "regression"
    classes = None if regression else [label(c) for c in (out.get("classes") or [])]
    rows, pred, proba = [], [], []
    for j, i in enumerate(ran["sampled"]):
        try:
            answer = json.loads(keep[i])
            p = answer["predictions"][0]
            q = (answer.get("probabilities") or [None])[0]
        except (KeyError, ValueError, TypeError, IndexError):
            continue  # not answered (an error the load test counts) or not JSON
        rows.append(j)
        pred.append(p)
        proba.append(q)
    subset = {"predictions": [model_out["predictions"][j] for j in rows]}
    api_proba = None
    if classes and model_out.get("probabilities") is not None:
        subset["probabilities"] = [model_out["probabilities"][j] for j in rows]
        api_proba = _probabilities(proba, len(rows), classes)
    if not rows:
        return {"answers_compared": 0, "answers_disagreeing": 0}
    cmp = _compare(subset, pred, api_proba, classes, tol)
    return {"answers_compared": len(rows), "answers_disagreeing": cmp.agree.count(False)}
