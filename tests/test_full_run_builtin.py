"""A whole run of the default workflow with the built-in agent, 0% -> 100%, on real data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from builtin_helpers import home_of, run_every_phase, workflow_with_load_rate
from conftest import REPO, SHARED, shared_data

RUNS = {
    "telco": ("predict customer churn, served in real time, retrained weekly",
              SHARED / "telco_churn.csv"),
    "concrete": ("predict compressive strength", SHARED / "concrete_strength.csv"),
}
ARTIFACTS = ("deployment/api/main.py", "monitoring/alerts/alerts.yml", "registry/champion.json",
             "continuous-training-guide.md")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # its phase 4 waits for the machine to itself
@shared_data
@pytest.mark.parametrize("name", list(RUNS))
def test_full_run_on_real_data_reaches_100(name: str, tmp_path: Path, cpu) -> None:  # type: ignore[no-untyped-def]
    """Phase by phase, phase 4 (its gate drives a 1000 req/s load) with the machine to itself."""
    problem, data = RUNS[name]
    ws = tmp_path / "ws"
    rate = os.environ.get("MLPIPE_TEST_LOAD_RATE")
    wf = workflow_with_load_rate(tmp_path / "wf", float(rate)) if rate else REPO
    run_every_phase(ws, problem, data, wf, home_of(ws), cpu)
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
