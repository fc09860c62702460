"""Data drift detector: each feature of recent inputs against the training reference.

    python monitoring/drift_detection/detect_drift.py --current new_data.csv \
        [--reference data/splits/train.csv] [--report monitoring/drift_detection/latest_report.json]

Per feature, a two-sample test: Kolmogorov-Smirnov for numeric features, a chi-squared test of
homogeneity for categorical ones (categories too rare for the test pooled). A feature drifts when
its Bonferroni-adjusted p-value (p times the number of features tested) is below ALPHA and the
effect is large enough to matter: KS statistic or total variation distance of the category
shares at least MIN_EFFECT. The correction keeps the chance of a false alarm on a whole clean
batch below ALPHA however many features there are; the effect floor keeps large batches from
alarming on differences too small to matter. PSI is reported too, for the dashboard.

Exit status: 0 no drift, 1 drift detected, 2 bad input. It prints the result as JSON and writes
it to the report, which the API exposes as gauges; when the current data carries the target,
the report also holds the model's primary metric on it (`live_score`).
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
ALPHA = 0.001  # family-wise false-alarm rate per batch
MIN_EFFECT = 0.1  # KS statistic / total variation distance
MIN_EXPECTED = 5  # chi-squared: pool categories expected fewer times than this
EPS = 1e-4


def psi(ref_share: np.ndarray, cur_share: np.ndarray) -> float:
    r = np.clip(ref_share, EPS, None)
    c = np.clip(cur_share, EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_drift(ref: pd.Series, cur: pd.Series) -> dict[str, Any]:
    from scipy.stats import ks_2samp

    ref, cur = ref.dropna().astype(float), cur.dropna().astype(float)
    if ref.empty or cur.empty:
        return {"kind": "numeric", "test": "ks", "statistic": None, "p_value": None,
                "effect": None, "psi": None}
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -np.inf, np.inf
    r = np.histogram(ref, bins=edges)[0] / len(ref)
    c = np.histogram(cur, bins=edges)[0] / len(cur)
    ks = ks_2samp(ref, cur)
    return {"kind": "numeric", "test": "ks", "statistic": float(ks.statistic),
            "p_value": float(ks.pvalue), "effect": float(ks.statistic), "psi": psi(r, c)}


def categorical_drift(ref: pd.Series, cur: pd.Series) -> dict[str, Any]:
    from scipy.stats import chi2_contingency

    ref, cur = ref.fillna("<missing>").astype(str), cur.fillna("<missing>").astype(str)
    counts = pd.DataFrame({"ref": ref.value_counts(), "cur": cur.value_counts()}).fillna(0)
    shares = counts / counts.sum()
    tvd = float(0.5 * (shares["ref"] - shares["cur"]).abs().sum())
    # pool the categories too rare for the chi-squared approximation into one cell
    expected = counts.sum(axis=1).to_numpy()[:, None] * (counts.sum() / counts.to_numpy().sum()).to_numpy()
    rare = (expected < MIN_EXPECTED).any(axis=1)
    table = counts[~rare]
    if rare.any():
        table = pd.concat([table, counts[rare].sum().to_frame("<rare>").T])
    table = table[(table.sum(axis=1) > 0)]
    if len(table) < 2:
        p_value, stat = 1.0, 0.0
    else:
        stat, p_value, _, _ = chi2_contingency(table.to_numpy().T, correction=False)
    return {"kind": "categorical", "test": "chi2", "statistic": float(stat), "p_value": float(p_value),
            "effect": tvd, "psi": psi(shares["ref"].to_numpy(), shares["cur"].to_numpy())}


def detect_drift(reference: pd.DataFrame, current: pd.DataFrame, features: list[str] | None = None,
                 alpha: float = ALPHA, min_effect: float = MIN_EFFECT) -> dict[str, Any]:
    """{"drift_detected": bool, "drifted_features": [...], "features": {column: {"statistic",
    "p_value", "p_adjusted", "effect", "psi", "drift"}}} for the feature columns."""
    if features is None:
        features = feature_columns(reference, current)
    stats: dict[str, dict[str, Any]] = {}
    for name in features:
        ref, cur = reference[name], current[name]
        cur_num = pd.to_numeric(cur, errors="coerce")
        numeric = ref.dtype.kind in "biuf" and cur_num.notna().sum() >= cur.notna().sum()
        stats[name] = numeric_drift(ref, cur_num) if numeric else categorical_drift(ref, cur)
    tested = sum(1 for s in stats.values() if s["p_value"] is not None)
    for s in stats.values():
        p = s["p_value"]
        s["p_adjusted"] = None if p is None else min(1.0, p * max(tested, 1))
        s["drift"] = bool(p is not None and s["p_adjusted"] < alpha and s["effect"] >= min_effect)
    clean = {n: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in s.items()}
             for n, s in stats.items()}
    drifted = [n for n, s in clean.items() if s["drift"]]
    return {"drift_detected": bool(drifted), "drifted_features": drifted, "features": clean,
            "alpha": alpha, "min_effect": min_effect, "correction": "bonferroni",
            "features_tested": tested}


def feature_columns(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """The model's feature columns (artifacts/model_meta.json), else the shared columns."""
    try:
        meta = json.loads((ROOT / "artifacts" / "model_meta.json").read_text(encoding="utf-8"))
        return [c for c in meta["feature_columns"] if c in reference.columns and c in current.columns]
    except (OSError, ValueError, KeyError):
        return [c for c in reference.columns if c in current.columns]


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


def shown(path: str) -> str:
    """A path as the report names it: relative to the project when inside it (it may move)."""
    p = Path(path).resolve()
    return p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="per-feature drift tests against the training data")
    ap.add_argument("--current", required=True, help="CSV of recent production inputs")
    ap.add_argument("--reference", default=str(ROOT / "data" / "splits" / "train.csv"))
    ap.add_argument("--report", default=str(Path(__file__).parent / "latest_report.json"))
    ap.add_argument("--alpha", type=float, default=ALPHA, help="family-wise false-alarm rate")
    ap.add_argument("--min-effect", type=float, default=MIN_EFFECT,
                    help="smallest KS statistic / total variation distance that counts")
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
    report = detect_drift(reference, current, features, args.alpha, args.min_effect)
    report.update(reference=shown(args.reference), current=shown(args.current), rows=len(current),
                  live_score=live_score(meta, current), primary_metric=meta.get("primary_metric"))
    report_path = Path(args.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=report_path.parent, prefix=".report.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, report_path)
    print(json.dumps(report))
    return 1 if report["drift_detected"] else 0


if __name__ == "__main__":
    sys.exit(main())
