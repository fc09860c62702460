"""Airflow DAG for the data pipeline: ingest -> validate -> features, with retries.

Each task runs the project's own pipeline code as a module (data_ingestion/, data_quality/,
feature_engineering/) from the project folder, found from this file's location, so the DAG and
a manual run (`python -m data_ingestion.ingest`, ...) do exactly the same thing on any machine.
A step that fails (a schema violation exits 1) fails its task and stops the steps after it.
The schedule is the retraining schedule of ml-spec.yaml. Airflow 3 syntax (`schedule=`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import yaml
from airflow import DAG
from airflow.operators.bash import BashOperator

PROJECT = Path(__file__).resolve().parents[1]
SPEC = yaml.safe_load((PROJECT / "ml-spec.yaml").read_text(encoding="utf-8"))

default_args = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
}

with DAG(
    dag_id="ml_data_pipeline",
    description=f"data pipeline for: {SPEC['problem']}",
    schedule=SPEC["retraining"]["schedule"],
    start_date=datetime(2024, 1, 1),
    catchup=False,
    default_args=default_args,
    tags=["mlpipe", "data"],
) as dag:
    ingest = BashOperator(task_id="ingest_data", cwd=str(PROJECT),
                          bash_command="python -m data_ingestion.ingest")
    validate = BashOperator(task_id="validate_data", cwd=str(PROJECT),
                            bash_command="python -m data_quality.schema")
    features = BashOperator(task_id="build_features", cwd=str(PROJECT),
                            bash_command="python -m feature_engineering.features")

    ingest >> validate >> features
