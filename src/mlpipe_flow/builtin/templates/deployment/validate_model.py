"""Model validation for CI: re-score the served model (the registry's exported champion, else
artifacts/) on the hold-out split and compare with the score recorded when it was trained.
Exit status 1 when it falls below --min-ratio of it (above 1/--min-ratio for an error metric).
Metrics come from the project's one table, models/metrics.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import joblib
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.metrics import higher_is_better, score  # noqa: E402


def served_dir() -> Path:
    """The model folder the API serves: the registry's export once continuous training
    exists (continuous_training/registry.py), the phase-3 artifacts/ before."""
    try:
        from continuous_training.registry import served_dir as registry_served_dir
    except ImportError:
        return ROOT / "artifacts"
    return registry_served_dir()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-ratio", type=float, default=0.98)
    args = ap.parse_args(argv)
    folder = served_dir()
    meta = json.loads((folder / "model_meta.json").read_text(encoding="utf-8"))
    model = joblib.load(folder / "model.joblib")
    test = pd.read_csv(ROOT / "data" / "splits" / "test.csv")
    metric = meta["primary_metric"]
    got = score(metric, model, test[meta["feature_columns"]], test[meta["target"]],
                meta.get("positive_class"))
    recorded = meta.get("test_score")
    ok = True
    if isinstance(recorded, (int, float)) and recorded:
        ok = (got >= recorded * args.min_ratio) if higher_is_better(metric) else (
            got <= recorded / args.min_ratio)
    print(json.dumps({"model": folder.relative_to(ROOT).as_posix(), "version": meta.get("version"),
                      "metric": metric, "score": got, "recorded": recorded, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
