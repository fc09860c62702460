"""Airflow DAG for the data pipeline: ingest -> validate -> features, with retries.

Each task runs the project's own pipeline code as a module (data_ingestion/, data_quality/,
feature_engineering/) from the project folder, so the DAG and a manual run
(`python -m data_ingestion.ingest`, ...) do exactly the same thing on any machine. The project
folder is this file's parent's parent (the DAG folder is the project's airflow_dags/), or
ML_PROJECT_DIR when the DAG files are deployed apart from the project checkout; tasks run
`python` from the worker's PATH (run the workers in the project's environment).
A step that fails (a schema violation exits 1) fails its task and stops the steps after it.
The schedule is the retraining schedule of ml-spec.yaml. Airflow 3 syntax (airflow.sdk, the
standard provider's operators, `schedule=`); `python airflow_dags/data_pipeline.py` runs it once
locally (dag.test()).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

PROJECT = Path(__file__).resolve().parents[1]
if os.environ.get("ML_PROJECT_DIR"):  # DAG files synced apart from the project checkout
    PROJECT = Path(os.environ["ML_PROJECT_DIR"])
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


if __name__ == "__main__":
    dag.test()
