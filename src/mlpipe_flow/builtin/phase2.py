"""Phase 2 of the built-in agent: the data pipeline.

Copies the pipeline code into the workspace (data_ingestion/, data_quality/,
feature_engineering/, airflow_dags/, tests/test_data_pipeline.py) and runs it: ingest and
snapshot the raw data, infer the schema, write the train/valid/test splits, validate them,
and write an EDA notebook with real output.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from mlpipe_flow.builtin import BuiltinTask, BuiltinUserError, workspace_code
from mlpipe_flow.builtin.files import atomic_write, copy_code

CONFTEST = '"""Puts the project root on sys.path so tests import the pipeline packages."""\n'


def read_spec(task: BuiltinTask) -> dict[str, Any]:
    p = task.workspace / "ml-spec.yaml"
    if not p.is_file():
        raise BuiltinUserError("ml-spec.yaml is missing: run phase1 first (mlpipe run ... "
                               "--phase phase1)")
    spec = yaml.safe_load(p.read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise BuiltinUserError("ml-spec.yaml is not a mapping; run phase1 again")
    return spec


def run(task: BuiltinTask) -> None:
    ws = task.workspace
    spec = read_spec(task)
    copy_code(ws, ["data_ingestion", "data_quality", "feature_engineering"],
              ["airflow_dags/data_pipeline.py", "tests/test_data_pipeline.py"])
    if not (ws / "conftest.py").exists():
        atomic_write(ws / "conftest.py", CONFTEST)

    ingest = workspace_code.load(ws, "data_ingestion.ingest")
    schema_mod = workspace_code.load(ws, "data_quality.schema")
    features = workspace_code.load(ws, "feature_engineering.features")
    try:
        df = ingest.ingest(ws)
    except ingest.DataLoadError as e:
        raise BuiltinUserError(str(e)) from None

    import pandas as pd

    df = pd.read_csv(ws / "data/interim/dataset.csv", low_memory=False)  # as every reader sees it
    schema = schema_mod.infer_schema(df, spec)
    atomic_write(ws / "data_quality/schema.json", json.dumps(schema, indent=2) + "\n")
    splits = features.make_splits(df, spec)
    sizes = features.write_splits(splits, ws)
    atomic_write(ws / "data/splits/sizes.json", json.dumps(sizes, indent=2) + "\n")
    report = {name: schema_mod.validate(pd.read_csv(ws / f"data/splits/{name}.csv",
                                                    low_memory=False), schema)
              for name in ("train", "valid", "test")}
    report["dataset"] = schema_mod.validate(df[[c["name"] for c in schema["columns"]]], schema)
    atomic_write(ws / "data_quality/validation_report.json", json.dumps(report, indent=2) + "\n")
    bad = {k: v["problems"][:3] for k, v in report.items() if not v["valid"]}
    if bad:
        raise RuntimeError(f"the splits do not comply with the inferred schema: {bad}")

    import nbformat

    from mlpipe_flow.builtin import notebook

    nb = notebook.build(ws, {"problem": spec["problem"], "target": spec["target"],
                             "problem_type": spec["problem_type"]})
    atomic_write(ws / "eda_notebooks/eda.ipynb", nbformat.writes(nb))
    print(f"phase2: {len(df)} rows ingested, splits {sizes}, schema of "
          f"{len(schema['columns'])} columns, all splits valid", flush=True)
