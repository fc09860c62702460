"""Every kind of bad input gets one clear line on stderr, exit 2, no traceback, nothing lost."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import build_seed_workflow, mlpipe


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    return build_seed_workflow(tmp_path / "wf")


def assert_one_line_error(res, *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_malformed_yaml(wf: Path) -> None:
    (wf / "phases/phase2.yaml").write_text("id: phase2\nname: [unclosed\n")
    assert_one_line_error(mlpipe("phases", "--workflow", str(wf)), "phase2.yaml", "malformed YAML")


def test_unknown_field(wf: Path) -> None:
    p = wf / "phases/phase3.yaml"
    p.write_text(p.read_text() + "colour: blue\n")
    assert_one_line_error(mlpipe("phases", "--workflow", str(wf)), "phase3.yaml",
                          "unknown field 'colour'", "allowed:", "max_attempts")


def test_missing_field(wf: Path) -> None:
    p = wf / "phases/phase1.yaml"
    p.write_text("\n".join(ln for ln in p.read_text().splitlines() if not ln.startswith("gate:")) + "\n")
    assert_one_line_error(mlpipe("phases", "--workflow", str(wf)), "phase1.yaml", "missing field 'gate'")


def test_wrong_type(wf: Path) -> None:
    p = wf / "phases/phase1.yaml"
    p.write_text(p.read_text().replace("max_attempts: 3", "max_attempts: lots"))
    assert_one_line_error(mlpipe("phases", "--workflow", str(wf)), "phase1.yaml", "max_attempts",
                          "'lots'")


def test_unknown_check_kind(wf: Path) -> None:
    p = wf / "gates/phase2.yaml"
    p.write_text(p.read_text().replace("kind: pytest", "kind: pytset"))
    assert_one_line_error(mlpipe("phases", "--workflow", str(wf)), "phase2.yaml",
                          "unknown check kind 'pytset'", "known:", "exists")


def test_bad_check_params(wf: Path) -> None:
    p = wf / "gates/phase1.yaml"
    p.write_text(p.read_text().replace("params: {paths: [ml-spec.yaml]}", "params: {pathz: [x]}"))
    assert_one_line_error(mlpipe("phases", "--workflow", str(wf)), "phase1.yaml", "params",
                          "pathz")


def test_template_with_undefined_variable(wf: Path, tmp_path: Path) -> None:
    p = wf / "prompts/phase1.j2"
    p.write_text(p.read_text() + "\n{{ not_a_variable }}\n")
    res = mlpipe("render", "phase1", "predict churn", "--workflow", str(wf), "-w", str(tmp_path))
    assert_one_line_error(res, "phase1.j2", "not_a_variable")
    ws = tmp_path / "ws"
    from conftest import use_fake_agent

    use_fake_agent(ws, workflow=wf)
    res = mlpipe("run", "predict churn", "-w", str(ws))
    assert_one_line_error(res, "phase1.j2", "not_a_variable")
    assert not (ws / "ml-requirements.md").exists()  # nothing dispatched


def test_unknown_phase_id(ws: Path) -> None:
    assert_one_line_error(mlpipe("gate", "phase9", "-w", str(ws)), "unknown phase 'phase9'", "phase1")
    assert_one_line_error(mlpipe("run", "x", "--phase", "phase9", "-w", str(ws)), "unknown phase 'phase9'")


def test_unknown_runner(ws: Path) -> None:
    assert_one_line_error(mlpipe("run", "x", "--runner", "gpt-magic", "-w", str(ws)),
                          "unknown runner 'gpt-magic'", "command")


def test_data_path_missing(ws: Path) -> None:
    res = mlpipe("run", "x", "--data", "/no/such/file.csv", "-w", str(ws))
    assert_one_line_error(res, "/no/such/file.csv", "no such file")
    assert not (ws / ".mlpipe").exists()


def test_workspace_not_writable(tmp_path: Path, csv_file: Path) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    res = mlpipe("run", "x", "--data", str(csv_file), "-w", str(blocker / "ws"),
                 env={"MLPIPE_RUNNER": ""})
    assert_one_line_error(res, "cannot be written")


def test_workflow_missing_phases(wf: Path) -> None:
    shutil.rmtree(wf / "phases")
    assert_one_line_error(mlpipe("phases", "--workflow", str(wf)), "has no phases/")


def test_bad_config_file(ws: Path) -> None:
    (ws / "mlpipe.yaml").write_text("runner: command\nretries: 3\n")
    assert_one_line_error(mlpipe("run", "x", "-w", str(ws)), "mlpipe.yaml", "unknown field 'retries'")


def test_bad_env_setting(ws: Path) -> None:
    res = mlpipe("run", "x", "-w", str(ws), env={"MLPIPE_MAX_ATTEMPTS": "many"})
    assert_one_line_error(res, "MLPIPE_MAX_ATTEMPTS", "many")


def test_missing_command_template(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "mlpipe.yaml").write_text("runner: command\n")
    assert_one_line_error(mlpipe("run", "x", "-w", str(ws)), "command template")


def test_problem_mismatch_on_resume(ws: Path, csv_file: Path) -> None:
    assert mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase",
                  "phase1").returncode == 0
    assert_one_line_error(mlpipe("run", "predict price", "-w", str(ws)), "different problem", "--fresh")


def test_refused_fresh_run_keeps_the_old_state(ws: Path, csv_file: Path) -> None:
    """`--fresh` that is then refused (phase4 needs phase3) sets nothing aside: the run that
    was there still resumes."""
    assert mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase",
                  "phase1").returncode == 0
    before = (ws / ".mlpipe/state.json").read_text()
    assert_one_line_error(mlpipe("run", "predict churn", "-w", str(ws), "--fresh", "--phase",
                                 "phase4"), "phase4 needs phase3")
    assert (ws / ".mlpipe/state.json").read_text() == before
    assert not list((ws / ".mlpipe").glob("state.*.json"))
