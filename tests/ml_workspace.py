"""Builds a phase-3 workspace quickly (the contract in mlpipe_flow.builtin) for tests of phases 4-6.

ml-spec.yaml, data/splits/{train,valid,test}.csv, artifacts/model.joblib (one sklearn Pipeline
predicting from the raw feature columns) and artifacts/model_meta.json, from tables shaped like
the Telco and concrete datasets (generated: tests/datagen.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from datagen import data_file

DATASETS = {
    "telco": ("telco_churn.csv", "Churn", ["customerID"], "binary_classification", "roc_auc"),
    "concrete": ("concrete_strength.csv", "Concrete compressive strength(MPa, megapascals) ", [],
                 "regression", "rmse"),
}


def build_pipeline(frame, features: list[str], problem_type: str):  # type: ignore[no-untyped-def]
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in features if frame[c].dtype.kind in "biuf"]
    categorical = [c for c in features if c not in numeric]
    pre = ColumnTransformer([
        ("num", Pipeline([("impute", SimpleImputer(strategy="median")),
                          ("scale", StandardScaler())]), numeric),
        ("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), categorical),
    ])
    est = Ridge() if problem_type == "regression" else LogisticRegression(max_iter=1000)
    return Pipeline([("pre", pre), ("model", est)])


def build(ws: Path, dataset: str = "telco", rows: int | None = None, version: str = "1") -> Path:
    import joblib
    import pandas as pd
    from sklearn.metrics import mean_squared_error, roc_auc_score
    from sklearn.model_selection import train_test_split

    fname, target, ids, problem_type, metric = DATASETS[dataset]
    df = pd.read_csv(data_file(fname))
    if "TotalCharges" in df.columns:
        df["TotalCharges"] = pd.to_numeric(df["TotalCharges"], errors="coerce")
    if rows:
        df = df.sample(n=min(rows, len(df)), random_state=0)
    features = [c for c in df.columns if c != target and c not in ids]
    train, rest = train_test_split(df, test_size=0.3, random_state=42)
    valid, test = train_test_split(rest, test_size=0.5, random_state=42)
    (ws / "data" / "splits").mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        part.to_csv(ws / "data" / "splits" / f"{name}.csv", index=False)
    pipe = build_pipeline(train, features, problem_type)
    pipe.fit(train[features], train[target])
    if problem_type == "regression":
        score = float(mean_squared_error(test[target], pipe.predict(test[features])) ** 0.5)
        classes = None
    else:
        classes = [str(c) for c in pipe.classes_]
        score = float(roc_auc_score(test[target], pipe.predict_proba(test[features])[:, 1]))
    (ws / "artifacts").mkdir(parents=True, exist_ok=True)
    joblib.dump(pipe, ws / "artifacts" / "model.joblib")
    meta = {"version": version, "feature_columns": features, "target": target,
            "problem_type": problem_type, "classes": classes, "primary_metric": metric,
            "test_score": score, "baseline_test_score": None}
    (ws / "artifacts" / "model_meta.json").write_text(json.dumps(meta, indent=2))
    spec = {"problem_type": problem_type, "target": target, "primary_metric": metric,
            "id_columns": ids, "feature_columns": features,
            "data_source": {"kind": "file", "path": f"data/raw/{fname}"},
            "serving": {"latency_p95_ms": 100, "throughput_rps": 1000},
            "retraining": {"schedule": "0 3 * * 1"}}
    (ws / "ml-spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return ws


def run_builtin(ws: Path, phase: str) -> None:
    """The real built-in agent for one phase, as the runner starts it (a subprocess)."""
    import subprocess
    import sys

    task = ws.parent / f"{ws.name}-{phase}-task.json"
    task.write_text(json.dumps({"phase": phase, "attempt": 1, "workspace": str(ws),
                                "context": {"problem": "test"}}))
    res = subprocess.run([sys.executable, "-m", "mlpipe_flow.builtin", str(task)], cwd=ws,
                         capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr


def built(ws: Path, phases: list[str], dataset: str = "telco") -> Path:
    """A phase-3 workspace with the given built-in phases run on it."""
    ws.mkdir(parents=True, exist_ok=True)
    build(ws, dataset)
    for phase in phases:
        run_builtin(ws, phase)
    return ws


def check(ws: Path, kind: str, timeout_s: float = 300, **params: object):  # type: ignore[no-untyped-def]
    """Run one check kind on ws exactly as a gate does."""
    from mlpipe_flow.checks import CheckContext
    from mlpipe_flow.gate import run_check
    from mlpipe_flow.models import CheckSpec

    spec = CheckSpec(id="t", kind=kind, name=kind, message="", params=dict(params),
                     timeout_s=timeout_s)
    return run_check(spec, CheckContext(workspace=ws, phase="test", timeout_s=timeout_s))


def copy(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".mlpipe", "__pycache__"))
    return dest
