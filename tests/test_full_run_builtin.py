"""A whole run of the default workflow with the built-in agent, 0% -> 100%, on real data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from builtin_helpers import workflow_with_load_rate
from conftest import REPO, SHARED, mlpipe, shared_data

RUNS = {
    "telco": ("predict customer churn, served in real time, retrained weekly",
              SHARED / "telco_churn.csv"),
    "concrete": ("predict compressive strength", SHARED / "concrete_strength.csv"),
}
ARTIFACTS = ("deployment/api/main.py", "monitoring/alerts/alerts.yml", "registry/champion.json",
             "continuous-training-guide.md")


@pytest.mark.slow
@pytest.mark.alone  # its phase-4 gate drives a 1000 req/s load
@shared_data
@pytest.mark.parametrize("name", list(RUNS))
def test_full_run_on_real_data_reaches_100(name: str, tmp_path: Path) -> None:
    problem, data = RUNS[name]
    ws = tmp_path / "ws"
    rate = os.environ.get("MLPIPE_TEST_LOAD_RATE")
    wf = workflow_with_load_rate(tmp_path / "wf", float(rate)) if rate else REPO
    res = mlpipe("run", problem, "--data", str(data), "-w", str(ws), "--runner", "builtin",
                 "--workflow", str(wf), timeout=1200)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    state = json.loads((ws / ".mlpipe" / "state.json").read_text())
    assert state["progress"] == 100, state
    for rel in ARTIFACTS:
        assert (ws / rel).is_file(), rel


@pytest.mark.slow
def test_the_example_reaches_100(passing) -> None:  # type: ignore[no-untyped-def]
    """The example data, the default workflow, every gate at its own thresholds: the run the
    mutation suite starts from (tests/mutations.py) is itself the whole-run test."""
    state = json.loads((passing.ws / ".mlpipe" / "state.json").read_text())
    assert state["progress"] == 100 and state["status"] == "passed", state
    assert [p["status"] for p in state["phases"]] == ["passed"] * 6
    for rel in ARTIFACTS:
        assert (passing.ws / rel).is_file(), rel
