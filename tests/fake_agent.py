"""A fake agent CLI for the tests: writes each phase's contract of the default workflow.

Run by the `command` runner as `python fake_agent.py {task_file}`. Behaviour is steered by
environment variables the tests set:
  FAKE_AGENT_FAIL_ONCE=phase2   the first attempt at that phase leaves its tests failing
  FAKE_AGENT_FAIL_ALWAYS=phase2 every attempt does (for stall detection)
  FAKE_AGENT_SLEEP=phase3:30    sleep that many seconds in that phase, after writing half
  FAKE_AGENT_LOG=path           append "phase attempt repair" lines, one per invocation
  FAKE_AGENT_EXIT=3             exit with this status after writing (a crashing agent)
  FAKE_AGENT_TAMPER=phase1:PATH append a line to PATH (workspace-relative or absolute) in that
                                phase's first attempt: a file the agent may not touch
  FAKE_AGENT_REMOVE=phase2:PATH delete PATH (workspace-relative) in every attempt at that phase:
                                an earlier phase's output it breaks
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

PASSING_TEST = "def test_ok():\n    assert 1 + 1 == 2\n"
FAILING_TEST = "def test_broken():\n    assert 1 + 1 == 3, 'deliberately wrong on the first attempt'\n"


def write(rel: str, text: str) -> None:
    p = Path(rel)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")


def phase1(ok: bool) -> None:
    metrics = "Primary metric: ROC AUC; also precision, recall and accuracy." if ok else "TBD"
    write("ml-requirements.md", f"# ML requirements\n\nBinary classification.\n\n{metrics}\n")
    write("ml-architecture.md", "# Architecture\n\nbatch ingestion -> features -> model -> API\n")
    write("tech-stack.md", "# Tech stack\n\npandas, scikit-learn, MLflow, FastAPI\n")
    write("project-plan.md", "# Plan\n\n1. data\n2. model\n3. deploy\n")
    write("ml-spec.yaml", "problem_type: binary_classification\ntarget: Churn\nprimary_metric: roc_auc\n")


def phase2(ok: bool) -> None:
    write("data_ingestion/ingest.py", "def load(path):\n    return open(path).read()\n")
    write("feature_engineering/features.py", "def build(rows):\n    return rows\n")
    write("data_quality/schema.json", json.dumps({"columns": ["a", "b"]}))
    write("airflow_dags/data_pipeline.py", "# DAG: ingest >> validate >> features\n")
    write("eda_notebooks/eda.ipynb", json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                  "nbformat_minor": 5}))
    for split in ("train", "valid", "test"):
        write(f"data/splits/{split}.csv", "a,b\n1,2\n")
    write("tests/test_data_pipeline.py", PASSING_TEST if ok else FAILING_TEST)


def phase3(ok: bool) -> None:
    write("models/train_model.py", "import mlflow\n\ndef train():\n    mlflow.log_metric('auc', 0.8)\n")
    write("experiments/results.json", json.dumps({"logreg": {"cv_mean": 0.8, "cv_std": 0.01}}))
    write("model_cards/model_card.md", "# Model card\n")
    write("interpretability/importance.json", json.dumps({"a": 0.5}))
    sleep_in("phase3")
    write("artifacts/model.joblib", "not really a model")
    write("tests/test_models.py", PASSING_TEST if ok else FAILING_TEST)


def phase4(ok: bool) -> None:
    write("deployment/api/main.py", "from prometheus_client import Counter\napp = None\n")
    write("deployment/docker/Dockerfile", "FROM python:3.11-slim\nUSER app\n")
    write("deployment/k8s/deployment.yaml", "kind: Deployment\n")
    write(".github/workflows/ci.yml", "on: push\n")
    write("ab_testing/split.py", "def arm(key):\n    return hash(key) % 2\n")
    write("deployment-guide.md", "# Deploying\n")
    write("tests/test_api.py", PASSING_TEST if ok else FAILING_TEST)


def phase5(ok: bool) -> None:
    write("monitoring/prometheus/prometheus.yml", "scrape_configs: []\n")
    write("monitoring/grafana/dashboard.json", json.dumps({"panels": []}))
    write("monitoring/alerts/rules.yml", "groups: []\n")
    write("monitoring/drift_detection/drift.py", "def psi(a, b):\n    return 0.0\n")
    write("monitoring-guide.md", "# Monitoring\n\n## On-call runbook\n" if ok else "# Monitoring\n")


def phase6(ok: bool) -> None:
    write("continuous_training/retrain.py", "def retrain():\n    pass\n")
    write("airflow_dags/continuous_training.py", "# check >> retrain >> canary\n")
    write("canary_deployment/canary.py", "STEPS = [5, 25, 50, 100]\n")
    if ok:
        write("rollback/rollback.sh", "#!/bin/sh\necho rollback\n")
    write("continuous-training-guide.md", "# Continuous training\n")


def sleep_in(phase: str) -> None:
    spec = os.environ.get("FAKE_AGENT_SLEEP", "")
    if spec.startswith(phase + ":"):
        time.sleep(float(spec.split(":", 1)[1]))


def main() -> int:
    task = json.loads(Path(sys.argv[1]).read_text())
    phase = task["phase"]
    os.chdir(task["workspace"])
    log = os.environ.get("FAKE_AGENT_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{phase} {task['attempt']} {'repair' if task['repair'] else 'first'}\n")
    prompt = Path(task["prompt_file"]).read_text()
    print(f"fake agent: {phase} attempt {task['attempt']}, prompt of {len(prompt)} chars")
    ok = True
    if os.environ.get("FAKE_AGENT_FAIL_ALWAYS") == phase:
        ok = False
    if os.environ.get("FAKE_AGENT_FAIL_ONCE") == phase and not task["repair"]:
        ok = False
    globals()[phase](ok)
    tamper = os.environ.get("FAKE_AGENT_TAMPER", "")
    if tamper.startswith(phase + ":") and not task["repair"]:
        target = Path(tamper.split(":", 1)[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a") as f:
            f.write("# changed by the agent\n")
    remove = os.environ.get("FAKE_AGENT_REMOVE", "")
    if remove.startswith(phase + ":"):
        Path(remove.split(":", 1)[1]).unlink(missing_ok=True)
    print(f"fake agent: wrote the {phase} contract ({'complete' if ok else 'with a mistake'})")
    return int(os.environ.get("FAKE_AGENT_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main())
