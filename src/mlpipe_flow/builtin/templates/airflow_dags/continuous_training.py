"""Continuous training: drift decides whether to retrain; a promoted version goes out as a canary.

    check_drift >> drift_decides >> training_set >> retrain >> promoted >> canary_rollout

check_drift     the drift job on the inputs the API logged (data/production/inputs-*.jsonl)
                against the training split; its verdict is the report it prints and writes
                (monitoring/drift_detection/latest_report.json). Exit 0 (no drift), 1 (drift) and
                3 (no production data) are verdicts and end the task well; 2 (bad input) or a
                crash fail it.
drift_decides   short-circuits everything after it unless the verdict is "drift"; "no_data"
                skips too, with a warning (no data is not "no drift": see monitoring-guide.md).
training_set    the training split plus the labelled feedback (data/feedback/*.csv) ->
                data/retrain/train.csv
retrain         fits a challenger on it; the champion/challenger decision goes to registry/
promoted        short-circuits the canary unless retrain promoted the challenger
canary_rollout  shifts traffic to the new version 5 -> 25 -> 50 -> 100%, rolling back when it
                degrades or cannot be observed (canary_deployment/canary.py; its router or
                ingress, Prometheus and soak time come from the worker's environment:
                CANARY_ROUTER_URL or CANARY_INGRESS, PROMETHEUS_URL, CANARY_SOAK_S)

Every task runs the project's own code from the project folder: this file's parent's parent (the
DAG folder is the project's airflow_dags/), or ML_PROJECT_DIR when the DAG files are deployed
apart from the project checkout. Tasks run `python` from the worker's PATH: run the workers in
the project's environment (requirements.txt). Airflow 3 syntax (airflow.sdk, the standard
provider's operators, `schedule=`). Test it locally with `python airflow_dags/continuous_training.py`
(dag.test()).

The schedule comes from ml-spec.yaml (retraining.schedule) and is written here when the
pipeline is generated; edit ml-spec.yaml and regenerate rather than this line.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task

PROJECT = Path(__file__).resolve().parents[1]
if os.environ.get("ML_PROJECT_DIR"):  # DAG files synced apart from the project checkout
    PROJECT = Path(os.environ["ML_PROJECT_DIR"])
SCHEDULE = "{{ schedule }}"
VERDICTS = "0|1|3"  # detect_drift.py: no drift | drift | no production data
log = logging.getLogger(__name__)

default_args = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
}


def last_json(output: str | None, what: str) -> dict:
    """The JSON object a task printed last (a BashOperator's XCom is its last line)."""
    try:
        value = json.loads((output or "").strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ValueError(f"{what} printed no JSON result (last line: {output!r:.200})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} printed {value!r:.200}, not a JSON object")
    return value


@task.short_circuit
def drift_decides(report_line: str) -> bool:
    """Retrain only on drift; no production data skips retraining but says so."""
    report = last_json(report_line, "the drift job")
    status = report.get("status")
    if status == "no_data":
        log.warning("no production data to judge drift, retraining skipped: %s",
                    report.get("reason"))
        return False
    if status not in ("drift", "no_drift"):
        raise ValueError(f"the drift report has no verdict (status {status!r})")
    log.info("drift job: %s (drifted features: %s)", status, report.get("drifted_features"))
    return status == "drift"


@task.short_circuit
def promoted(decision_line: str) -> bool:
    """Roll out only a version retraining promoted."""
    decision = last_json(decision_line, "retraining")
    log.info("retraining decided %s: %s", decision.get("decision"), decision.get("reason"))
    return decision.get("decision") == "promote"


with DAG(
    dag_id="continuous_ml_training",
    schedule=SCHEDULE,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    default_args=default_args,
    max_active_runs=1,
    tags=["ml", "continuous-training"],
) as dag:
    check_drift = BashOperator(
        task_id="check_drift",
        cwd=str(PROJECT),
        bash_command="python monitoring/drift_detection/detect_drift.py; "
                     f"case $? in {VERDICTS}) exit 0;; *) exit 1;; esac",
    )
    training_set = BashOperator(
        task_id="training_set",
        cwd=str(PROJECT),
        bash_command="python monitoring/drift_detection/production_data.py "
                     "--out data/retrain/train.csv",
    )
    retrain = BashOperator(
        task_id="retrain",
        cwd=str(PROJECT),
        bash_command="python continuous_training/retrain.py --data data/retrain/train.csv",
    )
    canary = BashOperator(
        task_id="canary_rollout",
        cwd=str(PROJECT),
        bash_command="python canary_deployment/canary.py",
    )

    drift_decides(check_drift.output) >> training_set >> retrain
    promoted(retrain.output) >> canary
    check_drift >> retrain >> canary  # the order, explicit (the short-circuits sit in between)


if __name__ == "__main__":
    dag.test()
