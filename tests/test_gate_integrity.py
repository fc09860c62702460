"""The rules every gate follows, tested on the machinery rather than on one check:

- the gate code imports nothing of the built-in agent, and the agent nothing of the gate;
- each check runs as a killable child process: a hung check is an `error` after its time
  limit and leaves no process behind, and nothing in the workspace can stand in for mlpipe's
  own modules inside it;
- mlpipe keeps its records under MLPIPE_HOME, where the agent does not write;
- an attempt that changes mlpipe.yaml, the workflow or mlpipe's records fails, and the change
  is undone;
- the claude runner is told which paths it may not edit or read.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, mlpipe, use_fake_agent
from mlpipe_flow.checks import CheckContext
from mlpipe_flow.gate import run_check
from mlpipe_flow.models import CheckSpec

SRC = REPO / "src" / "mlpipe_flow"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("folder", "forbidden"), [("checks", "mlpipe_flow.builtin"),
                                                    ("builtin", "mlpipe_flow.checks")])
def test_gate_and_agent_import_nothing_of_each_other(folder: str, forbidden: str) -> None:
    offenders = {f"{p.relative_to(SRC)}: {m}" for p in (SRC / folder).rglob("*.py")
                 for m in imported_modules(p) if m == forbidden or m.startswith(forbidden + ".")}
    assert not offenders, offenders


def pytest_check(ws: Path, timeout_s: float) -> CheckSpec:
    return CheckSpec(id="t", kind="pytest", name="t", message="", timeout_s=timeout_s,
                     params={"path": "tests/test_x.py"})


def test_a_hung_check_is_an_error_and_leaves_no_process(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    marker = f"mlpipe-hang-{os.getpid()}-{time.monotonic_ns()}"
    (ws / "tests").mkdir(parents=True)
    # the workspace's test starts a process of its own, then hangs
    (ws / "tests" / "test_x.py").write_text(
        "import subprocess, time\n"
        "def test_hangs():\n"
        f"    subprocess.Popen(['bash', '-c', 'exec -a {marker} sleep 300'])\n"
        "    time.sleep(300)\n")
    started = time.monotonic()
    res = run_check(pytest_check(ws, 4), CheckContext(workspace=ws, phase="t", timeout_s=4))
    assert time.monotonic() - started < 30
    assert res.status == "error", res
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert not left, f"processes left behind: {left}"


def test_the_workspace_cannot_stand_in_for_mlpipe_modules(tmp_path: Path) -> None:
    """A check process starts outside the workspace with mlpipe first on its path: a `yaml.py`
    or `mlpipe_flow/` folder in the workspace is not what the gate imports."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "yaml.py").write_text("raise SystemExit('the workspace yaml was imported')\n")
    (ws / "mlpipe_flow").mkdir()
    (ws / "mlpipe_flow" / "__init__.py").write_text("raise SystemExit('hijacked')\n")
    (ws / "ml-requirements.md").write_text("roc auc\n")
    spec = CheckSpec(id="t", kind="pattern", name="t", message="", timeout_s=30,
                     params={"files": ["ml-requirements.md"], "regex": "roc auc"})
    res = run_check(spec, CheckContext(workspace=ws, phase="t", timeout_s=30))
    assert res.status == "passed", res


def test_records_live_under_mlpipe_home(ws: Path, csv_file: Path, _mlpipe_home: Path) -> None:
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase",
                 "phase1")
    assert res.returncode == 0, res.stdout + res.stderr
    state = json.loads((ws / ".mlpipe" / "state.json").read_text())
    records = _mlpipe_home / "records" / state["run_id"]
    raw = json.loads((records / "raw.json").read_text())
    assert raw["kind"] == "file" and raw["staged"] == "data/raw/customers.csv"
    assert raw["sha256"] == state["data"]["sha256"]
    passed = json.loads((records / "phases" / "phase1.json").read_text())
    assert passed["output_hashes"]["ml-spec.yaml"] == state["phases"][0]["output_hashes"]["ml-spec.yaml"]
    assert passed["report"]["passed"] is True


@pytest.mark.parametrize("target", ["mlpipe.yaml", ".mlpipe/state.json", "WORKFLOW/gates/phase1.yaml",
                                    "RECORDS/raw.json"])
def test_an_attempt_that_changes_mlpipes_files_fails_and_is_undone(
        tmp_path: Path, seed_workflow: Path, csv_file: Path, _mlpipe_home: Path, target: str) -> None:
    import shutil

    wf = tmp_path / "wf"
    shutil.copytree(seed_workflow, wf, symlinks=False)
    ws = tmp_path / "ws"
    use_fake_agent(ws, workflow=wf)
    # the run id is only known once the run starts: a first run records it, a second tampers
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase", "phase1")
    assert res.returncode == 0, res.stdout + res.stderr
    run_id = json.loads((ws / ".mlpipe" / "state.json").read_text())["run_id"]
    path = (target.replace("WORKFLOW", str(wf))
            .replace("RECORDS", str(_mlpipe_home / "records" / run_id)))
    full = ws / path if not path.startswith("/") else Path(path)
    before = full.read_bytes()
    res = mlpipe("run", "predict churn", "-w", str(ws), "--phase", "phase1",
                 env={"FAKE_AGENT_TAMPER": f"phase1:{full}"})
    out = res.stdout + res.stderr
    # attempt 1 changed the file: it fails, the file is restored; attempt 2 passes
    assert res.returncode == 0, out
    assert "integrity" in out and "changed mlpipe's own files" in out, out
    if target != ".mlpipe/state.json":  # the engine rewrites its state after restoring it
        assert full.read_bytes() == before
    state = json.loads((ws / ".mlpipe" / "state.json").read_text())
    assert state["phases"][0]["attempts"] == 2


def test_claude_is_denied_mlpipes_paths(tmp_path: Path) -> None:
    from mlpipe_flow.runners import AgentTask
    from mlpipe_flow.runners.claude import build_argv

    ws = tmp_path / "ws"
    task = AgentTask(phase="phase1", attempt=1, prompt="p", role="r", role_prompt="r",
                     workspace=ws, run_dir=tmp_path, timeout_s=10, idle_timeout_s=10, max_turns=3,
                     allowed_tools=["Read", "Write"],
                     protected=[ws / "mlpipe.yaml", tmp_path / "wf" / "gates"],
                     private=[ws / ".mlpipe", tmp_path / "home" / "records" / "r1"])
    argv = build_argv(task)
    deny = argv[argv.index("--disallowedTools") + 1].split(",")
    assert f"Edit(/{ws.resolve()}/mlpipe.yaml)" in deny
    assert f"Edit(/{(tmp_path / 'wf' / 'gates').resolve()}/**)" in deny
    assert f"Read(/{(tmp_path / 'home' / 'records' / 'r1').resolve()}/**)" in deny
    assert f"Read(/{(ws / '.mlpipe').resolve()}/**)" in deny


def test_an_edited_split_with_its_hash_rewritten_in_the_state_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    """The mutation suite's own machinery, end to end: the copy passes as it is; then the test
    split loses the rows the model gets wrong and `.mlpipe/state.json` is rewritten to match.
    mlpipe's records (under MLPIPE_HOME) still hold the hash phase 2 passed with."""
    import pandas as pd

    from mlpipe_flow.state import file_sha256

    assert mutant.verdict("phase3", "beats-baseline")["status"] == "passed"
    test = pd.read_csv(mutant.path("data/splits/test.csv"))
    test.iloc[: len(test) // 2].to_csv(mutant.path("data/splits/test.csv"), index=False)
    digest = file_sha256(mutant.path("data/splits/test.csv"))

    def rewrite(state: dict) -> None:  # type: ignore[type-arg]
        for rec in state["phases"]:
            if "data/splits/test.csv" in rec["output_hashes"]:
                rec["output_hashes"]["data/splits/test.csv"] = digest

    mutant.edit_json(".mlpipe/state.json", rewrite)
    mutant.assert_caught("phase3", "beats-baseline", "changed since the phase that made it passed")


def test_an_earlier_phases_outputs_changed_by_a_later_attempt_are_judged_again(
        ws: Path, csv_file: Path, _mlpipe_home: Path) -> None:
    """Phase 2's attempt edits phase 1's spec: phase 1's gate runs again before phase 2's, and
    its record then holds the edited file (what later gates compare with is what was judged)."""
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws),
                 "--json", env={"FAKE_AGENT_TAMPER": "phase2:ml-spec.yaml"})
    assert res.returncode == 0, res.stdout + res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    kinds = [(e["event"], e.get("phase")) for e in events]
    at = kinds.index(("phase_rechecking", "phase1"))
    assert kinds.index(("phase_started", "phase2")) < at < kinds.index(("phase_continuing", "phase2"))
    assert any(e["event"] == "warning" and "changed phase1's outputs (ml-spec.yaml)" in e["message"]
               for e in events), kinds
    state = json.loads((ws / ".mlpipe" / "state.json").read_text())
    from mlpipe_flow.state import file_sha256

    now_hash = file_sha256(ws / "ml-spec.yaml")
    assert state["phases"][0]["output_hashes"]["ml-spec.yaml"] == now_hash
    record = json.loads((_mlpipe_home / "records" / state["run_id"] / "phases" / "phase1.json")
                        .read_text())
    assert record["output_hashes"]["ml-spec.yaml"] == now_hash


def test_a_later_attempt_that_breaks_an_earlier_phase_fails_with_that_phases_checks(
        ws: Path, csv_file: Path) -> None:
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws),
                 env={"FAKE_AGENT_REMOVE": "phase2:ml-requirements.md"})
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "phase1-gate" in out and "phase1's gate no longer passes" in out, out
    assert "ml-requirements.md" in out, out
    state = json.loads((ws / ".mlpipe" / "state.json").read_text())
    assert state["phases"][1]["status"] in ("stalled", "failed")
    assert state["phases"][1]["failing_checks"] == ["phase1-gate"]
