"""The CLI through typer's test runner (in-process)."""

from __future__ import annotations

import json
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import build_seed_workflow, mlpipe, use_fake_agent
from mlpipe_flow.cli import app

runner = CliRunner()
SEED = build_seed_workflow(Path(tempfile.mkdtemp(prefix="mlpipe-seed-wf-")) / "wf")
SEEDARG = ["--workflow", str(SEED)]


def test_help_everywhere() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("run", "gate", "phases", "render", "status", "init"):
        assert cmd in res.output
        sub = runner.invoke(app, [cmd, "--help"])
        assert sub.exit_code == 0, (cmd, sub.output)
        assert "Usage" in sub.output


def test_phases_json_shape() -> None:
    res = runner.invoke(app, ["phases", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["id"] for r in rows] == [f"phase{i}" for i in range(1, 7)]
    assert [(r["progress_start"], r["progress_end"]) for r in rows] == [
        (0, 20), (20, 45), (45, 70), (70, 85), (85, 95), (95, 100)]
    assert [r["token_estimate"] for r in rows] == [5000, 8000, 10000, 9000, 7000, 6000]
    for r in rows:
        assert {"id", "name", "progress_start", "progress_end", "agent", "gate"} <= set(r)
    assert rows[1]["agent"] == "data-engineer" and rows[4]["agent"] == "observability-specialist"


def test_phases_text() -> None:
    res = runner.invoke(app, ["phases"])
    assert res.exit_code == 0
    assert "Requirements & Design" in res.output and "95-100" in res.output


def test_gate_fails_on_a_begun_workspace_with_seed_messages(tmp_path: Path) -> None:
    (tmp_path / "tech-stack.md").write_text("python\n")  # begun: one output of phase 1, not the rest
    res = runner.invoke(app, ["gate", "phase1", "-w", str(tmp_path), "--json", *SEEDARG])
    assert res.exit_code == 1
    report = json.loads(res.output)
    assert report["phase"] == "phase1" and report["passed"] is False
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["requirements-doc"]["status"] == "failed"
    assert by_id["requirements-doc"]["message"].startswith("ML requirements not documented")
    assert by_id["requirements-doc"]["evidence"]["missing"] == ["ml-requirements.md"]
    assert by_id["architecture-doc"]["message"].startswith("Architecture not designed")
    for c in report["checks"]:
        assert {"id", "status", "message", "evidence"} <= set(c)


def test_gate_text_lines_and_detail_on_failure(tmp_path: Path) -> None:
    (tmp_path / "ml-requirements.md").write_text("We will look at the numbers.\n")
    res = runner.invoke(app, ["gate", "phase1", "-w", str(tmp_path), *SEEDARG])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert any(ln.startswith("ml-requirements.md exists") and ln.endswith("Passed") for ln in lines)
    assert any(ln.startswith("ml-requirements.md names its ML metrics") and ln.endswith("Failed")
               for ln in lines)
    assert "- ML metrics not defined" in res.output
    assert lines[-1].startswith("phase1 gate FAILED: ") and "metrics-defined" in lines[-1], lines[-1]


def test_gate_in_a_folder_with_no_workspace_says_so(tmp_path: Path) -> None:
    res = mlpipe("gate", "phase3", "-w", str(tmp_path))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"no mlpipe workspace in {tmp_path.resolve()}" in res.stderr and "-w" in res.stderr
    assert res.stdout == ""  # not a page of failures about files nobody was asked to write


def test_gate_passes_and_only_and_junit(tmp_path: Path) -> None:
    for name in ("ml-requirements.md", "ml-architecture.md", "tech-stack.md", "project-plan.md"):
        (tmp_path / name).write_text("accuracy and recall\n")
    (tmp_path / "ml-spec.yaml").write_text("target: y\n")
    junit = tmp_path / "report.xml"
    res = runner.invoke(app, ["gate", "phase1", "-w", str(tmp_path), "--junit", str(junit), *SEEDARG])
    assert res.exit_code == 0, res.output
    assert "Requirements and architecture validated" in res.output
    assert res.output.splitlines()[-1] == "phase1 gate passed: 5 of 5 checks passed"
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "5" and suite.get("failures") == "0"
    res = runner.invoke(app, ["gate", "phase1", "-w", str(tmp_path), "--only", "metrics-defined", "--json",
                              *SEEDARG])
    assert res.exit_code == 0
    assert [c["id"] for c in json.loads(res.output)["checks"]] == ["metrics-defined"]
    res = runner.invoke(app, ["gate", "phase1", "-w", str(tmp_path), "--only", "nope", *SEEDARG])
    assert res.exit_code == 2 and "no check 'nope'" in res.output


def test_junit_records_failures(tmp_path: Path) -> None:
    junit = tmp_path / "r.xml"
    (tmp_path / "data_ingestion").mkdir()  # a workspace begun (an empty folder would be refused)
    res = runner.invoke(app, ["gate", "phase2", "-w", str(tmp_path), "--junit", str(junit), *SEEDARG])
    assert res.exit_code == 1
    suite = ET.parse(junit).getroot()
    assert int(suite.get("failures")) >= 6
    failure = suite.find("testcase[@name='data-ingestion']/failure")
    assert failure is not None and "Data ingestion not implemented" in failure.get("message")


def test_render_includes_problem_data_and_contract(tmp_path: Path, csv_file: Path) -> None:
    res = runner.invoke(app, ["render", "phase1", "predict churn", "--data", str(csv_file),
                              "--target", "Churn", "-w", str(tmp_path)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "predict churn" in out and "Churn" in out
    assert "ml-requirements.md" in out and "ml-spec.yaml" in out
    assert "ml-requirements.md names its ML metrics" in out  # the gate in plain words


def test_render_masks_database_password(tmp_path: Path) -> None:
    res = runner.invoke(app, ["render", "phase1", "predict churn", "--data",
                              "postgresql://ml:hunter2@127.0.0.1/crm", "-w", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "hunter2" not in res.output and "postgresql://ml:***@127.0.0.1/crm" in res.output


def test_status_shows_config_sources(tmp_path: Path, monkeypatch) -> None:
    use_fake_agent(tmp_path, max_attempts="2")
    monkeypatch.setenv("MLPIPE_MODEL", "claude-sonnet-4-5")
    res = runner.invoke(app, ["status", "-w", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    assert st["run_id"] is None and st["phases"] == []
    cfg = st["config"]
    assert cfg["runner"] == {"value": "command", "source": str(tmp_path / "mlpipe.yaml")}
    assert cfg["max_attempts"]["value"] == 2
    assert cfg["model"] == {"value": "claude-sonnet-4-5", "source": "env MLPIPE_MODEL"}
    assert cfg["budget_usd"]["source"] == "default"
    res = runner.invoke(app, ["status", "-w", str(tmp_path)])
    assert "<- env MLPIPE_MODEL" in res.output


def test_init_copies_workflow_that_loads(tmp_path: Path) -> None:
    dest = tmp_path / "my-wf"
    res = runner.invoke(app, ["init", str(dest)])
    assert res.exit_code == 0, res.output
    assert (dest / "phases/phase1.yaml").is_file() and (dest / "gates/phase6.yaml").is_file()
    res = runner.invoke(app, ["phases", "--workflow", str(dest), "--json"])
    assert res.exit_code == 0 and len(json.loads(res.output)) == 6
    res = runner.invoke(app, ["init", str(dest)])
    assert res.exit_code == 2 and "already has" in res.output


@pytest.mark.parametrize(("args", "hint"), [
    (["run", "p", "--bogus"], "mlpipe run --help"),
    (["run", "p", "--max-attempts", "0"], "mlpipe run --help"),
    (["run"], "mlpipe run --help"), (["frob"], "mlpipe --help"),
    (["run", "p", "--data"], "mlpipe run --help"),  # a flag missing its value: the command's help
    (["gate", "phase3", "--only"], "mlpipe gate --help")])
def test_usage_errors_are_one_line(args: list[str], hint: str) -> None:
    res = mlpipe(*args)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("mlpipe: error: "), res.stderr
    assert f"(see `{hint}`)" in res.stderr and "Traceback" not in res.stderr
