"""Built-in phase 6 (continuous training): retraining with a champion/challenger decision, the
MLflow Model Registry (aliases champion/challenger) with the serving export the API loads, the
Airflow DAG, canary rollout, rollback and the guide."""

from __future__ import annotations

import json
from pathlib import Path

from mlpipe_flow import proc
from mlpipe_flow.builtin import BuiltinTask, BuiltinUserError
from mlpipe_flow.builtin.project import write_project_files
from mlpipe_flow.builtin.workspace_io import (
    TEMPLATES,
    copy_templates,
    read_meta,
    read_spec,
    render_doc,
    write_text,
)


def run(task: BuiltinTask) -> None:
    import sys

    ws = Path.cwd()
    spec = read_spec(ws)
    meta = read_meta(ws)
    schedule = str((spec.get("retraining") or {}).get("schedule") or "@weekly")
    rels = ["continuous_training", "rollback", "canary_deployment"]
    # what the scripts import from earlier phases, where an earlier phase did not leave it
    for rel in ("deployment/validate_model.py", "models/__init__.py", "models/metrics.py",
                "models/tracking.py"):
        if not (ws / rel).is_file():
            rels.append(rel)
    copy_templates(ws, rels)
    dag = (TEMPLATES / "airflow_dags" / "continuous_training.py").read_text(encoding="utf-8")
    write_text(ws / "airflow_dags" / "continuous_training.py",
               dag.replace("{{ schedule }}", schedule))
    # register the phase-3 model in the MLflow Model Registry as the champion and export it
    res = proc.run([sys.executable, "-c", "from continuous_training import registry; "
                    "import json; print(json.dumps(registry.ensure_initialised()))"],
                   cwd=ws, timeout_s=300, env=proc.scrubbed_env(extra={"PYTHONPATH": str(ws)}))
    if not res.ok:
        raise BuiltinUserError(f"could not initialise the model registry: {res.output[-300:]}")
    write_text(ws / "continuous-training-guide.md", render_doc("continuous-training-guide.md.j2", {
        "meta": meta, "schedule": schedule, "champion": json.loads(res.output.splitlines()[-1])}))
    # the project's own README (only commands whose files exist), pinned requirements, .gitignore
    write_project_files(ws, spec, meta)
