"""Continuous training DAG: check for drift -> retrain (champion/challenger) -> canary rollout.

Drift decides whether retraining runs: `check_drift` runs the drift detector on the latest
ingested data (data/interim/dataset.csv, refreshed by the data pipeline DAG) against the
training reference; the detector exits 0 when nothing drifted, 1 on drift, 2 on bad input. No
drift becomes exit 99, which Airflow turns into a skip of this task and, by the default
trigger rule, of retraining and the canary; bad input fails the task. Every task runs from the
project folder, found from this file's location.

The schedule comes from ml-spec.yaml (retraining.schedule) and is written here when the
pipeline is generated; edit ml-spec.yaml and regenerate rather than this line.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow import DAG
from airflow.operators.bash import BashOperator

PROJECT = str(Path(__file__).resolve().parents[1])
SCHEDULE = "{{ schedule }}"
NO_DRIFT = 99  # BashOperator's skip_on_exit_code: the task, and the tasks after it, skip

default_args = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
}

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
        cwd=PROJECT,
        bash_command="python monitoring/drift_detection/detect_drift.py "
                     "--current data/interim/dataset.csv; "
                     f"case $? in 0) exit {NO_DRIFT};; 1) exit 0;; *) exit 1;; esac",
        skip_on_exit_code=NO_DRIFT,
    )
    retrain = BashOperator(
        task_id="retrain",
        cwd=PROJECT,
        bash_command="python continuous_training/retrain.py",
    )
    canary = BashOperator(
        task_id="canary_rollout",
        cwd=PROJECT,
        bash_command="python canary_deployment/canary.py",
    )

    check_drift >> retrain >> canary
