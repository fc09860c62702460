"""Phase 3 of the built-in agent: training and experimentation.

Copies models/, interpretability/ and tests/test_models.py into the workspace and runs
them: a dummy baseline and three model families cross-validated and logged to MLflow, the
best one saved as artifacts/model.joblib; permutation importance; then the model card.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from mlpipe_flow.builtin import BuiltinTask, BuiltinUserError, workspace_code
from mlpipe_flow.builtin.files import atomic_write, copy_code, render
from mlpipe_flow.builtin.phase2 import read_spec
from mlpipe_flow.spec import margin  # the contract's formula, for the card

LOAD_CHECKS = {"api-load"}  # phase 4's checks that fail when the model predicts too slowly


def failed_checks(task: BuiltinTask) -> set[str]:
    """The ids of the checks a repair attempt was asked to fix, read from its repair prompt as any
    agent reads it (prompts/repair.j2 heads each failing check `### N. name (`id`...)`), or from
    a `repair` block of the task's context when one is given."""
    repair = (task.raw.get("context") or {}).get("repair") or {}
    found = {str(f.get("id")) for f in repair.get("failures") or [] if isinstance(f, dict)}
    prompt = task.raw.get("prompt_file")
    if prompt and Path(prompt).is_file():
        text = Path(prompt).read_text(encoding="utf-8", errors="replace")
        found |= set(re.findall(r"^### \d+\. .*\(`([A-Za-z0-9_.-]+)`", text, flags=re.M))
    return found


def serve_cheaper(task: BuiltinTask) -> dict[str, Any] | None:
    """Phase 4's repair after its load check failed, when the saved model's own predict cost is
    the plausible cause (more than half of the serving budget per batch, measured on the model
    fitted on all rows): it is replaced by the next-cheaper model to serve. Training runs again with
    the model that failed excluded and the serving budget at half its measured predict cost (of
    the model fitted on all rows), so whatever is selected predicts at least twice as fast; the
    card and importances are rewritten with it, and phase 4 then exports it. Returns what
    changed, or None when no cheaper model exists (said in the log: a repair that cannot change
    anything must not pretend to)."""
    ws = task.workspace
    path = ws / "experiments/results.json"
    if not path.is_file():
        return None
    before = json.loads(path.read_text(encoding="utf-8"))
    name = before["best_model"]
    entry = before["models"][name]
    cost = (entry.get("final_fit") or {}).get("predict_cpu_ms") or entry["predict_cpu_ms"]
    batch_ms = float(next(v for k, v in cost.items() if k.startswith("batch_")))
    budget_ms = float((before.get("serving_budget") or {}).get("max_batch_ms") or 0.0)
    if budget_ms and batch_ms <= budget_ms / 2:
        print(f"phase4 repair: {name} predicts a batch in {batch_ms:.2f} CPU ms, within half its "
              f"budget of {budget_ms:g} ms: the load failure is not the model's cost; the model "
              "stays", flush=True)
        return None
    cheaper = [n for n, m in before["models"].items()
               if n != name and not n.startswith("dummy")
               and float(next(v for k, v in m["predict_cpu_ms"].items()
                              if k.startswith("batch_"))) <= batch_ms / 2]
    if not cheaper:
        print(f"phase4 repair: no model predicts at least twice as fast as {name} "
              f"({batch_ms:.2f} CPU ms a batch); the model stays", flush=True)
        return None
    excluded = [n for n in os.environ.get("TRAIN_EXCLUDE_MODELS", "").split(",") if n]
    os.environ["TRAIN_EXCLUDE_MODELS"] = ",".join([*excluded, name])
    os.environ["TRAIN_MAX_BATCH_MS"] = f"{batch_ms / 2:.6g}"
    print(f"phase4 repair: the load check failed with {name} ({batch_ms:.2f} CPU ms a batch); "
          f"retraining with it excluded and a budget of {batch_ms / 2:.3g} ms", flush=True)
    run(task)
    after = json.loads(path.read_text(encoding="utf-8"))
    return {"replaced": name, "by": after["best_model"], "budget_ms": batch_ms / 2}


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
