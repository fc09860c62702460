"""Built-in phase 5 (monitoring): Prometheus scrape config and alert rules (with promtool rule
tests), a Grafana dashboard, the drift detector and the monitoring guide with its runbook."""

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

LOWER_IS_BETTER = {"rmse", "mae", "mse", "log_loss"}
P95 = ('histogram_quantile(0.95, sum by (le) '
       '(rate(mlpipe_request_latency_seconds_bucket{endpoint="/predict"}[5m])))')
ERROR_RATE = ('sum(rate(mlpipe_requests_total{status=~"5.."}[5m])) '
              '/ clamp_min(sum(rate(mlpipe_requests_total[5m])), 1e-9)')


def prometheus_config() -> dict[str, Any]:
    return {"global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
            "rule_files": ["../alerts/alerts.yml"],
            "scrape_configs": [{"job_name": "model-api", "metrics_path": "/metrics",
                                "static_configs": [{"targets": ["model-api:80"]}]}]}


def alert_rules(meta: dict[str, Any], p95_s: float) -> dict[str, Any]:
    metric = meta.get("primary_metric") or "score"
    if metric in LOWER_IS_BETTER:
        acc = "mlpipe_model_live_score > 1.10 * mlpipe_model_reference_score"
        acc_text = f"{metric} on labelled production data is >10% worse than on the hold-out split"
    else:
        acc = "mlpipe_model_live_score < 0.95 * mlpipe_model_reference_score"
        acc_text = f"{metric} on labelled production data is >5% below the hold-out score"
    rule = [
        {"alert": "ModelApiHighLatencyP95", "expr": f"{P95} > {p95_s}", "for": "5m",
         "labels": {"severity": "page"},
         "annotations": {"summary": f"p95 latency of /predict above {p95_s * 1000:.0f} ms",
                         "runbook": "monitoring-guide.md#high-latency"}},
        {"alert": "ModelApiHighErrorRate", "expr": f"{ERROR_RATE} > 0.01", "for": "5m",
         "labels": {"severity": "page"},
         "annotations": {"summary": "more than 1% of requests fail with 5xx",
                         "runbook": "monitoring-guide.md#high-error-rate"}},
        {"alert": "ModelDataDrift", "expr": "max(mlpipe_drift_detected) == 1", "for": "0m",
         "labels": {"severity": "ticket"},
         "annotations": {"summary": "input drift detected (PSI/KS) against the training data",
                         "runbook": "monitoring-guide.md#data-drift"}},
        {"alert": "ModelAccuracyDrop", "expr": acc, "for": "0m",
         "labels": {"severity": "page"},
         "annotations": {"summary": acc_text, "runbook": "monitoring-guide.md#accuracy-drop"}},
        {"alert": "ModelApiDown", "expr": 'up{job="model-api"} == 0', "for": "2m",
         "labels": {"severity": "page"},
         "annotations": {"summary": "Prometheus cannot scrape the model API",
                         "runbook": "monitoring-guide.md#api-down"}},
    ]
    return {"groups": [{"name": "model-api", "rules": rule}]}


def rule_tests(meta: dict[str, Any]) -> dict[str, Any]:
    metric = meta.get("primary_metric") or "score"
    ref, bad = (1.0, 2.0) if metric in LOWER_IS_BETTER else (0.9, 0.5)
    return {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": [
        {"interval": "1m",
         "input_series": [
             {"series": 'mlpipe_requests_total{endpoint="/predict",status="500"}',
              "values": "0+10x20"},
             {"series": 'mlpipe_requests_total{endpoint="/predict",status="200"}',
              "values": "0+100x20"},
             {"series": "mlpipe_drift_detected", "values": "0 0 1 1 1 1"},
             {"series": "mlpipe_model_reference_score", "values": f"{ref}x10"},
             {"series": "mlpipe_model_live_score", "values": f"{bad}x10"}],
         "alert_rule_test": [
             {"eval_time": "10m", "alertname": "ModelApiHighErrorRate", "exp_alerts": [
                 {"exp_labels": {"severity": "page"}, "exp_annotations": {
                     "summary": "more than 1% of requests fail with 5xx",
                     "runbook": "monitoring-guide.md#high-error-rate"}}]},
             {"eval_time": "1m", "alertname": "ModelDataDrift", "exp_alerts": []},
             {"eval_time": "4m", "alertname": "ModelDataDrift", "exp_alerts": [
                 {"exp_labels": {"severity": "ticket"}, "exp_annotations": {
                     "summary": "input drift detected (PSI/KS) against the training data",
                     "runbook": "monitoring-guide.md#data-drift"}}]},
             {"eval_time": "5m", "alertname": "ModelApiHighLatencyP95", "exp_alerts": []}]},
        {"interval": "1m",
         "input_series": [
             {"series": 'mlpipe_requests_total{endpoint="/predict",status="200"}',
              "values": "0+100x20"}],
         "alert_rule_test": [
             {"eval_time": "10m", "alertname": "ModelApiHighErrorRate", "exp_alerts": []}]},
    ]}


def panel(pid: int, title: str, exprs: list[tuple[str, str]], unit: str, y: int,
          x: int) -> dict[str, Any]:
    return {"id": pid, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"expr": e, "legendFormat": legend, "refId": chr(65 + i)}
                        for i, (e, legend) in enumerate(exprs)]}


def dashboard(meta: dict[str, Any]) -> dict[str, Any]:
    lat = 'sum by (le) (rate(mlpipe_request_latency_seconds_bucket{endpoint="/predict"}[5m]))'
    panels = [
        panel(1, "Latency /predict (p50, p95, p99)",
              [(f"histogram_quantile({q}, {lat})", f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)],
              "s", 0, 0),
        panel(2, "Throughput (requests/s by status)",
              [("sum by (status) (rate(mlpipe_requests_total[1m]))", "{{status}}")], "reqps", 0, 12),
        panel(3, "Error rate (5xx share)", [(ERROR_RATE, "errors")], "percentunit", 8, 0),
        panel(4, "Prediction confidence (median, p10)",
              [("histogram_quantile(0.5, sum by (le) (rate(mlpipe_prediction_confidence_bucket[5m])))",
                "median"),
               ("histogram_quantile(0.1, sum by (le) (rate(mlpipe_prediction_confidence_bucket[5m])))",
                "p10")], "percentunit", 8, 12),
        panel(5, "Feature drift (PSI)", [("mlpipe_feature_drift_psi", "{{feature}}"),
                                        ("mlpipe_drift_detected", "drift detected")], "none", 16, 0),
        panel(6, f"Model quality ({meta.get('primary_metric')}) and version",
              [("mlpipe_model_live_score", "live"), ("mlpipe_model_reference_score", "hold-out"),
               ("mlpipe_model_version_info", "version {{version}}"),
               ("histogram_quantile(0.5, sum by (le) (rate(mlpipe_batch_rows_bucket[5m])))",
                "rows per batch")], "none", 16, 12),
    ]
    return {"title": "Model API", "uid": "model-api", "schemaVersion": 39, "version": 1,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
            "templating": {"list": [{"name": "datasource", "type": "datasource",
                                     "query": "prometheus"}]},
            "panels": panels}


def run(task: BuiltinTask) -> None:
    ws = Path.cwd()
    spec = read_spec(ws)
    meta = read_meta(ws)
    p95_ms = float((spec.get("serving") or {}).get("latency_p95_ms", 100))
    copy_templates(ws, ["monitoring/drift_detection/detect_drift.py"])
    write_yaml(ws / "monitoring" / "prometheus" / "prometheus.yml", [prometheus_config()])
    write_yaml(ws / "monitoring" / "alerts" / "alerts.yml", [alert_rules(meta, p95_ms / 1000)])
    write_yaml(ws / "monitoring" / "alerts" / "alerts_test.yml", [rule_tests(meta)])
    write_text(ws / "monitoring" / "grafana" / "dashboards" / "model-api.json",
               json.dumps(dashboard(meta), indent=2) + "\n")
    write_text(ws / "monitoring-guide.md", render_doc("monitoring-guide.md.j2", {
        "meta": meta, "p95_ms": p95_ms}))
