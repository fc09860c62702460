"""A workspace and its MLPIPE_HOME moved to another path (another machine, the next CI job)
resume there: nothing the resume depends on holds an absolute path, and the data the run
staged is used without the original file. The whole example run does the same move between
every phase (tests/ci_sequence.py); these are the fast cases it does not reach."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ci_sequence import absolute_strings
from conftest import mlpipe

PROBLEM = "predict churn"


def test_a_moved_workspace_resumes_on_its_staged_data(ws: Path, csv_file: Path, tmp_path: Path,
                                                      _mlpipe_home: Path) -> None:
    res = mlpipe("run", PROBLEM, "--data", str(csv_file), "-w", str(ws), "--phase", "phase1")
    assert res.returncode == 0, res.stdout + res.stderr
    # the workspace and its records move; the original data file stays behind, then is gone
    there = tmp_path / "another-machine"
    new_ws, new_home = there / "ws", there / "home"
    there.mkdir()
    shutil.move(ws, new_ws)
    shutil.move(_mlpipe_home, new_home)
    csv_file.unlink()
    env = {"MLPIPE_HOME": str(new_home)}
    state = json.loads((new_ws / ".mlpipe/state.json").read_text())
    run_id = state["run_id"]
    assert absolute_strings(state) == []
    assert absolute_strings(json.loads((new_home / "records" / run_id / "raw.json").read_text())) == []
    assert state["data"]["source"] == "customers.csv"  # given as an absolute path: its name

    # a job that gives --data again, as the first one did: the staged copy is the data
    res = mlpipe("run", PROBLEM, "--data", str(csv_file), "-w", str(new_ws), "--phase", "phase2",
                 env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (f"--data {csv_file}: no such file here; using the copy the run staged, "
            "data/raw/customers.csv") in res.stdout
    res = mlpipe("status", "-w", str(new_ws), "--json", env=env)
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["run_id"] == run_id
    assert [p["status"] for p in st["phases"][:2]] == ["passed", "passed"]
    junit = tmp_path / "reports" / "phase2.xml"
    res = mlpipe("gate", "phase2", "-w", str(new_ws), "--junit", str(junit), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'failures="0"' in junit.read_text() and 'errors="0"' in junit.read_text()
    assert not ws.exists() and not _mlpipe_home.exists()  # nothing went back to the old place

    # moved without its staged data either: one line that says what to do, before any agent runs
    (new_ws / "data/raw/customers.csv").unlink()
    res = mlpipe("run", PROBLEM, "-w", str(new_ws), "--phase", "phase3", env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "data/raw/customers.csv is not in workspace" in lines[0], lines
    assert "--data FILE" in lines[0] and "customers.csv" in lines[0]
    state = json.loads((new_ws / ".mlpipe/state.json").read_text())
    assert next(p for p in state["phases"] if p["id"] == "phase3")["attempts"] == 0
    # and a --data that names a missing file the run never staged is still an error
    res = mlpipe("run", PROBLEM, "--data", str(tmp_path / "other.csv"), "-w", str(new_ws),
                 "--phase", "phase3", env=env)
    assert res.returncode == 2 and "other.csv: no such file" in res.stderr, res.stderr
