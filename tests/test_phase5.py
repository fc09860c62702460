"""Built-in phase 5 and the monitoring gate's measured checks, passing and failing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import mlpipe
from ml_workspace import built, check, copy
from mlpipe_flow.checks.monitoring_checks import exposed_metrics, promql_metrics


@pytest.fixture(scope="module")
def ws5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built(tmp_path_factory.mktemp("p5") / "ws", ["phase4", "phase5"])


def test_promql_metric_names() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, endpoint) (rate(x_seconds_bucket{a="b"}[5m])))'
            ' / clamp_min(sum(rate(req_total[1m])) without (status), 1e-9) > 0.1 and up == 0')
    assert promql_metrics(expr) == {"x_seconds_bucket", "req_total", "up"}


def test_exposed_metric_names_include_histogram_and_counter_suffixes() -> None:
    text = ("# TYPE h histogram\nh_bucket{le=\"1\"} 1\n# TYPE c_total counter\n"
            "# TYPE g gauge\n")
    names = exposed_metrics(text)
    assert {"h_bucket", "h_sum", "h_count", "c_total", "g"} <= names


def test_phase5_gate_passes(ws5: Path) -> None:
    res = mlpipe("gate", "phase5", "--workspace", str(ws5), "--json", timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    report = json.loads(res.stdout)
    rules = next(c for c in report["checks"] if c["id"] == "prometheus-rules")
    assert rules["evidence"]["validator"] == ("promtool" if shutil.which("promtool")
                                              else "structural parser (promtool not installed)")


def test_dashboard_metric_not_exposed_fails(ws5: Path, tmp_path: Path) -> None:
    ws = copy(ws5, tmp_path / "dash")
    p = ws / "monitoring" / "grafana" / "dashboards" / "model-api.json"
    dash = json.loads(p.read_text())
    dash["panels"][0]["targets"].append({"expr": "rate(model_gpu_seconds_total[5m])",
                                         "refId": "Z"})
    p.write_text(json.dumps(dash))
    r = check(ws, "metrics_exposed")
    assert r.status == "failed" and "model_gpu_seconds_total" in r.message, r
    assert r.evidence["missing"] == {"model_gpu_seconds_total":
                                     ["monitoring/grafana/dashboards/model-api.json"]}


def test_drift_detector_that_never_fires_fails(ws5: Path, tmp_path: Path) -> None:
    ws = copy(ws5, tmp_path / "drift")
    (ws / "monitoring" / "drift_detection" / "detect_drift.py").write_text(
        "import argparse, json\n"
        "ap = argparse.ArgumentParser(); ap.add_argument('--current'); ap.add_argument('--report')\n"
        "a = ap.parse_args()\n"
        "open(a.report, 'w').write(json.dumps({'drift_detected': False}))\n")
    r = check(ws, "drift_drill")
    assert r.status == "failed" and "did not flag" in r.message, r


def test_invalid_alert_rule_fails(ws5: Path, tmp_path: Path) -> None:
    ws = copy(ws5, tmp_path / "rules")
    p = ws / "monitoring" / "alerts" / "alerts.yml"
    p.write_text(p.read_text().replace("max(mlpipe_drift_detected) == 1",
                                       "max(mlpipe_drift_detected == 1"))
    r = check(ws, "prometheus_rules")
    assert r.status == "failed", r


def test_structural_validation_without_promtool(ws5: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                               if not (Path(p) / "promtool").exists()))
    r = check(ws5, "prometheus_rules")
    assert r.status == "passed" and "promtool not installed" in r.message
    assert r.evidence["rule_tests"] == "not run: promtool not installed"
    ws = copy(ws5, tmp_path / "rules2")
    p = ws / "monitoring" / "alerts" / "alerts.yml"
    p.write_text(p.read_text().replace("max(mlpipe_drift_detected) == 1",
                                       "max(mlpipe_drift_detected == 1"))
    assert check(ws, "prometheus_rules").status == "failed"
