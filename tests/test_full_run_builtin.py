"""A whole run of the default workflow with the built-in agent, 0% -> 100%, on real data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from builtin_helpers import home_of, run_every_phase, workflow_with_load_rate
from ci_sequence import absolute_strings
from conftest import REPO, SHARED, shared_data

TELCO = ("predict customer churn, served in real time, retrained weekly", SHARED / "telco_churn.csv")
ARTIFACTS = ("deployment/api/main.py", "monitoring/alerts/alerts.yml", "registry/champion.json",
             "continuous-training-guide.md")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # its phase 4 waits for the machine to itself
@shared_data
def test_full_run_on_real_telco_data_reaches_100(tmp_path: Path, cpu) -> None:  # type: ignore[no-untyped-def]
    """Phase by phase, phase 4 (its gate drives a 1000 req/s load) with the machine to itself."""
    problem, data = TELCO
    ws = tmp_path / "ws"
    rate = os.environ.get("MLPIPE_TEST_LOAD_RATE")
    wf = workflow_with_load_rate(tmp_path / "wf", float(rate)) if rate else REPO
    run_every_phase(ws, problem, data, wf, home_of(ws), cpu)
    for rel in ARTIFACTS:
        assert (ws / rel).is_file(), rel


@pytest.mark.slow
def test_the_example_reaches_100(passing) -> None:  # type: ignore[no-untyped-def]
    """The example data, the default workflow, every gate at its own thresholds, run as the
    GitHub Actions example runs it (tests/ci_sequence.py): one job per phase, each on a fresh
    folder at a new path with the artifact of the job before, `mlpipe run --phase --junit`. That
    run is the one the mutation suite starts from (tests/mutations.py)."""
    state = json.loads((passing.ws / ".mlpipe" / "state.json").read_text())
    assert state["progress"] == 100 and state["status"] == "passed", state
    assert [p["status"] for p in state["phases"]] == ["passed"] * 6
    for rel in ARTIFACTS:
        assert (passing.ws / rel).is_file(), rel
    # as CI ran it: six jobs in `needs` order, each in its own folder, only the last one left
    jobs = json.loads(passing.ci.read_text())
    assert [j["job"] for j in jobs] == [f"phase{i}" for i in range(1, 7)]
    folders = [Path(j["folder"]) for j in jobs]
    assert len(set(folders)) == 6 and all(f.is_absolute() for f in folders)
    assert [f.exists() for f in folders] == [False] * 5 + [True]
    for job in jobs:
        phase = job["job"]
        assert "run: ran" in job["steps"], job["steps"]
        counts = job["junit"][f"reports/{phase}.xml"]
        assert counts["tests"] > 0 and counts["failures"] == counts["errors"] == 0, (phase, counts)
    # and the moved workspace names no absolute path in its state or in the data record
    assert absolute_strings(state) == []
    raw = json.loads((passing.home / "records" / state["run_id"] / "raw.json").read_text())
    assert absolute_strings(raw) == [] and raw["staged"] == "data/raw/customers.csv"
