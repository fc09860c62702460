"""Continuous training DAG: check for drift -> retrain (champion/challenger) -> canary rollout.

The schedule comes from ml-spec.yaml (retraining.schedule) and is written here when the
pipeline is generated; edit ml-spec.yaml and regenerate rather than this line.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

PROJECT = "{{ project_dir }}"
SCHEDULE = "{{ schedule }}"

default_args = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
}

with DAG(
    dag_id="continuous_training",
    schedule=SCHEDULE,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    default_args=default_args,
    max_active_runs=1,
    tags=["ml", "continuous-training"],
) as dag:
    check_drift = BashOperator(
        task_id="check_drift",
        bash_command=f"cd {PROJECT} && python monitoring/drift_detection/detect_drift.py "
                     "--current data/latest/inputs.csv || true",
    )
    retrain = BashOperator(
        task_id="retrain",
        bash_command=f"cd {PROJECT} && python continuous_training/retrain.py "
                     "--data data/latest/labelled.csv",
    )
    canary = BashOperator(
        task_id="canary_rollout",
        bash_command=f"cd {PROJECT} && python canary_deployment/canary.py",
    )

    check_drift >> retrain >> canary
