"""The generated project can be picked up (issue 11): README.md, a pinned requirements.txt and a
.gitignore (mlpipe_flow.builtin.project), and next steps that come from the files that exist.

The run's summary and the README list the same commands (`next_steps`); here each one that can
run on this machine runs in a copy of a built workspace and must succeed — servers start and
answer — and each one that cannot says why (a tool or a service that is not here)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml

from ml_workspace import copy
from mlpipe_flow.builtin.project import (
    Step,
    imported_modules,
    next_steps,
    summary_context,
    write_project_files,
)


@pytest.fixture(scope="module")
def project(telco_ct: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's Telco workspace built through phase 6 by the built-in agent, and
    the project files phase 6 ends with."""
    ws = copy(telco_ct, tmp_path_factory.mktemp("project") / "ws")
    spec = yaml.safe_load((ws / "ml-spec.yaml").read_text())
    meta = json.loads((ws / "artifacts/model_meta.json").read_text())
    write_project_files(ws, spec, meta)
    return ws


def test_next_steps_only_name_what_exists(project: Path, tmp_path: Path) -> None:
    assert next_steps(tmp_path) == []
    steps = next_steps(project)
    commands = [s.command for s in steps]
    for s in steps:
        assert all((project / n).exists() for n in s.needs), s
    assert "kubectl apply -R -f deployment/k8s/" in commands
    dag = (project / "airflow_dags/continuous_training.py").read_text()
    dag_id = re.search(r'dag_id="([\w-]+)"', dag)
    assert dag_id and f"airflow dags trigger {dag_id.group(1)}" in commands
    partial = copy(project, tmp_path / "partial")
    shutil.rmtree(partial / "continuous_training")
    shutil.rmtree(partial / "deployment" / "k8s")
    left = [s.command for s in next_steps(partial)]
    assert not any("continuous_training/" in c or "deployment/k8s" in c for c in left), left


def test_the_summary_lists_the_next_steps(project: Path) -> None:
    from mlpipe_flow.engine import summary_text
    from mlpipe_flow.state import PhaseRecord, RunState
    from mlpipe_flow.workflow import load_workflow

    wf = load_workflow()
    state = RunState(run_id="r1", problem="predict churn", runner="builtin", workflow="builtin",
                     progress=100, status="passed",
                     phases=[PhaseRecord(id=p.id, status="passed") for p in wf.phases])
    text = summary_text(wf, state, project)
    listed = re.findall(r"^\d+\. [^:]+: (.+?)(?:  \(needs .*\))?$",
                        text.split("Next Steps")[1].split("Documentation:")[0], re.M)
    assert listed == [s.command for s in next_steps(project)], text
    for stale in ("run_pipeline.py", "deployment/k8s/staging", "--reload"):
        assert stale not in text
    assert "- README.md" in text and "- monitoring-guide.md" in text
    assert summary_context(project)["docs"][0] == "README.md"


def test_requirements_pin_what_the_project_imports(project: Path) -> None:
    lines = [ln for ln in (project / "requirements.txt").read_text().splitlines()
             if ln and not ln.startswith("#")]
    pins = dict(ln.split("==") for ln in lines)
    for name, version in pins.items():
        assert metadata.version(name) == version, name
    names = {re.sub(r"[-_.]+", "-", n.lower()) for n in pins}
    for needed in ("pandas", "scikit-learn", "fastapi", "uvicorn", "pytest", "joblib",
                   "prometheus-client", "pyyaml", "httpx"):
        assert needed in names, (needed, sorted(names))
    assert any(n.startswith("mlflow") for n in names), sorted(names)  # mlflow or mlflow-skinny
    modules = imported_modules(project)
    assert "airflow" in modules and not {"os", "json", "models", "deployment"} & modules
    assert "apache-airflow" in (project / "requirements.txt").read_text()  # said, not pinned


def test_gitignore_keeps_data_records_and_secrets_out(project: Path) -> None:
    ignored = set((project / ".gitignore").read_text().split())
    assert {".mlpipe/", "data/raw/", "data/production/", "mlruns/", "mlflow.db"} <= ignored
    git = shutil.which("git")
    if git:
        subprocess.run([git, "init", "-q"], cwd=project, check=True)
        out = subprocess.run([git, "status", "--porcelain", "--ignored", "-uall"], cwd=project,
                             capture_output=True, text=True, check=True).stdout
        shutil.rmtree(project / ".git")
        kept = [ln[3:] for ln in out.splitlines() if ln.startswith("??")]
        assert not [p for p in kept if p.startswith((".mlpipe/", "data/raw/", "mlruns/"))]
        assert "deployment/api/main.py" in kept and "README.md" in kept


def readme_commands(text: str) -> list[str]:
    return [c.strip() for c in re.findall(r"```\n(.*?)\n```", text, re.S)]


def test_readme_commands_exist(project: Path) -> None:
    text = (project / "README.md").read_text()
    for section in ("## Set up", "## Test", "## Retrain", "## Deploy", "## Serve"):
        assert section in text, section
    commands = readme_commands(text)
    assert commands == [s.command for s in next_steps(project)]
    for command in commands:
        words = shlex.split(command)
        if words[:2] == ["python", "-m"]:
            mod = Path(*words[2].split("."))
            assert words[2] == "pytest" or (project / f"{mod}.py").is_file() \
                or (project / mod / "__main__.py").is_file(), command
        elif words[0] == "python":
            assert (project / words[1]).is_file(), command
        for word in words[1:]:
            if "/" in word and not word.startswith(("http", "sqlite")) and "=" not in word \
                    and not word.startswith("data/retrain"):
                assert (project / word).exists(), (command, word)


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def _serve(step: Step, ws: Path) -> str:
    from mlpipe_flow.proc import free_port

    port = free_port()
    command = step.command.replace(f"--port {step.port}", f"--port {port}")
    server = subprocess.Popen(shlex.split(command), cwd=ws, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert server.poll() is None, (command, server.stderr.read()[-2000:])  # type: ignore[union-attr]
            for path in ("/health", "/"):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                        if r.status == 200:
                            return f"answered {path}"
                except OSError:
                    continue
            time.sleep(0.5)
        raise AssertionError(f"{command} did not answer within 90 s")
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_each_next_step_that_can_run_here_runs(project: Path, tmp_path: Path) -> None:
    ws = copy(project, tmp_path / "ws")
    outcome: dict[str, str] = {}
    for step in next_steps(ws):
        if step.tool and not shutil.which(step.tool, path=_env()["PATH"]):
            outcome[step.command] = f"skipped: {step.tool} is not installed"
            continue
        if step.service and not (step.probe and subprocess.run(
                step.probe, shell=True, env=_env(), capture_output=True,
                timeout=60).returncode == 0):
            outcome[step.command] = f"skipped: needs {step.service}"
            continue
        if step.module and find_spec(step.module) is None:
            outcome[step.command] = f"skipped: {step.module} is not installed"
            continue
        if step.server:
            outcome[step.command] = _serve(step, ws)
            continue
        command = step.command
        if command.startswith("pip install"):  # all pins are this interpreter's: check, offline
            command = command.replace("pip install", f"{sys.executable} -m pip install "
                                      "--no-index --dry-run", 1)
        res = subprocess.run(command, shell=True, cwd=ws, env=_env(), capture_output=True,
                             text=True, timeout=1200)
        assert res.returncode in step.ok_exit, (command, res.stdout[-3000:], res.stderr[-3000:])
        outcome[step.command] = f"exit {res.returncode}"
    ran = [c for c, o in outcome.items() if not o.startswith("skipped")]
    assert {"python -m pytest tests/", "python -m data_ingestion.ingest",
            "python -m models.train_model", "uvicorn deployment.api.main:app --port 8000",
            "python monitoring/drift_detection/detect_drift.py"} <= set(ran), outcome
    print(json.dumps(outcome, indent=2))
