"""A whole run of the default workflow with the built-in agent, 0% -> 100%, on real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SHARED, mlpipe


@pytest.mark.slow
def test_telco_full_run_reaches_100(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    res = mlpipe("run", "predict customer churn, served in real time, retrained weekly",
                 "--data", str(SHARED / "telco_churn.csv"), "-w", str(ws), "--runner", "builtin",
                 timeout=1200)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    state = json.loads((ws / ".mlpipe" / "state.json").read_text())
    assert state["progress"] == 100, state
    for rel in ("deployment/api/main.py", "monitoring/alerts/alerts.yml", "registry/champion.json",
                "continuous-training-guide.md"):
        assert (ws / rel).is_file(), rel
