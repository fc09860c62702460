"""The pytest check's counts: passed, failed, skipped and errors, in its evidence and message,
whatever verbosity the workspace's pytest configuration sets (real pytest subprocesses)."""

from __future__ import annotations

from pathlib import Path

from mlpipe_flow.checks.base import CheckContext
from mlpipe_flow.checks.tests import PytestParams, pytest

TESTS = """\
import pytest

def test_a():
    pass

def test_b():
    pass

@pytest.mark.skip(reason="needs docker")
def test_c():
    pass

def test_d():
    pytest.skip("later")
"""


def run_check(ws: Path, **params: object) -> tuple[str, str, dict[str, object]]:
    res = pytest(CheckContext(workspace=ws, phase="phase3", timeout_s=60),
                 PytestParams(path="tests/test_x.py", **params))  # type: ignore[arg-type]
    return res.status, res.message, res.evidence


def workspace(tmp_path: Path, tests: str, ini: str | None = None) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/test_x.py").write_text(tests)
    if ini is not None:
        (tmp_path / "pytest.ini").write_text(ini)
    return tmp_path


def test_skipped_tests_are_counted_in_evidence_and_message(tmp_path: Path) -> None:
    status, message, evidence = run_check(workspace(tmp_path, TESTS))
    assert status == "passed"
    assert message == "2 passed, 0 failed, 2 skipped, 0 errors"
    assert {k: evidence[k] for k in ("passed", "failed", "skipped", "errors")} == {
        "passed": 2, "failed": 0, "skipped": 2, "errors": 0}
    assert not list(tmp_path.rglob("*.xml"))  # pytest's report is written outside the workspace


def test_counts_survive_a_quiet_pytest_configuration(tmp_path: Path) -> None:
    """`addopts = -q` plus the gate's -q prints no summary line at all: the counts still come."""
    ws = workspace(tmp_path, TESTS + "\ndef test_e():\n    assert False\n", ini="[pytest]\naddopts = -q\n")
    status, message, evidence = run_check(ws)
    assert status == "failed"
    assert message == "2 passed, 1 failed, 2 skipped, 0 errors (exit status 1)"
    assert (evidence["passed"], evidence["failed"], evidence["skipped"]) == (2, 1, 2)
    (ws / "tests/test_x.py").write_text(TESTS)
    status, message, _ = run_check(ws, min_tests=3)
    assert status == "failed"
    assert message == "2 tests passed, expected at least 3 (2 passed, 0 failed, 2 skipped, 0 errors)"


def test_a_collection_error_is_counted(tmp_path: Path) -> None:
    status, message, evidence = run_check(workspace(tmp_path, "import not_a_module\n"))
    assert status == "failed" and evidence["errors"] == 1, message
    assert message.startswith("0 passed, 0 failed, 0 skipped, 1 errors"), message
