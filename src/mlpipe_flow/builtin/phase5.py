"""Built-in phase 5 (monitoring): Prometheus scrape config and alert rules (with promtool rule
tests), a Grafana dashboard, the drift detector and the monitoring guide with its runbook.

Every alert reads series the API exposes from start-up (deployment/api/main.py) and has a
threshold with a stated basis: the serving objectives of ml-spec.yaml (p95 latency, throughput),
the model's own hold-out figures (reference score, median confidence), or a share of traffic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlpipe_flow.builtin import BuiltinTask
from mlpipe_flow.builtin.workspace_io import (
    copy_templates,
    read_meta,
    read_spec,
    render_doc,
    write_text,
    write_yaml,
)
from mlpipe_flow.spec import higher_is_better

CONFIDENCE_BUCKETS = (.5, .6, .7, .8, .9, .95, .99, 1.0)  # as deployment/api/main.py declares them
JOB = "model-api"
LAT_BUCKETS = 'sum by (le) (rate(mlpipe_request_latency_seconds_bucket{endpoint="/predict"}[5m]))'
P95 = f"histogram_quantile(0.95, {LAT_BUCKETS})"
ERROR_RATE = ('sum(rate(mlpipe_requests_total{status=~"5.."}[5m])) '
              '/ clamp_min(sum(rate(mlpipe_requests_total[5m])), 1e-9)')
PREDICT_RPS = 'sum(rate(mlpipe_requests_total{endpoint="/predict"}[5m]))'
ROWS_NOW = "sum(rate(mlpipe_predictions_total[10m]))"
ROWS_BEFORE = "sum(rate(mlpipe_predictions_total[30m] offset 10m))"
CONF_MEDIAN = ("histogram_quantile(0.5, sum by (le) "
               "(rate(mlpipe_prediction_confidence_bucket[30m])))")


def prometheus_config() -> dict[str, Any]:
    return {"global": {"scrape_interval": "15s", "evaluation_interval": "30s"},
            "rule_files": ["../alerts/alerts.yml"],
            "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics",
                                "static_configs": [{"targets": [f"{JOB}:80"]}]}]}


def histogram_median(values: list[float], buckets: tuple[float, ...]) -> float:
    """The median Prometheus' histogram_quantile reports for these observations: linear
    interpolation inside the bucket that holds the middle rank."""
    rank = 0.5 * len(values)
    prev_upper, prev_cum = 0.0, 0
    for upper in buckets:
        cum = sum(1 for v in values if v <= upper)
        if cum >= rank and cum > prev_cum:
            return prev_upper + (upper - prev_upper) * (rank - prev_cum) / (cum - prev_cum)
        prev_upper, prev_cum = upper, cum
    return buckets[-1]


def confidence_floor(ws: Path, meta: dict[str, Any]) -> dict[str, float] | None:
    """The median top-class probability on the test split (as the confidence histogram reports
    it), chance level (1/classes), and the alert floor: a quarter of the way from chance to the
    hold-out median. None for regression."""
    if meta["problem_type"] == "regression":
        return None
    import joblib
    import pandas as pd

    model = joblib.load(ws / "artifacts" / "model.joblib")
    test = pd.read_csv(ws / "data" / "splits" / "test.csv")
    proba = model.predict_proba(test[meta["feature_columns"]])
    median = histogram_median([float(p) for p in proba.max(axis=1)], CONFIDENCE_BUCKETS)
    chance = 1.0 / proba.shape[1]
    return {"median": round(median, 3), "chance": round(chance, 3),
            "floor": round(chance + 0.25 * (median - chance), 3)}


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str,
           anchor: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description,
                            "runbook_url": f"monitoring-guide.md#{anchor}"}}


def alert_rules(meta: dict[str, Any], p95_s: float, rps: float,
                conf: dict[str, float] | None) -> dict[str, Any]:
    metric = meta.get("primary_metric") or "score"
    if not higher_is_better(metric):
        acc = "mlpipe_model_live_score > 1.10 * mlpipe_model_reference_score"
        acc_text = f"{metric} on labelled production data is >10% worse than on the hold-out split"
    else:
        acc = "mlpipe_model_live_score < 0.95 * mlpipe_model_reference_score"
        acc_text = f"{metric} on labelled production data is >5% below the hold-out score"
    rules = [
        _alert("ModelApiHighLatencyP95", f"{P95} > {p95_s:g}", "5m", "page",
               f"p95 latency of /predict above {p95_s * 1000:.0f} ms",
               "The serving objective of ml-spec.yaml is broken for 5 minutes.", "high-latency"),
        _alert("ModelApiHighErrorRate", f"{ERROR_RATE} > 0.01", "5m", "page",
               "more than 1% of requests fail with 5xx",
               "Server errors, not client errors (422/404 do not count).", "high-error-rate"),
        _alert("ModelApiTrafficNearCapacity", f"{PREDICT_RPS} > {0.8 * rps:g}", "10m", "ticket",
               f"/predict traffic above 80% of the {rps:g} req/s the service was load-tested for",
               "Scale out before the latency objective breaks.", "traffic-near-capacity"),
        _alert("ModelPredictionVolumeDrop", f"{ROWS_NOW} < 0.2 * {ROWS_BEFORE}", "10m", "ticket",
               "predictions fell below 20% of the rate of the half hour before",
               "Clients stopped calling the model, or requests fail before the model.",
               "prediction-volume-drop"),
        _alert("ModelAccuracyDrop", acc, "0m", "page", acc_text,
               "From the drift job's last labelled sample (mlpipe_model_live_score).", "accuracy-drop"),
        _alert("ModelDataDrift", "max(mlpipe_drift_detected) > 0", "0m", "ticket",
               "input drift detected against the training data",
               "The drift job's last report flags at least one feature.", "data-drift"),
        _alert("ModelApiDown", f'up{{job="{JOB}"}} == 0', "2m", "page",
               "Prometheus cannot scrape the model API", "No target of the job answers /metrics.",
               "api-down"),
    ]
    if conf is not None:
        rules.insert(4, _alert(
            "ModelConfidenceDrop", f"{CONF_MEDIAN} < {conf['floor']:g}", "15m", "ticket",
            f"median prediction confidence below {conf['floor']:g} (hold-out median "
            f"{conf['median']:g}, chance {conf['chance']:g})",
            "The model is unsure about most inputs: new kinds of input, or broken features.",
            "confidence-drop"))
    return {"groups": [{"name": "model-api", "rules": rules}]}


def _annotations(rules: dict[str, Any], name: str) -> dict[str, Any]:
    rule = next(r for r in rules["groups"][0]["rules"] if r["alert"] == name)
    return {"exp_labels": {"severity": rule["labels"]["severity"]},
            "exp_annotations": rule["annotations"]}


def rule_tests(meta: dict[str, Any], rules: dict[str, Any], rps: float) -> dict[str, Any]:
    """promtool unit tests: each alert quiet on normal series and firing on its failure."""
    metric = meta.get("primary_metric") or "score"
    ref, bad = (1.0, 2.0) if not higher_is_better(metric) else (0.9, 0.5)
    per_min = rps * 0.1 * 60  # 10% of capacity, per minute
    tests = [
        {"interval": "1m", "input_series": [
            {"series": f'mlpipe_requests_total{{endpoint="/predict",status="500",job="{JOB}"}}',
             "values": f"0+{per_min * 0.05:g}x30"},
            {"series": f'mlpipe_requests_total{{endpoint="/predict",status="200",job="{JOB}"}}',
             "values": f"0+{per_min:g}x30"},
            {"series": "mlpipe_drift_detected", "values": "0 0 1 1 1 1"},
            {"series": "mlpipe_model_reference_score", "values": f"{ref}x10"},
            {"series": "mlpipe_model_live_score", "values": f"NaN NaN {bad}x8"},
            {"series": f'up{{job="{JOB}",instance="{JOB}:80"}}', "values": "1 1 0 0 0 0 0"}],
         "alert_rule_test": [
             {"eval_time": "10m", "alertname": "ModelApiHighErrorRate",
              "exp_alerts": [_annotations(rules, "ModelApiHighErrorRate")]},
             {"eval_time": "1m", "alertname": "ModelDataDrift", "exp_alerts": []},
             {"eval_time": "4m", "alertname": "ModelDataDrift",
              "exp_alerts": [_annotations(rules, "ModelDataDrift")]},
             {"eval_time": "1m", "alertname": "ModelAccuracyDrop", "exp_alerts": []},
             {"eval_time": "3m", "alertname": "ModelAccuracyDrop",
              "exp_alerts": [_annotations(rules, "ModelAccuracyDrop")]},
             {"eval_time": "6m", "alertname": "ModelApiDown", "exp_alerts": [{
                 "exp_labels": {"severity": "page", "job": JOB, "instance": f"{JOB}:80"},
                 "exp_annotations": _annotations(rules, "ModelApiDown")["exp_annotations"]}]},
             {"eval_time": "10m", "alertname": "ModelApiTrafficNearCapacity", "exp_alerts": []}]},
        {"interval": "1m", "input_series": [
            {"series": f'mlpipe_requests_total{{endpoint="/predict",status="200",job="{JOB}"}}',
             "values": f"0+{per_min:g}x120"},
            {"series": "mlpipe_predictions_total",
             "values": f"0+{per_min:g}x90 {per_min * 90:g}+0x30"}],
         "alert_rule_test": [
             {"eval_time": "60m", "alertname": "ModelApiHighErrorRate", "exp_alerts": []},
             {"eval_time": "80m", "alertname": "ModelPredictionVolumeDrop", "exp_alerts": []},
             {"eval_time": "112m", "alertname": "ModelPredictionVolumeDrop",
              "exp_alerts": [_annotations(rules, "ModelPredictionVolumeDrop")]}]},
    ]
    # latency at 200 ms, traffic at 90% of capacity, every prediction at confidence <= 0.5
    lat = 'mlpipe_request_latency_seconds_bucket{endpoint="/predict",le="%s"}'
    stress = [{"series": lat % le, "values": f"0+{v:g}x40"}
              for le, v in (("0.1", 0), ("0.25", per_min), ("+Inf", per_min))]
    stress.append({"series": f'mlpipe_requests_total{{endpoint="/predict",status="200",job="{JOB}"}}',
                   "values": f"0+{rps * 0.9 * 60:g}x40"})
    checks = [{"eval_time": "15m", "alertname": "ModelApiHighLatencyP95",
               "exp_alerts": [_annotations(rules, "ModelApiHighLatencyP95")]},
              {"eval_time": "20m", "alertname": "ModelApiTrafficNearCapacity",
               "exp_alerts": [_annotations(rules, "ModelApiTrafficNearCapacity")]}]
    if any(r["alert"] == "ModelConfidenceDrop" for r in rules["groups"][0]["rules"]):
        stress += [{"series": f'mlpipe_prediction_confidence_bucket{{le="{le}"}}',
                    "values": f"0+{per_min:g}x40"} for le in ("0.5", "0.6", "1.0", "+Inf")]
        checks.append({"eval_time": "25m", "alertname": "ModelConfidenceDrop",
                       "exp_alerts": [_annotations(rules, "ModelConfidenceDrop")]})
    tests.append({"interval": "1m", "input_series": stress, "alert_rule_test": checks})
    return {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests}


def panel(pid: int, title: str, exprs: list[tuple[str, str]], unit: str, y: int,
          x: int) -> dict[str, Any]:
    return {"id": pid, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"expr": e, "legendFormat": legend, "refId": chr(65 + i)}
                        for i, (e, legend) in enumerate(exprs)]}


def dashboard(meta: dict[str, Any], classifier: bool) -> dict[str, Any]:
    lat = 'sum by (le) (rate(mlpipe_request_latency_seconds_bucket{endpoint="/predict"}[5m]))'
    model_panels: list[tuple[str, list[tuple[str, str]], str]] = []
    if classifier:
        model_panels.append(("Prediction confidence (median, p10)", [
            (CONF_MEDIAN.replace("30m", "5m"), "median"),
            ("histogram_quantile(0.1, sum by (le) (rate(mlpipe_prediction_confidence_bucket[5m])))",
             "p10")], "percentunit"))
    model_panels += [
        ("Feature drift (PSI) and drift detected", [
            ("mlpipe_feature_drift_psi", "{{feature}}"), ("max(mlpipe_drift_detected)", "drift")],
         "none"),
        (f"Model quality ({meta.get('primary_metric')}) and version", [
            ("mlpipe_model_live_score", "live"), ("mlpipe_model_reference_score", "hold-out"),
            ("mlpipe_model_version_info", "version {{version}}")], "none")]
    specs: list[tuple[str, list[tuple[str, str]], str]] = [
        ("Latency /predict (p50, p95, p99)",
         [(f"histogram_quantile({q}, {lat})", f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)], "s"),
        ("Requests/s by endpoint and status",
         [("sum by (endpoint, status) (rate(mlpipe_requests_total[1m]))", "{{endpoint}} {{status}}")],
         "reqps"),
        ("Error rate (5xx share) and client errors (4xx share)", [
            (ERROR_RATE, "5xx"),
            ('sum(rate(mlpipe_requests_total{status=~"4.."}[5m])) '
             '/ clamp_min(sum(rate(mlpipe_requests_total[5m])), 1e-9)', "4xx")], "percentunit"),
        ("Prediction volume (rows/s) and rows per batch", [
            ("sum(rate(mlpipe_predictions_total[1m]))", "rows/s"),
            ("histogram_quantile(0.5, sum by (le) (rate(mlpipe_batch_rows_bucket[5m])))",
             "rows per batch (median)")], "none"),
        *model_panels]
    panels = [panel(i + 1, title, exprs, unit, 8 * (i // 2), 12 * (i % 2))
              for i, (title, exprs, unit) in enumerate(specs)]
    return {"title": "Model API", "uid": "model-api", "schemaVersion": 39, "version": 1,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
            "templating": {"list": [{"name": "datasource", "type": "datasource",
                                     "query": "prometheus"}]},
            "panels": panels}


def run(task: BuiltinTask) -> None:
    ws = Path.cwd()
    spec = read_spec(ws)
    meta = read_meta(ws)
    serving = spec.get("serving") or {}
    p95_ms = float(serving.get("latency_p95_ms") or 100)
    rps = float(serving.get("throughput_rps") or 100)
    conf = confidence_floor(ws, meta)
    rules = alert_rules(meta, p95_ms / 1000, rps, conf)
    copy_templates(ws, ["monitoring/drift_detection"])
    write_yaml(ws / "monitoring" / "prometheus" / "prometheus.yml", [prometheus_config()])
    write_yaml(ws / "monitoring" / "alerts" / "alerts.yml", [rules])
    write_yaml(ws / "monitoring" / "alerts" / "alerts_test.yml", [rule_tests(meta, rules, rps)])
    write_text(ws / "monitoring" / "grafana" / "dashboards" / "model-api.json",
               json.dumps(dashboard(meta, conf is not None), indent=2) + "\n")
    write_text(ws / "monitoring-guide.md", render_doc("monitoring-guide.md.j2", {
        "meta": meta, "p95_ms": p95_ms, "rps": rps, "conf": conf, "job": JOB,
        "alerts": {r["alert"]: r for r in rules["groups"][0]["rules"]}}))
