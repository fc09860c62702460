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

Details of the above as phases 1-3 write them (fields may be added, never renamed):
  ml-spec.yaml                    validated by mlpipe_flow.spec.MlSpec; also secondary_metrics,
                                  classes, metric_threshold; data_source {kind, path | url
                                  (masked), table, query, format, sha256}
  data/splits/*.csv               columns = feature_columns + [target], in that order; cleaned
                                  (text trimmed, blanks empty, numeric text as numbers)
  data_quality/schema.json        {version, target, id_columns, row_count, columns: [{name,
                                  type: integer|number|category|string, nullable, min, max,
                                  categories}]} for feature_columns + target
  artifacts/model_meta.json       also model_name, estimator, positive_class, cv_mean, cv_std,
                                  n_train_rows, n_test_rows, data_sha256, trained_at
  experiments/results.json        {primary_metric, higher_is_better, cv_folds, models: {name:
                                  {cv_mean, cv_std, cv_scores, estimator, params,
                                  mlflow_run_id, cv_rows, final_fit}}, best_model,
                                  baseline_model, test_score, baseline_test_score, target_std,
                                  model_selection {rows, of_rows, seed, method}: the candidates
                                  are cross-validated on a stratified sample of at most 20,000
                                  train+valid rows, the selected one fitted on all of them
  data/profile.json               phase 1's profile of the data (rows, columns, target summary)
  data/raw/snapshot.json          sha256 and row count of the raw data as ingested
  feature_engineering/features.py build_preprocessor(schema, features): the shared
                                  preprocessing (importable with the workspace on sys.path)
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
