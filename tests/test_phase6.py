"""Built-in phase 6 and the continuous-training gate's drills, passing and failing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_workspace import built, check, copy
from mutations import passed_report


@pytest.fixture(scope="module")
def ws6(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built(tmp_path_factory.mktemp("p6") / "ws", ["phase4", "phase5", "phase6"])


def test_builtin_phase6_initialises_the_registry(ws6: Path) -> None:
    """The phase-3 model is version 1 of the MLflow registered model, alias `champion`, and
    its export (what the API loads) is that version's model."""
    import joblib
    import pandas as pd
    from mlflow import MlflowClient

    champion = json.loads((ws6 / "registry" / "champion.json").read_text())
    assert champion["version"] == "1" and champion["model_uri"] == "models:/churn-model/1"
    exported = ws6 / "registry" / "versions" / "1"
    assert (exported / "model.joblib").is_file()
    assert json.loads((exported / "model_meta.json").read_text())["registered_version"] == "1"
    client = MlflowClient(tracking_uri=f"sqlite:///{ws6 / 'mlflow.db'}")
    mv = client.get_model_version_by_alias("churn-model", "champion")
    assert str(mv.version) == "1" and mv.tags["model_version"] == "1"
    import mlflow.sklearn

    mlflow.set_tracking_uri(f"sqlite:///{ws6 / 'mlflow.db'}")
    registered = mlflow.sklearn.load_model("models:/churn-model@champion")
    test = pd.read_csv(ws6 / "data" / "splits" / "test.csv")
    features = json.loads((exported / "model_meta.json").read_text())["feature_columns"]
    original = joblib.load(ws6 / "artifacts" / "model.joblib")
    assert (registered.predict_proba(test[features]) == original.predict_proba(test[features])).all()
    assert "0 3 * * 1" in (ws6 / "airflow_dags" / "continuous_training.py").read_text()


def test_phase6_gate_passes(passing) -> None:  # type: ignore[no-untyped-def]
    """The phase-6 gate the passing run (tests/mutations.py) passed with, drill by drill."""
    checks = passed_report(passing, "phase6")
    # every drill is judged by the API's answers: the rollback brings the champion's back
    ev = checks["rollback-drill"]["evidence"]
    champion = ev["champion"]["fingerprint"]
    assert ev["served"]["rolled-back"]["fingerprint"] == champion
    assert ev["served"]["promoted"]["fingerprint"] != champion
    # ... and the MLflow alias `champion` moved with it, each time naming the model served
    reg = ev["registry"]
    assert reg["promoted"]["version"] != reg["rolled-back"]["version"]
    assert reg["promoted"]["disagreement"] <= 1e-4 and reg["rolled-back"]["disagreement"] <= 1e-4
    ev = checks["retrain-drill"]["evidence"]
    assert ev["worse_decision"]["decision"] == "keep_champion"
    assert ev["served"]["after-worse"]["fingerprint"] == ev["champion"]["fingerprint"]
    assert ev["served"]["bad-champion"]["score"] < 0.5 < ev["served"]["after-better"]["score"]
    ev = checks["canary-drill"]["evidence"]
    assert ev["canary_exit"] == {"healthy": 0, "no-data": 1, "degraded": 1}, ev["steps"]
    assert ev["prometheus"]["no-data"]["series_by_track"].keys() == {"stable"}
    # the drills ran in scratch copies: the workspace's registry is untouched
    assert json.loads((passing.ws / "registry" / "champion.json").read_text())["version"] == "1"
    assert not (passing.ws / "registry" / "versions" / "2").exists()


def test_retrain_that_records_nothing_fails(ws6: Path, tmp_path: Path) -> None:
    ws = copy(ws6, tmp_path / "silent")
    (ws / "continuous_training" / "retrain.py").write_text("print('retrained')\n")
    r = check(ws, "retrain_drill")
    assert r.status == "failed" and "appended no decision record" in r.message, r


def test_canary_drill_without_prometheus_is_an_error(ws6: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", "/nonexistent")
    r = check(ws6, "canary_drill")
    assert r.status == "error" and "prometheus" in r.message, r


def test_degraded_series_are_degraded_whatever_the_metric_names() -> None:
    from mlpipe_flow.checks.canary_checks import openmetrics, parse_exposition, track_series

    text = """# TYPE ml_prediction_latency_seconds histogram
ml_prediction_latency_seconds_bucket{le="0.01"} 8.0
ml_prediction_latency_seconds_bucket{le="0.1"} 10.0
ml_prediction_latency_seconds_bucket{le="+Inf"} 10.0
ml_prediction_latency_seconds_count 10.0
ml_prediction_latency_seconds_sum 0.05
# TYPE ml_prediction_errors counter
ml_prediction_errors_total 0.0
# TYPE http_requests_total counter
http_requests_total{handler="/predict",code="200"} 10.0
# TYPE ml_model_accuracy gauge
ml_model_accuracy{model_version="3"} 0.8
"""
    fams = parse_exposition(text)
    ok, _ = track_series(fams, degraded=False)
    bad, grow = track_series(fams, degraded=True)
    lat = "ml_prediction_latency_seconds_bucket"
    assert ok[(lat, (("le", "0.01"),))] == 8 and bad[(lat, (("le", "0.1"),))] == 0
    assert bad[(lat, (("le", "+Inf"),))] == 10
    assert bad[("ml_prediction_errors_total", ())] == 10
    assert bad[("http_requests_total", (("code", "500"), ("handler", "/predict")))] == 10
    assert bad[("ml_model_accuracy", (("model_version", "3"),))] == 0.8
    assert "ml_model_accuracy" not in grow and "http_requests_total" in grow
    om = openmetrics({"stable": (ok, grow), "canary": (bad, grow)}, 1_000_000.0, 600, 60, 20)
    assert om.endswith("# EOF\n") and 'track="canary"' in om and 'instance="stable:8000"' in om


def test_dag_without_schedule_or_order_fails(ws6: Path, tmp_path: Path) -> None:
    ws = copy(ws6, tmp_path / "dag")
    p = ws / "airflow_dags" / "continuous_training.py"
    good = p.read_text()
    p.write_text(good.replace("    schedule=SCHEDULE,\n", ""))
    r = check(ws, "dag_parses")
    assert r.status == "failed" and "no literal schedule" in r.message, r
    # the canary no longer after the retrain (nor after anything downstream of it)
    p.write_text(good.replace("check_drift >> retrain >> canary", "canary >> retrain\n"
                              "    check_drift >> canary")
                 .replace("    promoted(retrain.output) >> canary\n", "    promoted(retrain.output)\n"))
    r = check(ws, "dag_parses")
    assert r.status == "failed" and "no dependency path from a 'retrain'" in r.message, r


def test_the_dag_the_prompt_shows_loads_as_airflow_3_and_passes(tmp_path: Path) -> None:
    """The DAG example of the phase-6 prompt is Airflow 3 code, with the spec's schedule, that
    the gate's own dag_parses check accepts once the scripts it runs exist."""
    import re
    import textwrap

    from typer.testing import CliRunner

    from conftest import run_default_check
    from mlpipe_flow.cli import app

    spec = 'target: Churn\nretraining:\n  schedule: "15 4 * * 2"\n'
    render_ws = tmp_path / "render"
    render_ws.mkdir()
    (render_ws / "ml-spec.yaml").write_text(spec)
    res = CliRunner().invoke(app, ["render", "phase6", "predict customer churn", "--target",
                                   "Churn", "-w", str(render_ws)])
    assert res.exit_code == 0, res.output
    code = re.search(r"```python\n(.*?)```", res.output, re.S)
    assert code is not None
    dag = textwrap.dedent(code.group(1))
    assert "from airflow.sdk import DAG" in dag and "schedule_interval=" not in dag
    assert "airflow.providers.standard.operators.bash import BashOperator" in dag
    assert 'schedule="15 4 * * 2"' in dag and "__file__" in dag

    ws = tmp_path / "ws"
    (ws / "airflow_dags").mkdir(parents=True)
    (ws / "airflow_dags" / "continuous_training.py").write_text(dag)
    (ws / "ml-spec.yaml").write_text(spec)
    body = textwrap.dedent("""
        import json
        import sys
        from pathlib import Path

        def main():
            rows = Path("data/splits/train.csv").read_text().splitlines()
            Path("registry/{name}.json").write_text(json.dumps(len(rows)))
            return 0

        if __name__ == "__main__":
            sys.exit(main())
        """)
    scripts = re.findall(r'bash_command="python ([\w/]+\.py)', dag)
    assert len(scripts) == 3, scripts
    for rel in scripts:
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(body.replace("{name}", Path(rel).stem))
    got = run_default_check(ws, "phase6", "dag_parses", tmp_path / "scratch")
    assert got.status == "passed", got.message
    assert got.evidence["schedule"] == "15 4 * * 2"
    assert got.evidence["path"] == ["check_triggers", "retrain", "canary_rollout"]
