"""The generated project as something to pick up: README.md, requirements.txt, .gitignore, and
the next steps (commands) that the files in the workspace support.

`next_steps(ws)` is the one list of commands: the README shows it and the run's summary
(prompts/summary.j2) prints it, so neither names a file, module or DAG that does not exist.
`write_project_files(ws, spec, meta)` writes the three files at the end of phase 6. Light on
purpose (no pandas, no sklearn): the engine imports `next_steps` for its summary.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: folders never scanned for imports (environments, records, data, stores)
SKIP_DIRS = {".venv", "venv", ".mlpipe", ".git", "data", "mlruns", "__pycache__", "registry",
             ".pytest_cache", "node_modules", ".ipynb_checkpoints"}
#: run by a command rather than imported: pinned when installed
COMMAND_DEPS = ("uvicorn", "pytest")
#: the order of the steps, and the README's sections
SECTIONS = (("setup", "Set up"), ("test", "Test"), ("data", "Run the data pipeline"),
            ("train", "Train"), ("serve", "Serve"), ("monitor", "Monitor"),
            ("retrain", "Retrain"), ("schedule", "Schedule (Airflow)"), ("deploy", "Deploy"))
DAG_ID = re.compile(r"""dag_id\s*=\s*["']([\w.-]+)["']""")


@dataclass(frozen=True)
class Step:
    """One next step: a shell command run from the project folder. `needs`: the project files
    it uses (the step exists only when they do); `tool`: the program it needs beyond the
    project's Python environment, `module` a Python package it needs beyond requirements.txt;
    `service`: what must already be running for it (a cluster, an Airflow deployment, a Docker
    daemon), `probe` a harmless command that succeeds when it is; `server`: it keeps running
    (a server or UI) on `port`; `ok_exit`: the exit statuses that are results, not failures."""

    section: str
    title: str
    command: str
    needs: tuple[str, ...]
    tool: str | None = None
    module: str | None = None
    service: str | None = None
    probe: str | None = None
    server: bool = False
    port: int | None = None
    ok_exit: tuple[int, ...] = (0,)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dag_id(ws: Path, rel: str) -> str | None:
    try:
        found = DAG_ID.search((ws / rel).read_text(encoding="utf-8"))
    except OSError:
        return None
    return found.group(1) if found else None


def _candidates(ws: Path) -> list[Step]:
    ct_dag = dag_id(ws, "airflow_dags/continuous_training.py")
    data_dag = dag_id(ws, "airflow_dags/data_pipeline.py")
    steps = [
        Step("setup", "Install the pinned dependencies", "pip install -r requirements.txt",
             ("requirements.txt",)),
        Step("test", "Run the project's tests", "python -m pytest tests/", ("tests",)),
        Step("data", "Ingest the raw data", "python -m data_ingestion.ingest",
             ("data_ingestion/ingest.py", "ml-spec.yaml")),
        Step("data", "Validate it against the schema", "python -m data_quality.schema",
             ("data_quality/schema.py", "data_quality/schema.json")),
        Step("data", "Rebuild the train/valid/test splits", "python -m feature_engineering.features",
             ("feature_engineering/features.py",)),
        Step("train", "Train, compare and save the best model", "python -m models.train_model",
             ("models/train_model.py", "data/splits/train.csv")),
        Step("train", "Explain the model (feature importance)", "python -m interpretability.explain",
             ("interpretability/explain.py", "artifacts/model.joblib")),
        Step("train", "Browse the experiments (the UI needs the full mlflow package)",
             "mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000", ("mlflow.db",),
             tool="mlflow", module="flask", server=True, port=5000),
        Step("serve", "Serve the model locally", "uvicorn deployment.api.main:app --port 8000",
             ("deployment/api/main.py",), tool="uvicorn", server=True, port=8000),
        Step("deploy", "Build the API image",
             "docker build -f deployment/docker/Dockerfile -t model-api .",
             ("deployment/docker/Dockerfile",), tool="docker", service="a Docker daemon",
             probe="docker info"),
        Step("deploy", "Deploy to Kubernetes", "kubectl apply -R -f deployment/k8s/",
             ("deployment/k8s",), tool="kubectl", service="a Kubernetes cluster"),
        Step("monitor", "Unit-test the alert rules",
             "promtool test rules monitoring/alerts/alerts_test.yml",
             ("monitoring/alerts/alerts_test.yml",), tool="promtool"),
        Step("monitor", "Check the logged production inputs for drift",
             "python monitoring/drift_detection/detect_drift.py",
             ("monitoring/drift_detection/detect_drift.py", "data/splits/train.csv"),
             ok_exit=(0, 1, 3)),  # no drift | drift | no production data
        Step("retrain", "Merge the labelled feedback (data/feedback/*.csv) into a training set",
             "python monitoring/drift_detection/production_data.py --out data/retrain/train.csv",
             ("monitoring/drift_detection/production_data.py", "data/splits/train.csv")),
        Step("retrain", "Retrain and run the champion/challenger decision",
             "python continuous_training/retrain.py --data data/retrain/train.csv",
             ("continuous_training/retrain.py", "monitoring/drift_detection/production_data.py")),
        Step("retrain", "Retrain on the training split", "python continuous_training/retrain.py",
             ("continuous_training/retrain.py",)),
        Step("retrain", "Roll back to the previous champion", "python rollback/rollback.py",
             ("rollback/rollback.py",), ok_exit=(0, 1)),  # 1: nothing to roll back to
        Step("deploy", "Roll a promoted version out as a canary (behind router.py or the ingress)",
             "python canary_deployment/canary.py --router http://127.0.0.1:8080 "
             "--prometheus http://127.0.0.1:9090",
             ("canary_deployment/canary.py", "canary_deployment/router.py"),
             service="router.py in front of two API instances, and Prometheus scraping them"),
    ]
    if data_dag:
        steps.append(Step("schedule", "Run the data pipeline DAG", f"airflow dags trigger {data_dag}",
                          ("airflow_dags/data_pipeline.py",), tool="airflow",
                          service="an Airflow 3 deployment"))
    if ct_dag:
        steps.append(Step("schedule", "Run the continuous-training DAG (drift decides)",
                          f"airflow dags trigger {ct_dag}",
                          ("airflow_dags/continuous_training.py",), tool="airflow",
                          service="an Airflow 3 deployment"))
    return steps


def next_steps(ws: Path) -> list[Step]:
    """The steps whose files exist in `ws`, in the order an engineer takes them. "Retrain on the
    training split" only when there is no feedback merge step to use instead."""
    out = [s for s in _candidates(ws) if all((ws / n).exists() for n in s.needs)]
    if any(s.command.startswith("python monitoring/drift_detection/production_data.py")
           for s in out):
        out = [s for s in out if s.command != "python continuous_training/retrain.py"]
    order = [key for key, _ in SECTIONS]
    return sorted(out, key=lambda s: order.index(s.section))


def summary_context(ws: Path) -> dict[str, Any]:
    """What the run's summary (prompts/summary.j2) lists: `next_steps` and the `docs` present."""
    return {"next_steps": [s.as_dict() for s in next_steps(ws)],
            "docs": [d for d in ("README.md", *DOCS) if (ws / d).is_file()]}


# -- requirements.txt ------------------------------------------------------------------------
def _python_files(ws: Path) -> list[Path]:
    out = []
    for p in sorted(ws.rglob("*.py")):
        rel = p.relative_to(ws).parts
        if not any(part in SKIP_DIRS or part.startswith(".") for part in rel[:-1]):
            out.append(p)
    return out


def imported_modules(ws: Path) -> set[str]:
    """Top-level names the project's Python files import (anywhere in the file), minus the
    standard library and the project's own packages and modules."""
    local = {p.name for p in ws.iterdir() if p.is_dir()} | {p.stem for p in ws.glob("*.py")}
    names: set[str] = set()
    for path in _python_files(ws):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        local.add(path.stem)  # scripts import their siblings by name
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in local
            and n != "__future__"}


def requirements(ws: Path) -> tuple[list[str], list[str]]:
    """(pinned `dist==version` lines, imported modules not installed here)."""
    from importlib import metadata

    by_module = metadata.packages_distributions()
    pins: dict[str, str] = {}
    missing = []
    for module in sorted(imported_modules(ws) | set(COMMAND_DEPS)):
        dists = by_module.get(module)
        if not dists:
            missing.append(module)
            continue
        for dist in dists[:1]:
            name = metadata.metadata(dist)["Name"]
            pins[name.lower()] = f"{name}=={metadata.version(dist)}"
    return [pins[k] for k in sorted(pins)], missing


def requirements_text(ws: Path) -> str:
    pins, missing = requirements(ws)
    lines = [f"# Pinned from the environment that built and tested this project (Python "
             f"{sys.version_info.major}.{sys.version_info.minor}):",
             "# every third-party package its code imports, and the server and test runner its "
             "commands use.", "# Install: pip install -r requirements.txt", *pins]
    if "airflow" in missing:
        lines += ["", "# airflow_dags/ run on an Airflow 3 deployment (its scheduler and workers "
                  "need this project's packages above), not in this environment:",
                  "# apache-airflow>=3.0 apache-airflow-providers-standard"]
    other = [m for m in missing if m != "airflow"]
    if other:
        lines += ["", "# imported but not installed where the project was built (optional "
                  "paths; install to use them): " + ", ".join(other)]
    return "\n".join(lines) + "\n"


# -- .gitignore --------------------------------------------------------------------------------
GITIGNORE = """\
# Python
__pycache__/
*.py[cod]
.venv/
venv/
.pytest_cache/
.ipynb_checkpoints/

# mlpipe's run records (state, logs, the data source URL: may hold a secret)
.mlpipe/
.env

# Data that comes from outside or from production; re-created by the pipeline and the API
data/raw/
data/interim/
data/production/
data/feedback/
data/retrain/

# MLflow tracking store and runs (re-created by python -m models.train_model)
mlflow.db
mlflow.db.*
mlruns/

# Written by the jobs at run time
monitoring/drift_detection/latest_report.json
monitoring/drift_detection/latest_drift.png
canary_deployment/.router-weight.json
"""


# -- README.md --------------------------------------------------------------------------------
LAYOUT = (
    ("ml-spec.yaml", "the machine-readable spec: problem, target, metrics, ids, serving, schedule"),
    ("data_ingestion/", "load and clean the raw data"),
    ("data_quality/", "the schema and its validation"),
    ("feature_engineering/", "preprocessing and the train/valid/test splits"),
    ("eda_notebooks/", "exploratory analysis (executed notebook)"),
    ("models/", "training, metrics, evaluation, MLflow tracking"),
    ("interpretability/", "feature importance"),
    ("model_cards/", "the model card"),
    ("artifacts/", "the saved model and its metadata"),
    ("deployment/", "the FastAPI service, its Dockerfile and Kubernetes manifests"),
    ("ab_testing/", "A/B test analysis"),
    ("monitoring/", "Prometheus config and alerts, Grafana dashboard, drift detection"),
    ("continuous_training/", "retraining with a champion/challenger decision"),
    ("canary_deployment/", "canary rollout, its weighted router and ingress"),
    ("rollback/", "rollback to the previous champion"),
    ("airflow_dags/", "the Airflow 3 DAGs: data pipeline, continuous training"),
    ("tests/", "the project's tests"),
)
DOCS = ("ml-requirements.md", "ml-architecture.md", "tech-stack.md", "project-plan.md",
        "deployment-guide.md", "monitoring-guide.md", "continuous-training-guide.md")


def readme_text(ws: Path, spec: dict[str, Any], meta: dict[str, Any]) -> str:
    steps = next_steps(ws)
    score = meta.get("test_score")
    shown = f"{score:.4f}" if isinstance(score, (int, float)) else "n/a"
    lines = [f"# {spec.get('problem') or 'ML project'}", "",
             f"A {str(meta.get('problem_type', spec.get('problem_type', ''))).replace('_', ' ')} "
             f"model predicting `{meta.get('target')}` from {len(meta.get('feature_columns', []))} "
             f"features, served by an HTTP API, monitored, and retrained when its inputs drift. "
             f"Model: {meta.get('model_name') or meta.get('estimator') or 'see artifacts/'} "
             f"(version {meta.get('version')}), {meta.get('primary_metric')} {shown} on the "
             "held-out test split.", "",
             "Generated by mlpipe; every command below exists in this project and is run from "
             "its root folder.", "", "## Layout", ""]
    lines += [f"- `{path}` {what}" for path, what in LAYOUT if (ws / path).exists()]
    for key, heading in SECTIONS:
        mine = [s for s in steps if s.section == key]
        if not mine:
            continue
        lines += ["", f"## {heading}", ""]
        if key == "retrain":
            lines += [
                "The API logs a sample of its inputs to `data/production/inputs-*.jsonl`. Put "
                f"labelled outcomes in `data/feedback/*.csv`: the target column `{meta.get('target')}` "
                "and either every feature column or the id column(s) "
                f"{', '.join(f'`{c}`' for c in spec.get('id_columns') or []) or '(none in ml-spec.yaml)'}. "
                "The drift job decides whether to retrain; retraining trains on the training "
                "split plus that feedback and promotes the challenger only when it does at "
                "least as well as the champion on the hold-out split (`--min-improvement`); a "
                "promoted version goes out as a canary and is rolled back when it degrades.", ""]
        if key == "schedule":
            lines += ["The DAGs find the project from their own location (or `ML_PROJECT_DIR`) "
                      "and run `python` from the worker's PATH: run the workers in this "
                      "project's environment. `python airflow_dags/<dag>.py` runs a DAG once "
                      "locally (`dag.test()`).", ""]
        for s in mine:
            lines += [f"{s.title}:", "", "```", s.command, "```", ""]
        while lines[-1] == "":
            lines.pop()
    docs = [d for d in DOCS if (ws / d).is_file()]
    if docs:
        lines += ["", "## Documentation", ""] + [f"- [{d}]({d})" for d in docs]
    return "\n".join(lines) + "\n"


def write_project_files(ws: Path, spec: dict[str, Any], meta: dict[str, Any]) -> None:
    """README.md, requirements.txt and .gitignore of the generated project (overwritten: they
    describe the files that exist now)."""
    from mlpipe_flow.builtin.files import atomic_write

    atomic_write(ws / "requirements.txt", requirements_text(ws))
    atomic_write(ws / ".gitignore", GITIGNORE)
    atomic_write(ws / "README.md", readme_text(ws, spec, meta))  # last: it lists the others
