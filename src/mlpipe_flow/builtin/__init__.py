"""The built-in reference agent: writes and runs a working reference implementation of each
phase's contract for tabular data, offline. Run as `python -m mlpipe_flow.builtin TASK_FILE`.

Each phase lives in its own module `mlpipe_flow.builtin.<phase id>` exposing
`run(task: BuiltinTask) -> None`. The code it writes into the workspace is kept in the
package as real .py files under `builtin/templates/`, parameterised at run time by
`ml-spec.yaml`; Jinja only where prose must change.

Workspace contract shared by the agent and the gates (see DESIGN.md):
  ml-spec.yaml                    problem_type, target, primary_metric, id_columns,
                                  feature_columns, data_source, serving, retraining
  data/splits/{train,valid,test}.csv   raw columns (features + target), no row in two splits
  data_quality/schema.json        the schema inferred from the data
  artifacts/model.joblib          one sklearn Pipeline: predict(DataFrame[feature_columns])
  artifacts/model_meta.json       version, feature_columns, target, problem_type, classes,
                                  primary_metric, test_score, baseline_test_score
  experiments/results.json        per model: cv_mean, cv_std; best model; test score
  mlflow.db                       MLflow tracking store (sqlite:///mlflow.db)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class BuiltinUserError(Exception):
    """The data cannot be used as asked: printed as one line, exit status 2."""


@dataclass
class BuiltinTask:
    phase: str
    attempt: int
    workspace: Path
    repair: bool
    problem: str
    target: str | None
    data: dict[str, Any] | None
    run_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
