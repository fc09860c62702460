"""Built-in phase 6 (continuous training): retraining with a champion/challenger decision, a
file model registry, the Airflow DAG, canary rollout, rollback and the guide."""

from __future__ import annotations

import json
from pathlib import Path

from mlpipe_flow import proc
from mlpipe_flow.builtin import BuiltinTask, BuiltinUserError
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
    if not (ws / "deployment" / "validate_model.py").is_file():
        rels.append("deployment/validate_model.py")
    copy_templates(ws, rels)
    dag = (TEMPLATES / "airflow_dags" / "continuous_training.py").read_text(encoding="utf-8")
    write_text(ws / "airflow_dags" / "continuous_training.py",
               dag.replace("{{ schedule }}", schedule))
    # initialise the registry with the phase-3 model as champion (version from model_meta.json)
    res = proc.run([sys.executable, "-c", "from continuous_training import registry; "
                    "import json; print(json.dumps(registry.ensure_initialised()))"],
                   cwd=ws, timeout_s=120, env=proc.scrubbed_env(extra={"PYTHONPATH": str(ws)}))
    if not res.ok:
        raise BuiltinUserError(f"could not initialise the model registry: {res.output[-300:]}")
    write_text(ws / "continuous-training-guide.md", render_doc("continuous-training-guide.md.j2", {
        "meta": meta, "schedule": schedule, "champion": json.loads(res.output.splitlines()[-1])}))
