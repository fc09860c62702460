"""Built-in phase 5 and the monitoring gate's measured checks, passing and failing.

The mutation suite (test_mutations_phase5.py) makes consistent lies on a whole run; these tests
cover the gate's parsers, the built-in drift detector's statistics, and the gate on the Telco
data (a phase-3 workspace built quickly by ml_workspace)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO
from ml_workspace import built, check, copy
from mlpipe_flow.checks.alert_drill import literals
from mlpipe_flow.checks.promtext import (
    grafana_to_promql,
    lookback_s,
    matches,
    parse_exposition,
    promql_metrics,
    selectors,
)
from mutations import passed_report

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


@pytest.fixture(scope="module")
def ws5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built(tmp_path_factory.mktemp("p5") / "ws", ["phase4", "phase5"])


# --- parsers -----------------------------------------------------------------------------------
def test_promql_metric_names() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, endpoint) (rate(x_seconds_bucket{a="b"}[5m])))'
            ' / clamp_min(sum(rate(req_total[1m])) without (status), 1e-9) > 0.1 and up == 0')
    assert promql_metrics(expr) == {"x_seconds_bucket", "req_total", "up"}


def test_a_type_line_is_not_a_sample() -> None:
    text = ('# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_count 2\nh_sum 1.5\n'
            '# TYPE c_total counter\nc_total{path="/a \\"b\\""} 3\n# TYPE g gauge\n'
            '# TYPE live gauge\nlive NaN\n# TYPE om counter\nom_total 4\n')
    s = parse_exposition(text)
    assert {"h_bucket", "h_count", "h_sum", "c_total", "live", "om_total"} == s.names()
    assert "g" not in s.names()  # declared, never set: no sample
    assert s.family("h_bucket") == ("h", "histogram") and s.family("om_total") == ("om", "counter")
    assert s.count("h") == 2 and s.count("c_total") == 3 and s.count("om") == 4
    assert s.samples[("c_total", (("path", '/a "b"'),))] == 3
    assert math.isnan(s.samples[("live", ())]) and s.samples[("h_bucket", (("le", "+Inf"),))] == 2


def test_selectors_windows_and_grafana_variables() -> None:
    expr = ('sum(rate(req_total{status=~"5..",job!="x"}[5m])) / sum(rate(req_total[1h] offset 10m))'
            ' > 0.05')
    assert sorted(selectors(expr)) == [("req_total", []), ("req_total", [("status", "=~", "5.."),
                                                                         ("job", "!=", "x")])]
    assert matches({"status": "503", "job": "api"}, [("status", "=~", "5.."), ("job", "!=", "x")])
    assert not matches({"status": "200"}, [("status", "=~", "5..")])
    assert lookback_s(expr) == 3600 + 600
    assert literals(expr) == {0.05}
    q = grafana_to_promql('rate(req_total{job="$job", env=~"${env:regex}"}[$__rate_interval])')
    assert q == 'rate(req_total{job=".*", env=~".*"}[5m])'


# --- the built-in drift detector: honest on clean data, sees single-feature shifts -------------
def _detector():  # type: ignore[no-untyped-def]
    path = REPO / "src/mlpipe_flow/builtin/templates/monitoring/drift_detection/detect_drift.py"
    spec = importlib.util.spec_from_file_location("builtin_detect_drift", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_builtin_detector_is_quiet_on_clean_data_with_many_features() -> None:
    """Issue 10: 569 rows, 30 features fired on clean data. With a Bonferroni correction and an
    effect floor, 40 random clean splits of that dataset give no alarm, while half to one std on
    one feature is still flagged and named."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
    detect = _detector().detect_drift
    rng = np.random.default_rng(0)
    features = list(frame.columns)
    for _ in range(40):
        order = rng.permutation(len(frame))
        train, pool = frame.iloc[order[:398]], frame.iloc[order[398:]]
        current = pool.sample(n=136, random_state=int(rng.integers(2**31)))
        got = detect(train, current, features)
        assert got["drift_detected"] is False, got["drifted_features"]
    shifted = current.copy()
    shifted["mean radius"] = shifted["mean radius"] + 1.0 * train["mean radius"].std()
    got = detect(train, shifted, features)
    assert got["drift_detected"] is True and got["drifted_features"] == ["mean radius"]
    cats = pd.DataFrame({"c": rng.choice(["a", "b", "c"], size=2000, p=[.6, .3, .1])})
    moved = cats.iloc[:700].copy()
    moved.loc[moved.sample(frac=0.2, random_state=1).index, "c"] = "c"
    assert detect(cats.iloc[700:], moved, ["c"])["features"]["c"]["drift"] is True
    assert detect(cats.iloc[700:], cats.iloc[:700], ["c"])["drift_detected"] is False


# --- the gate on the Telco workspace -------------------------------------------------------------
@needs_promtool
def test_phase5_gate_passes(passing) -> None:  # type: ignore[no-untyped-def]
    """The phase-5 gate the passing run (tests/mutations.py) passed with."""
    by_id = passed_report(passing, "phase5")
    drill = by_id["prometheus-rules"]["evidence"]["drill"]
    assert "healthy" not in json.dumps(drill["fired"])
    assert set(drill["fired"]) == set(by_id["prometheus-rules"]["evidence"]["alerts"])
    drift = by_id["drift-drill"]["evidence"]
    kinds = {s["sample"].split("'")[-1] for s in drift["samples"]}
    assert any("moved" in s["sample"] for s in drift["samples"]), kinds  # categorical drilled


@needs_promtool
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
        "import sys\n"
        "def detect_drift(reference, current):\n"
        "    return {'drift_detected': False, 'features': {}}\n"
        "if __name__ == '__main__':\n"
        "    print('{\"drift_detected\": false}'); sys.exit(0)\n")
    r = check(ws, "drift_drill")
    assert r.status == "failed" and "did not flag" in r.message, r


def test_without_promtool_the_rules_and_dashboards_cannot_pass(ws5: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                               if not (Path(p) / "promtool").exists()))
    r = check(ws5, "prometheus_rules")
    assert r.status == "error" and "promtool is not installed" in r.message, r
    r = check(ws5, "grafana_dashboards")
    assert r.status == "error" and "promtool" in r.message, r
