"""Airflow DAG for the data pipeline: ingest -> validate -> features, daily, with retries.

Each task calls the project's own pipeline code (data_ingestion/, data_quality/,
feature_engineering/), so the DAG and a manual run do exactly the same thing.
The schedule is the retraining schedule of ml-spec.yaml.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import yaml
from airflow import DAG
from airflow.operators.python import PythonOperator
from data_ingestion.ingest import main as ingest_data
from data_quality.schema import main as validate_data
from feature_engineering.features import main as build_features

SPEC = yaml.safe_load((Path(__file__).resolve().parents[1] / "ml-spec.yaml").read_text())

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
    ingest = PythonOperator(task_id="ingest", python_callable=ingest_data)
    validate = PythonOperator(task_id="validate", python_callable=validate_data)
    features = PythonOperator(task_id="features", python_callable=build_features)

    ingest >> validate >> features
