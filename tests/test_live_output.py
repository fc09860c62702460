"""What is on screen while a gate runs: the running check and its seconds so far, in a real
pseudo-terminal (pexpect reads the screen, no screenshot) and in piped output; and the order of
headers and check lines when a run resumes."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pexpect

from conftest import build_seed_workflow, mlpipe
from mlpipe_flow.display import PlainDisplay, RecordingDisplay, RichDisplay
from mlpipe_flow.gate import run_gate
from mlpipe_flow.workflow import load_workflow

SLOW_S = 4
SLOW_GATE = f"""\
name: A slow gate
description: One quick check and one pytest check whose test sleeps {SLOW_S} s.
success: "slow gate passed"
checks:
  - id: requirements-doc
    kind: exists
    name: ml-requirements.md exists
    message: ML requirements not documented
    params: {{paths: [ml-requirements.md]}}
  - id: slow-tests
    kind: pytest
    name: tests/test_slow.py passes
    message: Slow tests failing
    params: {{path: tests/test_slow.py}}
    timeout_s: 120
"""


def slow_workspace(tmp_path: Path, slow_s: int = SLOW_S) -> tuple[Path, Path]:
    """A workflow whose phase-1 gate runs a real pytest check that takes `slow_s` seconds, and a
    workspace it passes on. The test writes its pid to tests/slow.pid."""
    wf = build_seed_workflow(tmp_path / "wf")
    (wf / "gates" / "phase1.yaml").write_text(SLOW_GATE)
    ws = tmp_path / "ws"
    (ws / "tests").mkdir(parents=True)
    (ws / "ml-requirements.md").write_text("# ML requirements\n")
    (ws / "tests" / "test_slow.py").write_text(
        "import os\nimport time\nfrom pathlib import Path\n\n\ndef test_slow():\n"
        f"    Path(__file__).with_name('slow.pid').write_text(str(os.getpid()))\n"
        f"    time.sleep({slow_s})\n")
    return wf, ws


def test_a_terminal_shows_the_running_check_and_its_seconds(tmp_path: Path) -> None:
    wf, ws = slow_workspace(tmp_path)
    child = pexpect.spawn(sys.executable, ["-m", "mlpipe_flow", "gate", "phase1", "-w", str(ws),
                                           "--workflow", str(wf)],
                          encoding="utf-8", dimensions=(24, 100), timeout=90)
    try:
        # while the check runs: its id and seconds that count up, redrawn in place
        seen = []
        while len(set(seen)) < 2:  # the seconds count up while it runs
            child.expect(r"running slow-tests \(([0-9]+) s\)…")
            seen.append(int(child.match.group(1)))
        assert seen == sorted(seen), seen
        assert "Passed" not in child.before.split("ml-requirements.md exists")[-1]
        # then its verdict line, and the gate's
        child.expect(r"tests/test_slow\.py passes\.+\S*Passed")
        child.expect("phase1 gate passed: 2 of 2 checks passed")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_ctrl_c_ends_a_gate_at_once_and_its_checks_with_it(tmp_path: Path) -> None:
    """Ctrl-C while a check runs: the gate does not wait for its checks to finish (one sleeps
    300 s); the check's process is gone when mlpipe exits."""
    import os
    import signal
    import subprocess
    import time

    wf, ws = slow_workspace(tmp_path, slow_s=300)
    gate = subprocess.Popen([sys.executable, "-m", "mlpipe_flow", "gate", "phase1", "-w", str(ws),
                             "--workflow", str(wf)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pid_file = ws / "tests" / "slow.pid"
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
        slow_pid = int(pid_file.read_text())
        gate.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        out, err = gate.communicate(timeout=60)
        took = time.monotonic() - interrupted
    finally:
        gate.kill()
    assert gate.returncode == 130, out + err
    assert took < 20, f"{took:.1f} s from Ctrl-C to exit"  # not the 300 s the check would take
    assert "Traceback" not in err
    try:
        os.kill(slow_pid, 0)
    except ProcessLookupError:
        pass
    else:
        os.kill(slow_pid, signal.SIGKILL)
        raise AssertionError("the check's pytest process outlived the interrupted gate")


def test_piped_output_says_when_a_check_starts(tmp_path: Path) -> None:
    wf, ws = slow_workspace(tmp_path)
    res = mlpipe("gate", "phase1", "-w", str(ws), "--workflow", str(wf))
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    started = lines.index("   running: slow-tests")
    finished = next(i for i, ln in enumerate(lines) if ln.startswith("tests/test_slow.py passes"))
    assert started < finished and "\x1b[" not in res.stdout  # plain lines, no terminal codes
    assert lines[-1] == "phase1 gate passed: 2 of 2 checks passed"


def test_piped_output_says_still_running_while_nothing_else_moves(tmp_path: Path) -> None:
    wf, ws = slow_workspace(tmp_path)
    workflow = load_workflow(wf, only_phase="phase1")
    phase = workflow.phase("phase1")
    out = io.StringIO()
    display = PlainDisplay(out, every_s=1.0)
    try:
        report = run_gate(phase, workflow.gates[phase.gate], ws, display=display)
    finally:
        display.close()
    assert report.passed, out.getvalue()
    lines = out.getvalue().splitlines()
    started = lines.index("   running: slow-tests")
    beats = [i for i, ln in enumerate(lines) if ln.startswith("   still running: slow-tests (")]
    finished = next(i for i, ln in enumerate(lines) if ln.startswith("tests/test_slow.py passes"))
    assert len(beats) >= 2 and started < beats[0] and beats[-1] < finished, lines
    seconds = [int(m.group(1)) for i in beats if (m := re.search(r"\((\d+) s\)", lines[i]))]
    assert seconds == sorted(seconds) and seconds[-1] >= 2, lines


def test_check_started_comes_before_each_check_event(tmp_path: Path) -> None:
    wf, ws = slow_workspace(tmp_path)
    workflow = load_workflow(wf, only_phase="phase1")
    phase = workflow.phase("phase1")
    display = RecordingDisplay()
    run_gate(phase, workflow.gates[phase.gate], ws, display=display)
    kinds = [(k, f.get("id")) for k, f in display.events]
    for cid in ("requirements-doc", "slow-tests"):
        assert kinds.index(("check_started", cid)) < kinds.index(("check", cid)), kinds
    assert kinds[0] == ("gate_started", None) and kinds[-1] == ("gate_finished", None)


def test_the_bar_drops_to_where_a_phase_run_again_starts() -> None:
    """`--from phase4` on a finished run: the bar leaves 100% when phase 4 starts again."""
    display = RichDisplay()
    try:
        display.emit("run_started", run_id="r", problem="p", workspace="w", runner="builtin",
                     resumed=True, progress=100, phases=["phase4"])
        display.emit("phase_started", phase="phase4", name="Deployment", progress_start=70,
                     progress_end=85, max_attempts=1, progress=70)
        assert display.progress.tasks[0].completed == 70
    finally:
        display.close()


def test_a_resumed_phase_prints_its_header_before_its_check_lines(ws: Path, csv_file: Path) -> None:
    """A resume re-checks each passed phase's gate: the phase's header comes first, then its
    check lines, then the verdict with the progress it stands at."""
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase", "phase1")
    assert res.returncode == 0, res.stdout + res.stderr
    stop = {"FAKE_AGENT_FAIL_ALWAYS": "phase2"}  # the resume ends at phase 2, cheaply
    res = mlpipe("run", "predict churn", "-w", str(ws), "--max-attempts", "1", env=stop)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("== phase1"))
    first_check = next(i for i, ln in enumerate(lines) if ln.startswith("ml-requirements.md exists"))
    assert header < first_check, lines
    assert lines[header] == ("== phase1: Requirements & Design (0-20%): passed before; checking its "
                             "gate again")
    assert "== phase1: skipped (passed, outputs unchanged, gate still passes): progress 20%" in lines
    assert any(ln.startswith("== phase2: ") and "(20-45%)" in ln for ln in lines)

    res = mlpipe("run", "predict churn", "-w", str(ws), "--max-attempts", "1", "--json", env=stop)
    events = [json.loads(line) for line in res.stdout.splitlines()]
    p1 = [(e["event"], e.get("id")) for e in events if e.get("phase") == "phase1"]
    assert p1[0] == ("phase_rechecking", None) and p1[-1] == ("phase_skipped", None), p1
    checks = [cid for kind, cid in p1 if kind == "check"]
    assert checks and all(p1.index(("check_started", c)) < p1.index(("check", c)) for c in checks)
    p2 = next(e for e in events if e["event"] == "phase_started" and e["phase"] == "phase2")
    assert p2["progress"] == 20 and (p2["progress_start"], p2["progress_end"]) == (20, 45)
