"""Phase-5 mutations: consistent lies on a workspace that passes all six gates, each caught by
the check that measures it (tests/mutations.py).

Each edits every file it touches so that only a measurement catches it: the rule and the
agent's own rule tests together, the API and the dashboard together, a detector with a
docstring that matches what it does. The unmutated workspace passing is the `passing` fixture.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow

ALERTS = "monitoring/alerts/alerts.yml"
ALERT_TESTS = "monitoring/alerts/alerts_test.yml"
DASHBOARD = "monitoring/grafana/dashboards/model-api.json"
DETECTOR = "monitoring/drift_detection/detect_drift.py"
API = "deployment/api/main.py"
GUIDE = "monitoring-guide.md"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def set_rule(mutant: Any, alert: str, **fields: Any) -> None:
    def edit(doc: dict[str, Any]) -> None:
        for group in doc["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    rule.update(fields)
    mutant.edit_yaml(ALERTS, edit)


def drop_rule(mutant: Any, alert: str) -> None:
    """Remove an alert, its promtool tests and its runbook entry: a smaller, consistent set."""
    def rules(doc: dict[str, Any]) -> None:
        for group in doc["groups"]:
            group["rules"] = [r for r in group["rules"] if r.get("alert") != alert]
    mutant.edit_yaml(ALERTS, rules)

    def tests(doc: dict[str, Any]) -> None:
        for t in doc["tests"]:
            t["alert_rule_test"] = [a for a in t.get("alert_rule_test", []) if a["alertname"] != alert]
    mutant.edit_yaml(ALERT_TESTS, tests)
    guide = mutant.text(GUIDE)
    mutant.write(GUIDE, re.sub(rf"### [^\n]*\n`{alert}`.*?(?=\n### |\Z)", "", guide, flags=re.S))


# --- prometheus-rules: promtool and the alert drill ---------------------------------------------
@needs_promtool
def test_invalid_promql_in_an_alert(mutant) -> None:  # type: ignore[no-untyped-def]
    set_rule(mutant, "ModelDataDrift", expr="max(mlpipe_drift_detected > 0")
    mutant.assert_caught("phase5", "prometheus-rules", "promtool check rules", "ModelDataDrift",
                         "parse")


@needs_promtool
def test_alert_threshold_no_traffic_reaches(mutant) -> None:  # type: ignore[no-untyped-def]
    """p95 over 5 s while the API's largest latency bucket is 2.5 s: histogram_quantile never
    gets there. The agent's own test shows it firing on a 10 s bucket the API does not have."""
    p95 = ('histogram_quantile(0.95, sum by (le) '
           '(rate(mlpipe_request_latency_seconds_bucket{endpoint="/predict"}[5m]))) > 5')
    set_rule(mutant, "ModelApiHighLatencyP95", expr=p95)
    mutant.replace(ALERTS, "p95 latency of /predict above 100 ms", "p95 latency of /predict above 5 s")
    mutant.replace(ALERT_TESTS, 'le="0.25"', 'le="10"')
    mutant.replace(ALERT_TESTS, "p95 latency of /predict above 100 ms", "p95 latency of /predict above 5 s")
    mutant.assert_caught("phase5", "prometheus-rules", "ModelApiHighLatencyP95", "never fired")


@needs_promtool
def test_alert_on_a_label_value_nothing_emits(mutant) -> None:  # type: ignore[no-untyped-def]
    """The error alert selects status="5xx" (the API labels codes, "500"); the agent's tests
    feed it "5xx" series, so they pass."""
    expr = ('sum(rate(mlpipe_requests_total{status="5xx"}[5m])) '
            '/ clamp_min(sum(rate(mlpipe_requests_total[5m])), 1e-9) > 0.01')
    set_rule(mutant, "ModelApiHighErrorRate", expr=expr)
    mutant.replace(ALERT_TESTS, 'status="500"', 'status="5xx"')
    mutant.assert_caught("phase5", "prometheus-rules", "ModelApiHighErrorRate", "never fired")


@needs_promtool
def test_alert_that_fires_on_healthy_traffic(mutant) -> None:  # type: ignore[no-untyped-def]
    """A latency alert at 0.1 ms: 'fires' in every test, and on the API's normal traffic."""
    p95 = ('histogram_quantile(0.95, sum by (le) '
           '(rate(mlpipe_request_latency_seconds_bucket{endpoint="/predict"}[5m]))) > 0.0001')
    set_rule(mutant, "ModelApiHighLatencyP95", expr=p95)
    mutant.assert_caught("phase5", "prometheus-rules", "ModelApiHighLatencyP95", "healthy")


@needs_promtool
def test_no_latency_alert(mutant) -> None:  # type: ignore[no-untyped-def]
    drop_rule(mutant, "ModelApiHighLatencyP95")
    mutant.assert_caught("phase5", "prometheus-rules", "no alert fires when latency")


@needs_promtool
def test_rule_file_not_loaded_by_prometheus(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.edit_yaml("monitoring/prometheus/prometheus.yml",
                     lambda cfg: cfg.update(rule_files=["../alerts/*.rules.yml"]))
    mutant.assert_caught("phase5", "prometheus-rules", "not loaded")


@needs_promtool
def test_prometheus_scrapes_a_port_the_service_does_not_expose(mutant) -> None:  # type: ignore[no-untyped-def]
    def edit(cfg: dict[str, Any]) -> None:
        cfg["scrape_configs"][0]["static_configs"][0]["targets"] = ["model-api:8080"]
    mutant.edit_yaml("monitoring/prometheus/prometheus.yml", edit)
    mutant.assert_caught("phase5", "prometheus-rules", "model-api:8080", "listens on")


@needs_promtool
def test_rule_unit_tests_deleted(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.path(ALERT_TESTS).unlink()
    mutant.assert_caught("phase5", "prometheus-rules", "no rule unit tests")


@needs_promtool
def test_rule_tests_that_never_show_an_alert_firing(mutant) -> None:  # type: ignore[no-untyped-def]
    """The agent's own tests reduced to 'nothing fires at time 0': promtool passes them."""
    names = [r["alert"] for g in yaml.safe_load(mutant.text(ALERTS))["groups"]
             for r in g["rules"]]

    def edit(doc: dict[str, Any]) -> None:
        doc["tests"] = [{"interval": "1m", "input_series": [],
                         "alert_rule_test": [{"eval_time": "0m", "alertname": a, "exp_alerts": []}
                                             for a in names]}]
    mutant.edit_yaml(ALERT_TESTS, edit)
    mutant.assert_caught("phase5", "prometheus-rules", "never show", "firing")


@needs_promtool
def test_rule_tests_against_a_copy_of_the_rules(mutant) -> None:  # type: ignore[no-untyped-def]
    """The tests run on an easier copy kept outside monitoring/alerts/, not on what Prometheus
    loads."""
    mutant.write("monitoring/rules-under-test/alerts.yml", mutant.text(ALERTS))
    mutant.edit_yaml(ALERT_TESTS, lambda doc: doc.update(rule_files=["../rules-under-test/alerts.yml"]))
    mutant.assert_caught("phase5", "prometheus-rules", "not a rule file prometheus.yml loads")


@needs_promtool
def test_prometheus_scrapes_the_wrong_path(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.edit_yaml("monitoring/prometheus/prometheus.yml",
                     lambda cfg: cfg["scrape_configs"][0].update(metrics_path="/stats"))
    mutant.assert_caught("phase5", "prometheus-rules", "scrapes /stats")


def test_rules_are_not_passed_without_promtool(mutant, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                               if not (Path(p) / "promtool").exists()))
    got = mutant.assert_caught("phase5", "prometheus-rules", "promtool is not installed")
    assert got["status"] == "error"


# --- metrics-exposed: samples, and movement under the gate's traffic ------------------------
INC = "REQUESTS.labels(endpoint=route, status=status[0], **SERVING_LABELS).inc()"


def test_counter_declared_but_never_updated(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(API, INC, INC.removesuffix(".inc()"))
    mutant.assert_caught("phase5", "metrics-exposed", "never moved", "mlpipe_requests_total")


def test_histogram_declared_but_never_updated(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(API, "                confidence.observe(c)", "                pass")
    mutant.assert_caught("phase5", "metrics-exposed", "never moved", "mlpipe_prediction_confidence")


def test_gauge_with_a_type_line_only(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(API, 'live.add_metric([], float(score) if isinstance(score, (int, float)) '
                        'else float("nan"))',
                   'if isinstance(score, (int, float)):\n            live.add_metric([], float(score))')
    mutant.assert_caught("phase5", "metrics-exposed", "no sample", "mlpipe_model_live_score")


def test_request_counter_that_skips_failed_requests(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(API, "            " + INC, "            if status[0] == \"200\":\n                " + INC)
    mutant.assert_caught("phase5", "metrics-exposed", "no counter", "rose by")


def test_request_counter_without_status(mutant) -> None:  # type: ignore[no-untyped-def]
    """Every request counted as 200: the 422s the gate sends land in the good series."""
    mutant.replace(API, INC, INC.replace("status=status[0]", 'status="200"'))
    mutant.assert_caught("phase5", "metrics-exposed", "cannot be told apart")


# --- grafana ---------------------------------------------------------------------------------
@needs_promtool
def test_dashboard_with_no_panels(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.edit_json(DASHBOARD, lambda d: d.update(panels=[]))
    mutant.assert_caught("phase5", "grafana", "no panels")


def test_dashboard_that_is_not_json(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.write(DASHBOARD, mutant.text(DASHBOARD)[:-200])
    mutant.assert_caught("phase5", "grafana", "not valid JSON")


@needs_promtool
def test_dashboard_with_invalid_promql(mutant) -> None:  # type: ignore[no-untyped-def]
    def edit(d: dict[str, Any]) -> None:
        d["panels"][1]["targets"][0]["expr"] = "sum by (status (rate(mlpipe_requests_total[1m]))"
    mutant.edit_json(DASHBOARD, edit)
    mutant.assert_caught("phase5", "grafana", "invalid PromQL")


@needs_promtool
def test_dashboard_without_latency_or_errors(mutant) -> None:  # type: ignore[no-untyped-def]
    def edit(d: dict[str, Any]) -> None:
        d["panels"] = [p for p in d["panels"] if not re.search(r"latency|error", p["title"], re.I)]
    mutant.edit_json(DASHBOARD, edit)
    mutant.assert_caught("phase5", "grafana", "no panel for latency, errors")


# --- drift-drill ----------------------------------------------------------------------------
def test_drift_detector_that_skips_categorical_features(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(DETECTOR, "    stats: dict[str, dict[str, Any]] = {}\n",
                   "    features = [f for f in features if reference[f].dtype.kind in \"biuf\"]\n"
                   "    stats: dict[str, dict[str, Any]] = {}\n")
    mutant.replace(DETECTOR, "Per feature, a two-sample test", "Per numeric feature, a two-sample test")
    mutant.assert_caught("phase5", "drift-drill", "did not flag", "moved to")


def test_drift_detector_that_needs_four_features_at_once(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(DETECTOR, '"drift_detected": bool(drifted),', '"drift_detected": len(drifted) >= 4,')
    mutant.assert_caught("phase5", "drift-drill", "did not flag")


def test_drift_detector_that_fires_on_clean_data(mutant) -> None:  # type: ignore[no-untyped-def]
    """No correction, no effect floor, a lax threshold: clean held-out samples 'drift'."""
    mutant.replace(DETECTOR, "ALPHA = 0.001", "ALPHA = 0.5")
    mutant.replace(DETECTOR, "MIN_EFFECT = 0.1", "MIN_EFFECT = 0.0")
    mutant.replace(DETECTOR, "min(1.0, p * max(tested, 1))", "p")
    mutant.assert_caught("phase5", "drift-drill", "fired on clean")


def test_drift_detector_that_flags_every_feature(mutant) -> None:  # type: ignore[no-untyped-def]
    """Names 'the' drifted feature by flagging all of them once anything drifts."""
    mutant.replace(DETECTOR, "    drifted = [n for n, s in clean.items() if s[\"drift\"]]\n",
                   "    drifted = [n for n, s in clean.items() if s[\"drift\"]]\n"
                   "    if drifted:\n"
                   "        for s in clean.values():\n"
                   "            s[\"drift\"] = True\n"
                   "        drifted = list(clean)\n")
    mutant.assert_caught("phase5", "drift-drill", "unshifted features")


def test_drift_command_line_that_always_exits_0(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(DETECTOR, "    return 1 if report[\"drift_detected\"] else 0\n", "    return 0\n")
    mutant.replace(DETECTOR, "Exit status: 0 no drift, 1 drift detected, 2 bad input, 3 no "
                   "production data.", "Exit status: 0 when the report was written, 2 bad input.")
    mutant.assert_caught("phase5", "drift-drill", "command line", "expected exit 1")


# --- runbook ----------------------------------------------------------------------------------
def test_runbook_that_says_todo(mutant) -> None:  # type: ignore[no-untyped-def]
    guide = mutant.text(GUIDE)
    mutant.write(GUIDE, re.sub(r"(`ModelDataDrift`:.*?)(?=\n### )", r"\1\nTODO: write the steps.",
                               guide, flags=re.S))
    mutant.assert_caught("phase5", "runbook", "TODO")


def test_runbook_missing_an_alert(mutant) -> None:  # type: ignore[no-untyped-def]
    guide = mutant.text(GUIDE)
    mutant.write(GUIDE, re.sub(r"### Data drift\n.*?(?=\n### )", "", guide, flags=re.S))
    mutant.assert_caught("phase5", "runbook", "no entry", "ModelDataDrift")


def test_runbook_entries_without_steps(mutant) -> None:  # type: ignore[no-untyped-def]
    guide = mutant.text(GUIDE)
    head, book = guide.split("# On-call runbook", 1)
    entries = re.findall(r"### ([^\n]*)\n`(\w+)`", book)
    thin = "".join(f"### {title}\n`{name}`: investigate and fix it; roll back if needed.\n\n"
                   for title, name in entries)
    mutant.write(GUIDE, head + "# On-call runbook\n\n" + thin)
    mutant.assert_caught("phase5", "runbook", "without substance")
