"""End to end through the real CLI, the command runner and the fake agent script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import mlpipe


def status(ws: Path) -> dict:
    res = mlpipe("status", "-w", str(ws), "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_full_run_reaches_100(ws: Path, csv_file: Path) -> None:
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    for pct in (20, 45, 70, 85, 95, 100):
        assert f"progress {pct}%" in out
    assert "ml-requirements.md names its ML metrics" in out and "Passed" in out
    assert "BUILD ML PIPELINE COMPLETE" in out.upper()
    st = status(ws)
    assert st["progress"] == 100
    assert [p["status"] for p in st["phases"]] == ["passed"] * 6
    assert (ws / "data/raw/customers.csv").read_text() == csv_file.read_text()
    run_dir = ws / ".mlpipe/runs" / st["run_id"] / "phase1" / "attempt-1"
    for name in ("prompt.md", "transcript.log", "gate.json", "task.json"):
        assert (run_dir / name).is_file(), name
    assert "predict churn" in (run_dir / "prompt.md").read_text()
    assert "fake agent: wrote the phase1 contract" in (run_dir / "transcript.log").read_text()
    assert json.loads((run_dir / "gate.json").read_text())["passed"] is True

    # a second run resumes: everything verified and skipped, nothing dispatched
    res = mlpipe("run", "predict churn", "-w", str(ws), "--json")
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert [e["phase"] for e in events if e["event"] == "phase_skipped"] == [f"phase{i}" for i in range(1, 7)]
    assert not [e for e in events if e["event"] == "attempt_started"]


def test_gate_failure_then_repair(ws: Path, csv_file: Path, tmp_path: Path,
                                  seed_workflow: Path) -> None:
    log = tmp_path / "agent.log"
    env = {"FAKE_AGENT_FAIL_ONCE": "phase2", "FAKE_AGENT_LOG": str(log)}
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase", "phase1",
                 env=env)
    assert res.returncode == 0, res.stderr
    res = mlpipe("run", "predict churn", "-w", str(ws), "--phase", "phase2", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Data pipeline tests failing" in res.stdout
    assert log.read_text().splitlines() == ["phase1 1 first", "phase2 1 first", "phase2 2 repair"]
    st = status(ws)
    p2 = next(p for p in st["phases"] if p["id"] == "phase2")
    assert p2["status"] == "passed" and p2["attempts"] == 2
    repair_prompt = (ws / ".mlpipe/runs" / st["run_id"] / "phase2/attempt-2/prompt.md").read_text()
    assert "pipeline-tests" in repair_prompt
    assert "deliberately wrong" in repair_prompt or "1 failed" in repair_prompt
    # the failing check's rule, as the gate states it, is in the repair prompt too
    from mlpipe_flow.checks import rule
    from mlpipe_flow.workflow import load_workflow

    check = next(c for c in load_workflow(seed_workflow).gates["phase2"].checks
                 if c.id == "pipeline-tests")
    assert f"The rule, as the gate applies it: {rule(check)}" in repair_prompt


def test_stalled_phase_stops_early_and_fails(ws: Path, csv_file: Path, tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    env = {"FAKE_AGENT_FAIL_ALWAYS": "phase1", "FAKE_AGENT_LOG": str(log)}
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), env=env)
    assert res.returncode == 1
    assert "mlpipe: error: phase1" in res.stderr
    assert "ML metrics not defined" in res.stdout
    assert len(log.read_text().splitlines()) == 2  # the second identical failure stops it
    st = status(ws)
    assert st["phases"][0]["status"] == "stalled"
    assert st["progress"] == 0


def test_sigkill_in_phase3_then_resume(ws: Path, csv_file: Path, tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    env = {**os.environ, "FAKE_AGENT_SLEEP": "phase3:60", "FAKE_AGENT_LOG": str(log)}
    env.pop("MLPIPE_RUNNER", None)
    # output unread: to /dev/null, never a pipe that fills and stalls the run
    proc = subprocess.Popen([sys.executable, "-m", "mlpipe_flow", "run", "predict churn", "--data",
                             str(csv_file), "-w", str(ws), "--json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.exists() and "phase3 1 first" in log.read_text() and (ws / "models/train_model.py").exists():
            break
        time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError("phase 3 never started")
    live = status(ws)  # while the run holds the workspace, status says so
    assert live["status"] == "running" and live["phases"][2]["status"] == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    state = json.loads((ws / ".mlpipe/state.json").read_text())
    assert [p["status"] for p in state["phases"][:3]] == ["passed", "passed", "running"]
    # the state file still says running; status sees no process holding the run: interrupted
    seen = status(ws)
    assert seen["status"] == "interrupted", seen
    assert [p["status"] for p in seen["phases"][:3]] == ["passed", "passed", "interrupted"]
    assert "mlpipe run` resumes" in seen["phases"][2]["reason"]
    text = mlpipe("status", "-w", str(ws)).stdout
    assert "status interrupted" in text and "phase3   interrupted" in text, text

    # the orphaned agent dies with its parent; the lock is free again
    res = mlpipe("run", "predict churn", "-w", str(ws), env={"FAKE_AGENT_LOG": str(log)})
    assert res.returncode == 0, res.stdout + res.stderr
    lines = log.read_text().splitlines()
    assert lines.count("phase1 1 first") == 1 and lines.count("phase2 1 first") == 1
    assert lines[-4:] == ["phase3 1 first", "phase4 1 first", "phase5 1 first", "phase6 1 first"]
    assert status(ws)["progress"] == 100


def test_second_concurrent_run_is_refused(ws: Path, csv_file: Path) -> None:
    # the first run sleeps in phase 3 far longer than the second takes to start on a loaded
    # machine (it once finished its whole run while the second was starting); Ctrl-C ends it
    env = {**os.environ, "FAKE_AGENT_SLEEP": "phase3:300"}
    env.pop("MLPIPE_RUNNER", None)
    first = subprocess.Popen([sys.executable, "-m", "mlpipe_flow", "run", "predict churn", "--data",
                              str(csv_file), "-w", str(ws), "--json"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (ws / "models/train_model.py").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        res = mlpipe("run", "predict churn", "-w", str(ws))
        assert res.returncode == 2
        assert "in use by another mlpipe run" in res.stderr
        assert "Traceback" not in res.stderr
    finally:
        first.send_signal(signal.SIGINT)
        try:  # read its pipes while it winds down: a full pipe would block its last writes
            first.communicate(timeout=60)
        finally:
            first.kill()
    assert first.returncode == 130
    state = json.loads((ws / ".mlpipe/state.json").read_text())
    assert state["status"] == "interrupted"


def test_corrupt_state_is_reported_not_reset(ws: Path, csv_file: Path) -> None:
    (ws / ".mlpipe").mkdir(parents=True)
    (ws / ".mlpipe/state.json").write_text('{"run_id": "x", "problem": ')
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws))
    assert res.returncode == 2
    assert "state.json is corrupt" in res.stderr and "--fresh" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert (ws / ".mlpipe/state.json").read_text() == '{"run_id": "x", "problem": '
    res = mlpipe("status", "-w", str(ws))
    assert res.returncode == 2 and "corrupt" in res.stderr


def test_phase_before_its_prerequisite_is_refused_unless_forced(ws: Path, csv_file: Path) -> None:
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase", "phase4")
    assert res.returncode == 2
    assert "phase4 needs phase3 to pass first" in res.stderr and "--force" in res.stderr
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase", "phase4",
                 "--force")
    assert res.returncode == 0, res.stdout + res.stderr


def test_changed_outputs_make_a_passed_phase_run_again(ws: Path, csv_file: Path, tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    env = {"FAKE_AGENT_LOG": str(log)}
    assert mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase", "phase1",
                  env=env).returncode == 0
    (ws / "tech-stack.md").write_text("# changed by hand\n")
    res = mlpipe("run", "predict churn", "-w", str(ws), "--phase", "phase2", env=env)
    assert res.returncode == 0
    res = mlpipe("run", "predict churn", "-w", str(ws), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "phase1: outputs changed since it passed" in res.stdout
    assert log.read_text().splitlines().count("phase1 1 first") == 2


def test_one_phase_asked_for_and_passed_is_not_called_incomplete(ws: Path, csv_file: Path) -> None:
    """`--phase phase1` that passes (exit 0): the summary says phase1 passed and what to run
    next, not "INCOMPLETE", no ❌ for phases nobody asked for, no "see why a phase failed"."""
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase", "phase1")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "phase1 PASSED (20%); not run yet: phase2, phase3, phase4, phase5, phase6" in out, out
    assert "INCOMPLETE" not in out.upper() and "❌" not in out and "failed" not in out.lower()
    assert f'Run the next phase: mlpipe run "predict churn" --workspace {ws.resolve()} --phase phase2' in out


def test_a_failed_phase_is_named_in_the_summary(ws: Path, csv_file: Path) -> None:
    env = {"FAKE_AGENT_FAIL_ALWAYS": "phase2"}
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--max-attempts", "1",
                 env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "BUILD ML PIPELINE INCOMPLETE (20%)" in res.stdout
    assert "See why phase2 failed: mlpipe gate phase2" in res.stdout
    assert "❌ Data ingestion and feature engineering (phase2:" in res.stdout
    assert "⏸️  Model training with experiment tracking" in res.stdout  # not run: not a failure


def test_a_phase_run_again_takes_back_the_passes_after_it(ws: Path, csv_file: Path) -> None:
    """`--from phase4` on a finished run: while phase 4 runs again, phases 5-6 no longer count as
    passed (the bar does not sit at 100%); when phase 4 fails, status says 70%, not 100%."""
    assert mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws)).returncode == 0
    res = mlpipe("run", "predict churn", "-w", str(ws), "--phase", "phase4")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "phase4 runs again: phase5, phase6 will need to pass again (progress is now 70%)" in res.stdout
    assert "progress 85%" in res.stdout and "progress 100%" not in res.stdout, res.stdout
    st = status(ws)
    assert st["progress"] == 85
    assert [p["status"] for p in st["phases"]][3:] == ["passed", "pending", "pending"]
    res = mlpipe("run", "predict churn", "-w", str(ws), "--from", "phase4", "--max-attempts", "1",
                 "--json", env={"FAKE_AGENT_FAIL_ALWAYS": "phase4"})
    assert res.returncode == 1
    events = [json.loads(line) for line in res.stdout.splitlines()]
    started = next(e for e in events if e["event"] == "phase_started")
    assert (started["phase"], started["progress"]) == ("phase4", 70), started  # the bar, not 85%
    st = status(ws)
    assert st["phases"][3]["status"] in ("failed", "stalled"), st
    assert st["progress"] == 70 and [p["status"] for p in st["phases"]][4:] == ["pending", "pending"], st
