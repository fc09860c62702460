"""Model validation for CI: re-score the saved model on the hold-out split and compare with the
score recorded at training time. Exit status 1 when it falls below --min-ratio of it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import joblib
import pandas as pd
from sklearn import metrics

ROOT = Path(__file__).resolve().parents[1]
LOWER_IS_BETTER = {"rmse", "mae", "mse", "log_loss"}


def score(metric: str, y_true, model, frame) -> float:  # type: ignore[no-untyped-def]
    if metric == "rmse":
        return float(metrics.mean_squared_error(y_true, model.predict(frame)) ** 0.5)
    if metric == "mae":
        return float(metrics.mean_absolute_error(y_true, model.predict(frame)))
    if metric == "r2":
        return float(metrics.r2_score(y_true, model.predict(frame)))
    if metric == "roc_auc":
        proba = model.predict_proba(frame)
        if proba.shape[1] == 2:
            return float(metrics.roc_auc_score(y_true, proba[:, 1]))
        return float(metrics.roc_auc_score(y_true, proba, multi_class="ovr", labels=model.classes_))
    if metric in ("f1", "f1_macro"):
        return float(metrics.f1_score(y_true, model.predict(frame), average="macro"))
    return float(metrics.accuracy_score(y_true, model.predict(frame)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-ratio", type=float, default=0.98)
    args = ap.parse_args(argv)
    meta = json.loads((ROOT / "artifacts" / "model_meta.json").read_text())
    model = joblib.load(ROOT / "artifacts" / "model.joblib")
    test = pd.read_csv(ROOT / "data" / "splits" / "test.csv")
    metric = meta.get("primary_metric", "accuracy")
    got = score(metric, test[meta["target"]], model, test[meta["feature_columns"]])
    recorded = meta.get("test_score")
    ok = True
    if isinstance(recorded, (int, float)) and recorded:
        ok = (got <= recorded / args.min_ratio) if metric in LOWER_IS_BETTER else (
            got >= recorded * args.min_ratio)
    print(json.dumps({"metric": metric, "score": got, "recorded": recorded, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
