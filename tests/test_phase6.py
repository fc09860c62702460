"""Built-in phase 6 and the continuous-training gate's drills, passing and failing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import mlpipe
from ml_workspace import built, check, copy


@pytest.fixture(scope="module")
def ws6(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built(tmp_path_factory.mktemp("p6") / "ws", ["phase4", "phase5", "phase6"])


def test_builtin_phase6_initialises_the_registry(ws6: Path) -> None:
    champion = json.loads((ws6 / "registry" / "champion.json").read_text())
    assert champion["version"] == "1"
    assert (ws6 / "registry" / "versions" / "1" / "model.joblib").is_file()
    assert "0 3 * * 1" in (ws6 / "airflow_dags" / "continuous_training.py").read_text()


def test_phase6_gate_passes(ws6: Path) -> None:
    res = mlpipe("gate", "phase6", "--workspace", str(ws6), "--json", timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    report = json.loads(res.stdout)
    drill = next(c for c in report["checks"] if c["id"] == "rollback-drill")
    ev = drill["evidence"]
    assert ev["serving_before"] == ev["serving_after_rollback"] != ev["serving_after_promote"]
    # the drills ran in scratch copies: the workspace's registry is untouched
    assert json.loads((ws6 / "registry" / "champion.json").read_text())["version"] == "1"


def test_rollback_that_does_not_restore_fails(ws6: Path, tmp_path: Path) -> None:
    ws = copy(ws6, tmp_path / "norollback")
    (ws / "rollback" / "rollback.py").write_text("print('rolled back (not really)')\n")
    r = check(ws, "rollback_drill")
    assert r.status == "failed" and "expected the previous version 1" in r.message, r


def test_retrain_that_always_promotes_fails_the_corrupted_label_drill(ws6: Path,
                                                                      tmp_path: Path) -> None:
    ws = copy(ws6, tmp_path / "alwayspromote")
    p = ws / "continuous_training" / "retrain.py"
    p.write_text(p.read_text().replace(
        "promote = args.force_promote or better >= args.min_improvement", "promote = True"))
    r = check(ws, "retrain_drill")
    assert r.status == "failed" and "corrupted labels replaced the champion" in r.message, r


def test_retrain_that_records_nothing_fails(ws6: Path, tmp_path: Path) -> None:
    ws = copy(ws6, tmp_path / "silent")
    (ws / "continuous_training" / "retrain.py").write_text("print('retrained')\n")
    r = check(ws, "retrain_drill")
    assert r.status == "failed" and "recorded no decision" in r.message, r


def test_dag_without_schedule_or_order_fails(ws6: Path, tmp_path: Path) -> None:
    ws = copy(ws6, tmp_path / "dag")
    p = ws / "airflow_dags" / "continuous_training.py"
    good = p.read_text()
    p.write_text(good.replace("    schedule=SCHEDULE,\n", ""))
    r = check(ws, "dag_parses")
    assert r.status == "failed" and "no literal schedule" in r.message, r
    p.write_text(good.replace("check_drift >> retrain >> canary", "canary >> retrain\n"
                              "    check_drift >> canary"))
    r = check(ws, "dag_parses")
    assert r.status == "failed" and "no dependency path from a 'retrain'" in r.message, r
