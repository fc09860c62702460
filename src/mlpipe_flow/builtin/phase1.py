"""Phase 1 of the built-in agent: requirements and design from a profile of the data.

Loads and profiles the data, infers the target, problem type, id columns and primary
metric, reads serving and retraining hints from the problem text, and writes
ml-requirements.md, ml-architecture.md, tech-stack.md, project-plan.md, ml-spec.yaml and
data/profile.json — all of them only after every check on the input has passed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from mlpipe_flow.builtin import BuiltinTask, BuiltinUserError
from mlpipe_flow.builtin import profile as prof
from mlpipe_flow.builtin.files import render, write_all
from mlpipe_flow.builtin.loading import load_table

SCHEDULES = [  # (words in the problem text, cron, description)
    (r"\bhourly|every hour\b", "0 * * * *", "hourly"),
    (r"\b(daily|nightly|every day|each day)\b", "0 2 * * *", "daily at 02:00"),
    (r"\b(monthly|every month|each month)\b", "0 2 1 * *", "monthly, on the 1st at 02:00"),
    (r"\b(quarterly|every quarter|each quarter)\b", "0 2 1 */3 *",
     "quarterly, on the 1st at 02:00"),
    (r"\b(weekly|every week|each week)\b", "0 2 * * 1", "weekly, Mondays at 02:00"),
]
METRIC_THRESHOLDS = {"roc_auc": 0.75, "f1_macro": 0.6, "accuracy": 0.8}


def serving_from(problem: str) -> dict[str, Any]:
    text = problem.lower()
    batch = re.search(r"\bbatch\b|\bnightly scor|\boffline\b", text)
    realtime = re.search(r"real[- ]?time|\bapi\b|\bonline\b|\blive\b|\bstreaming\b", text)
    if batch and not realtime:
        return {"mode": "batch", "latency_p95_ms": 60_000.0, "throughput_rps": 100.0}
    return {"mode": "realtime", "latency_p95_ms": 100.0, "throughput_rps": 1000.0}


def retraining_from(problem: str) -> tuple[dict[str, Any], str]:
    text = problem.lower()
    # the schedule word next to "retrain" wins ("daily predictions, retraining weekly" -> weekly)
    clauses = [c for c in re.split(r"[,;.]|\band\b", text) if re.search(r"\bre-?train", c)]
    cron, words = next(((c, w) for where in [*clauses, text] for pattern, c, w in SCHEDULES
                        if re.search(pattern, where)),
                       ("0 2 * * 1", "weekly, Mondays at 02:00 (default)"))
    return {"schedule": cron, "triggers": ["schedule", "data_drift", "performance_decay"]}, words


def metric_threshold(problem_type: str, metric: str, y: Any) -> float:
    if problem_type == "regression":
        # the error of always predicting the mean is the target's std; require 25% better
        return round(0.75 * float(y.dropna().astype(float).std()), 4)
    return METRIC_THRESHOLDS.get(metric, 0.7)


def build_spec(task: BuiltinTask) -> tuple[dict[str, Any], dict[str, Any]]:
    df, source = load_table(task)
    columns = list(df.columns)
    id_cols = [c for c in columns if prof.is_id_like(c, df[c])]
    target = prof.resolve_target(task.target, task.problem, columns, set(id_cols))
    id_cols = [c for c in id_cols if c != target]
    y = df[target]
    problem_type = prof.infer_problem_type(target, y)
    rows = int(y.notna().sum())
    if rows < prof.MIN_ROWS:
        raise BuiltinUserError(f"only {rows} rows have a value for target {target!r}; "
                               f"at least {prof.MIN_ROWS} are needed to train and test a model")
    import pandas as pd

    constant, features = [], []
    for c in columns:
        if c == target or c in id_cols:
            continue
        s = df[c]
        distinct = s.nunique()
        if distinct <= 1:
            constant.append(c)
            continue
        text = not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s))
        if text and distinct > prof.MAX_CATEGORIES:
            raise BuiltinUserError(f"column {c!r} has {distinct} distinct categories (at most "
                                   f"{prof.MAX_CATEGORIES} can be encoded); drop or bucket that "
                                   "column in the data, then run again")
        features.append(c)
    if not features:
        raise BuiltinUserError(f"no usable feature columns besides the target {target!r} "
                               f"(id-like: {id_cols}, constant: {constant})")
    metric = prof.METRIC_BY_TYPE[problem_type]
    retraining, schedule_words = retraining_from(task.problem)
    spec: dict[str, Any] = {
        "problem": task.problem,
        "problem_type": problem_type,
        "target": target,
        "primary_metric": metric,
        "metric_threshold": metric_threshold(problem_type, metric, y),
        "secondary_metrics": (["mae", "r2"] if problem_type == "regression" else
                              ["accuracy", "f1_macro"] if problem_type == "binary_classification"
                              else ["accuracy", "roc_auc"]),
        "id_columns": id_cols,
        "feature_columns": features,
        "positive_class": (prof.positive_class(y) if problem_type == "binary_classification"
                           else None),
        "classes": (sorted((prof.plain(v) for v in y.dropna().unique()), key=str)
                    if problem_type != "regression" else None),
        "data_source": {k: v for k, v in source.items() if v is not None},
        "serving": serving_from(task.problem),
        "retraining": retraining,
        "splits": {"train": 0.70, "valid": 0.15, "test": 0.15},
        "group_columns": prof.group_columns(df, features),
    }
    from mlpipe_flow.spec import MlSpec

    MlSpec.model_validate(spec)  # the spec we write must pass the gate's own model
    profile = prof.profile_frame(df)
    profile.update(target=target, problem_type=problem_type, id_columns=id_cols,
                   constant_columns=constant, target_summary=prof.target_summary(y, problem_type),
                   schedule_words=schedule_words)
    return spec, profile


def run(task: BuiltinTask) -> None:
    spec, profile = build_spec(task)  # every check on the input happens before any write
    source = {k: None for k in ("path", "url", "table", "query", "format", "sha256")}
    ctx = {"spec": {**spec, "data_source": {**source, **spec["data_source"]}},
           "profile": profile, "data": task.data or {}}
    files = {
        "ml-requirements.md": render("ml-requirements.md.j2", ctx),
        "ml-architecture.md": render("ml-architecture.md.j2", ctx),
        "tech-stack.md": render("tech-stack.md.j2", ctx),
        "project-plan.md": render("project-plan.md.j2", ctx),
        "ml-spec.yaml": yaml.safe_dump(spec, sort_keys=False, allow_unicode=True),
        "data/profile.json": json.dumps(profile, indent=2, default=str) + "\n",
    }
    write_all(task.workspace, files)
    print(f"phase1: target {spec['target']!r} ({spec['problem_type']}), metric "
          f"{spec['primary_metric']}, {len(spec['feature_columns'])} features, "
          f"{profile['rows']} rows", flush=True)
