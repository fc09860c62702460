"""Data drift detector: each feature of recent inputs against the training reference.

    python monitoring/drift_detection/detect_drift.py            # the API's logged inputs
    python monitoring/drift_detection/detect_drift.py --current new_data.csv \
        [--reference data/splits/train.csv] [--report monitoring/drift_detection/latest_report.json]

Without --current it reads the production inputs the API logs (data/production/inputs-*.jsonl,
the newest --max-rows of them; see production_data.py). Fewer than --min-rows of them (no folder,
no files, an API that logs nothing) is "no production data": reported as such, never as "no
drift".

Per feature, a two-sample test: Kolmogorov-Smirnov for numeric features, a chi-squared test of
homogeneity for categorical ones (categories too rare for the test pooled). A feature drifts when
its Bonferroni-adjusted p-value (p times the number of features tested) is below ALPHA and the
effect is large enough to matter: KS statistic or total variation distance of the category
shares at least MIN_EFFECT. The correction keeps the chance of a false alarm on a whole clean
batch below ALPHA however many features there are; the effect floor keeps large batches from
alarming on differences too small to matter. PSI is reported too, for the dashboard.

Exit status: 0 no drift, 1 drift detected, 2 bad input, 3 no production data. It prints the
result as JSON (one line, the last of its output) and writes it to the report, which the API
exposes as gauges; the report's `status` is "drift", "no_drift" or "no_data". A chart of each
feature's effect against MIN_EFFECT (drifted features in red) goes to --plot (by default
latest_drift.png beside the report when the logged inputs are read; with --current only when
asked). When the current
data carries the target, or labelled feedback exists (data/feedback/), the report also holds the
model's primary metric on those labelled rows (`live_score`).
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
sys.path.insert(0, str(ROOT))  # the project's packages (models/, continuous_training/)
ALPHA = 0.001  # family-wise false-alarm rate per batch
MIN_EFFECT = 0.1  # KS statistic / total variation distance
MIN_EXPECTED = 5  # chi-squared: pool categories expected fewer times than this
MIN_ROWS = 100  # fewer logged inputs than this is no production data (the tests lack power)
NO_DATA = 3  # exit status
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


def served_dir() -> Path:
    """The model folder the API serves: the registry's export once continuous training
    exists (continuous_training/registry.py), the phase-3 artifacts/ before."""
    try:
        from continuous_training.registry import served_dir as registry_served_dir
    except ImportError:
        return ROOT / "artifacts"
    return registry_served_dir()


def live_score(meta: dict[str, Any], current: pd.DataFrame) -> float | None:
    """The served model's primary metric on labelled production rows, through the project's
    one metric table (models/metrics.py); None without labels or where it is undefined."""
    target = meta.get("target")
    if target not in current.columns or current[target].isna().all():
        return None
    import joblib
    from models.metrics import score

    model = joblib.load(served_dir() / "model.joblib")
    labelled = current.dropna(subset=[target])
    try:
        return score(meta["primary_metric"], model, labelled[meta["feature_columns"]],
                     labelled[target], meta.get("positive_class"))
    except ValueError:  # e.g. one class among the labels: ROC AUC is undefined
        return None


def shown(path: str) -> str:
    """A path as the report names it: relative to the project when inside it (it may move)."""
    p = Path(path).resolve()
    return p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(path)


def _production_data() -> Any:
    """production_data.py beside this file (the readers of the logged inputs and feedback)."""
    import importlib.util

    path = Path(__file__).resolve().with_name("production_data.py")
    spec = importlib.util.spec_from_file_location("production_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def production_frame(folder: Path, max_rows: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    frame, info = _production_data().read_inputs(folder, max_rows)
    return frame, info


def labelled_feedback(meta: dict[str, Any], inputs: pd.DataFrame) -> pd.DataFrame | None:
    """Labelled production rows (data/feedback/), or None when there are none or unusable."""
    production_data = _production_data()
    try:
        frame, _ = production_data.read_feedback(meta, production_data.id_columns(),
                                                 inputs=inputs)
    except (OSError, ValueError) as e:
        print(f"detect_drift: feedback ignored for the live score: {e}", file=sys.stderr)
        return None
    return frame if len(frame) else None


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, path)
    print(json.dumps(report))


def plot_drift(report: dict[str, Any], path: Path) -> str | None:
    """Each feature's effect (KS statistic or total variation distance), drifted ones in red,
    against the MIN_EFFECT floor; None when matplotlib is missing (said on stderr)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("detect_drift: matplotlib is not installed: no drift chart", file=sys.stderr)
        return None
    feats = sorted(report["features"].items(), key=lambda kv: kv[1].get("effect") or 0)
    names = [name for name, _ in feats]
    effects = [float(f.get("effect") or 0) for _, f in feats]
    colors = ["#c0392b" if f.get("drift") else "#7f8c8d" for _, f in feats]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(names) + 1.2)))
    ax.barh(names, effects, color=colors)
    ax.axvline(report.get("min_effect", MIN_EFFECT), color="black", linestyle="--", linewidth=1,
               label=f"effect floor {report.get('min_effect', MIN_EFFECT):g}")
    ax.set_xlabel("effect (KS statistic / total variation distance)")
    ax.set_title(f"{report['status']}: {len(report['drifted_features'])} of {len(names)} "
                 f"features drifted ({report['rows']:,} rows, alpha {report.get('alpha', ALPHA):g})",
                 fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".drift.", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return shown(str(path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="per-feature drift tests against the training data")
    ap.add_argument("--current", help="CSV of recent inputs (default: the API's logged inputs)")
    ap.add_argument("--production", default=str(ROOT / "data" / "production"),
                    help="folder of the API's inputs-*.jsonl logs, read without --current")
    ap.add_argument("--max-rows", type=int, default=50_000, help="newest logged inputs read")
    ap.add_argument("--min-rows", type=int, default=MIN_ROWS,
                    help="fewer logged inputs than this is no production data")
    ap.add_argument("--reference", default=str(ROOT / "data" / "splits" / "train.csv"))
    ap.add_argument("--report", default=str(Path(__file__).parent / "latest_report.json"))
    ap.add_argument("--alpha", type=float, default=ALPHA, help="family-wise false-alarm rate")
    ap.add_argument("--min-effect", type=float, default=MIN_EFFECT,
                    help="smallest KS statistic / total variation distance that counts")
    ap.add_argument("--plot", help="PNG chart of the per-feature effects (default: latest_drift.png "
                    "beside the report when the logged inputs are read)")
    args = ap.parse_args(argv)
    if args.plot is None and not args.current:
        args.plot = str(Path(args.report).with_name("latest_drift.png"))
    meta = json.loads((served_dir() / "model_meta.json").read_text(encoding="utf-8"))
    features = list(meta["feature_columns"])
    source: dict[str, Any] = {}
    try:
        reference = pd.read_csv(args.reference)
        if args.current:
            current = pd.read_csv(args.current)
            source = {"current": shown(args.current)}
        else:
            current, source = production_frame(Path(args.production), args.max_rows)
    except (OSError, ValueError) as e:
        print(f"detect_drift: cannot read the data: {e}", file=sys.stderr)
        return 2
    name = args.current or source.get("folder", args.production)
    if not args.current and len(current) < args.min_rows:
        report = {"status": "no_data", "drift_detected": None, "drifted_features": [],
                  "features": {}, "reason": f"{len(current)} logged input(s) in {name}, fewer "
                  f"than --min-rows {args.min_rows}: no production data to judge",
                  "reference": shown(args.reference), "production": source, "rows": len(current),
                  "live_score": None, "primary_metric": meta.get("primary_metric")}
        write_report(report, Path(args.report))
        return NO_DATA
    missing = [c for c in features if c not in current.columns or c not in reference.columns]
    if missing:
        print(f"detect_drift: {name}: missing feature column(s) {missing[:5]}", file=sys.stderr)
        return 2
    if current.empty:
        print(f"detect_drift: {name} has no rows", file=sys.stderr)
        return 2
    report = detect_drift(reference, current, features, args.alpha, args.min_effect)
    labelled = current if args.current else labelled_feedback(meta, current)
    report.update(status="drift" if report["drift_detected"] else "no_drift",
                  reference=shown(args.reference), rows=len(current),
                  live_score=None if labelled is None else live_score(meta, labelled),
                  primary_metric=meta.get("primary_metric"))
    if args.current:
        report["current"] = shown(args.current)
    else:
        report["production"] = source
        report["labelled_rows"] = 0 if labelled is None else len(labelled)
    if args.plot:
        report["plot"] = plot_drift(report, Path(args.plot))
    write_report(report, Path(args.report))
    return 1 if report["drift_detected"] else 0


if __name__ == "__main__":
    sys.exit(main())
