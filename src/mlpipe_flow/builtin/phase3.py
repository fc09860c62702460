"""Phase 3 of the built-in agent: training and experimentation.

Copies models/, interpretability/ and tests/test_models.py into the workspace and runs
them: a dummy baseline and three model families cross-validated and logged to MLflow, the
best one saved as artifacts/model.joblib; permutation importance; then the model card.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mlpipe_flow.builtin import BuiltinTask, BuiltinUserError, workspace_code
from mlpipe_flow.builtin.files import atomic_write, copy_code, render
from mlpipe_flow.builtin.phase2 import read_spec
from mlpipe_flow.spec import margin  # the contract's formula, for the card


def run(task: BuiltinTask) -> None:
    ws = task.workspace
    spec = read_spec(task)
    for rel in ("data/splits/train.csv", "data/splits/test.csv", "data_quality/schema.json"):
        if not (ws / rel).is_file():
            raise BuiltinUserError(f"{rel} is missing: run phase2 first")
    copy_code(ws, ["models", "interpretability"], ["tests/test_models.py"])
    os.environ.setdefault("TRAIN_N_JOBS", str(os.cpu_count() or 1))
    train = workspace_code.load(ws, "models.train_model")
    results: dict[str, Any] = train.train()
    explain = workspace_code.load(ws, "interpretability.explain")
    importance = explain.explain()
    meta = json.loads((ws / "artifacts/model_meta.json").read_text(encoding="utf-8"))
    metric = spec["primary_metric"]
    ctx = {"spec": spec, "results": results, "meta": meta, "importance": importance,
           "margin": margin(metric, results["test_score"], results["baseline_test_score"]),
           "sensitive": [c for c in spec["feature_columns"]
                         if c.lower() in {"gender", "sex", "age", "race", "ethnicity",
                                          "seniorcitizen", "senior_citizen", "religion",
                                          "marital_status", "nationality"}]}
    atomic_write(ws / "model_cards/model_card.md", render("model_card.md.j2", ctx))
    print(f"phase3: best {results['best_model']}, test {metric} {results['test_score']:.4f} "
          f"vs baseline {results['baseline_test_score']:.4f}", flush=True)
