"""Data drift detector: per-feature PSI and Kolmogorov-Smirnov against the training reference.

    python monitoring/drift_detection/detect_drift.py --current new_data.csv \
        [--reference data/splits/train.csv] [--report monitoring/drift_detection/latest_report.json]

Exit status: 0 no drift, 1 drift detected, 2 bad input. The JSON report holds, per feature, the
PSI (numeric: reference deciles; categorical: category shares), the KS statistic and p-value
(numeric), and whether it drifted; when the current data carries the target, also the model's
primary metric on it (`live_score`), which the API exposes as mlpipe_model_live_score.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
EPS = 1e-4


def psi(ref_share: np.ndarray, cur_share: np.ndarray) -> float:
    r = np.clip(ref_share, EPS, None)
    c = np.clip(cur_share, EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_drift(ref: pd.Series, cur: pd.Series) -> dict[str, Any]:
    from scipy.stats import ks_2samp

    ref, cur = ref.dropna().astype(float), cur.dropna().astype(float)
    if ref.empty or cur.empty:
        return {"kind": "numeric", "psi": None, "ks_stat": None, "ks_pvalue": None, "bins": 1}
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -np.inf, np.inf
    r = np.histogram(ref, bins=edges)[0] / len(ref)
    c = np.histogram(cur, bins=edges)[0] / len(cur)
    ks = ks_2samp(ref, cur)
    return {"kind": "numeric", "psi": psi(r, c), "ks_stat": float(ks.statistic),
            "ks_pvalue": float(ks.pvalue), "bins": len(edges) - 1}


def categorical_drift(ref: pd.Series, cur: pd.Series) -> dict[str, Any]:
    ref, cur = ref.fillna("<missing>").astype(str), cur.fillna("<missing>").astype(str)
    cats = sorted(set(ref) | set(cur))
    r = ref.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
    c = cur.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
    return {"kind": "categorical", "psi": psi(r, c), "ks_stat": None, "ks_pvalue": None,
            "bins": len(cats)}


def live_score(meta: dict[str, Any], current: pd.DataFrame) -> float | None:
    target = meta.get("target")
    if target not in current.columns or current[target].isna().all():
        return None
    import joblib
    from sklearn import metrics

    model = joblib.load(ROOT / "artifacts" / "model.joblib")
    frame, y = current[meta["feature_columns"]], current[target]
    metric = meta.get("primary_metric", "accuracy")
    if meta["problem_type"] == "regression":
        pred = model.predict(frame)
        if metric == "mae":
            return float(metrics.mean_absolute_error(y, pred))
        if metric == "r2":
            return float(metrics.r2_score(y, pred))
        return float(metrics.mean_squared_error(y, pred) ** 0.5)
    if metric == "roc_auc" and len(model.classes_) == 2 and y.nunique() == 2:
        return float(metrics.roc_auc_score(y, model.predict_proba(frame)[:, 1]))
    if metric.startswith("f1"):
        return float(metrics.f1_score(y, model.predict(frame), average="macro"))
    return float(metrics.accuracy_score(y, model.predict(frame)))


def detect(reference: pd.DataFrame, current: pd.DataFrame, features: list[str],
           psi_threshold: float, ks_pvalue: float, ks_stat: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in features:
        ref, cur = reference[name], current[name]
        numeric = ref.dtype.kind in "biuf" and pd.to_numeric(cur, errors="coerce").notna().sum() \
            >= cur.notna().sum()
        stats = numeric_drift(ref, pd.to_numeric(cur, errors="coerce")) if numeric \
            else categorical_drift(ref, cur)
        p, s, pv = stats["psi"], stats["ks_stat"], stats["ks_pvalue"]
        # PSI of two samples from one distribution is about (bins - 1) * (1/n_ref + 1/n_cur):
        # add that to the threshold so small samples do not fire on noise alone
        bins = stats.pop("bins")
        limit = psi_threshold + (bins - 1) * (1 / max(len(ref), 1) + 1 / max(len(cur), 1))
        stats["psi_limit"] = limit
        stats["drifted"] = bool((p is not None and p > limit) or (
            pv is not None and pv < ks_pvalue and s is not None and s > ks_stat))
        out[name] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                     for k, v in stats.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="per-feature PSI and KS drift against training data")
    ap.add_argument("--current", required=True, help="CSV of recent production inputs")
    ap.add_argument("--reference", default=str(ROOT / "data" / "splits" / "train.csv"))
    ap.add_argument("--report", default=str(Path(__file__).parent / "latest_report.json"))
    ap.add_argument("--psi-threshold", type=float, default=0.2)
    ap.add_argument("--ks-pvalue", type=float, default=0.001)
    ap.add_argument("--ks-stat", type=float, default=0.1)
    ap.add_argument("--min-drifted", type=int, default=1,
                    help="features that must drift for the dataset to count as drifted")
    args = ap.parse_args(argv)
    meta = json.loads((ROOT / "artifacts" / "model_meta.json").read_text(encoding="utf-8"))
    features = list(meta["feature_columns"])
    try:
        reference = pd.read_csv(args.reference)
        current = pd.read_csv(args.current)
    except (OSError, ValueError) as e:
        print(f"detect_drift: cannot read the data: {e}", file=sys.stderr)
        return 2
    missing = [c for c in features if c not in current.columns or c not in reference.columns]
    if missing:
        print(f"detect_drift: {args.current}: missing feature column(s) {missing[:5]}",
              file=sys.stderr)
        return 2
    if current.empty:
        print(f"detect_drift: {args.current} has no rows", file=sys.stderr)
        return 2
    per_feature = detect(reference, current, features, args.psi_threshold, args.ks_pvalue,
                         args.ks_stat)
    drifted = [n for n, s in per_feature.items() if s["drifted"]]
    report = {"reference": str(args.reference), "current": str(args.current),
              "rows": len(current), "thresholds": {"psi": args.psi_threshold,
                                                   "ks_pvalue": args.ks_pvalue,
                                                   "ks_stat": args.ks_stat},
              "drifted_features": drifted, "drift_detected": len(drifted) >= args.min_drifted,
              "features": per_feature, "live_score": live_score(meta, current),
              "primary_metric": meta.get("primary_metric")}
    report_path = Path(args.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=report_path.parent, prefix=".report.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, report_path)
    print(json.dumps({"drift_detected": report["drift_detected"], "drifted_features": drifted}))
    return 1 if report["drift_detected"] else 0


if __name__ == "__main__":
    sys.exit(main())
