"""Interpretability: permutation importance of the raw feature columns on the test split
(model-agnostic, measured with the primary metric), and SHAP values when shap is installed.

Run: `python -m interpretability.explain` -> interpretability/feature_importance.{json,md}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import yaml
from models.metrics import higher_is_better, score
from sklearn.inspection import permutation_importance

ROOT = Path(__file__).resolve().parents[1]
MAX_ROWS = 1500
REPEATS = 3


def explain() -> dict[str, Any]:
    spec = yaml.safe_load((ROOT / "ml-spec.yaml").read_text(encoding="utf-8"))
    model = joblib.load(ROOT / "artifacts/model.joblib")
    test = pd.read_csv(ROOT / "data/splits/test.csv", low_memory=False)
    test = test.sample(n=min(MAX_ROWS, len(test)), random_state=0)
    features, metric = list(spec["feature_columns"]), spec["primary_metric"]
    X, y = test[features], test[spec["target"]]
    sign = 1.0 if higher_is_better(metric) else -1.0

    def scorer(est: Any, X_: pd.DataFrame, y_: pd.Series) -> float:
        return sign * score(metric, est, X_, y_, spec.get("positive_class"))

    imp = permutation_importance(model, X, y, scoring=scorer, n_repeats=REPEATS, random_state=0)
    ranked = sorted(zip(features, imp.importances_mean, imp.importances_std, strict=True),
                    key=lambda t: -t[1])
    result: dict[str, Any] = {
        "method": "permutation_importance", "metric": metric, "n_repeats": REPEATS,
        "rows": int(len(X)),
        "features": [{"feature": f, "importance": float(m), "importance_mean": float(m),
                      "importance_std": float(s)} for f, m, s in ranked],
        "shap": shap_summary(model, X),
    }
    out = ROOT / "interpretability"
    (out / "feature_importance.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Feature importance", "",
             f"Permutation importance on {len(X)} test rows: the drop in {metric} when one raw "
             f"feature column is shuffled ({REPEATS} repeats).", "",
             "| feature | importance | std |", "| --- | --- | --- |"]
    lines += [f"| {f} | {m:.4f} | {s:.4f} |" for f, m, s in ranked]
    (out / "feature_importance.md").write_text("\n".join(lines) + "\n")
    return result


def shap_summary(model: Any, X: pd.DataFrame) -> dict[str, float] | None:
    """Mean |SHAP| per transformed feature, when shap is installed (else None)."""
    try:
        import shap
    except ImportError:
        return None
    pre, est = model[:-1], model[-1]
    Xt = pre.transform(X.head(300))
    names = list(pre.get_feature_names_out())
    try:
        values = shap.Explainer(est, Xt)(Xt).values
    except Exception:  # noqa: BLE001 - SHAP is optional; permutation importance stands alone
        return None
    mean_abs = np.abs(values).mean(axis=0)
    if mean_abs.ndim > 1:
        mean_abs = mean_abs.mean(axis=-1)
    return {n: float(v) for n, v in sorted(zip(names, mean_abs, strict=True), key=lambda t: -t[1])}


def main() -> None:
    result = explain()
    top = ", ".join(f["feature"] for f in result["features"][:5])
    print(f"most important features: {top}")


if __name__ == "__main__":
    main()
