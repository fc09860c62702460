"""Retrain, evaluate, compare with production, register, decide, record why.

    python continuous_training/retrain.py [--data latest.csv] [--min-improvement 0.0]
                                          [--force-promote]

1. fetch the latest data (--data, default: the training split; raw columns with the target)
2. retrain with the same pipeline as the champion (sklearn.base.clone: same preprocessing and
   hyper-parameters, fresh fit)
3. evaluate challenger and champion on the hold-out split (data/splits/test.csv) with the
   project's metric table (models/metrics.py)
4. register the challenger in the MLflow Model Registry (a new version, alias `challenger`),
   in an MLflow run of the experiment `continuous-training` that logs both scores
5. decide: promote when the challenger beats the champion by at least --min-improvement on
   the primary metric (alias `champion` moves to it and the export the API loads is rewritten),
   else keep the champion
6. record the decision and its reason in registry/decisions.jsonl; print it as JSON

Exit status 0 whatever the decision; 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import joblib
import pandas as pd
from sklearn.base import clone

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from continuous_training import registry  # noqa: E402
from models.metrics import higher_is_better, score  # noqa: E402

ROOT = registry.ROOT


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="retrain and run the champion/challenger decision")
    ap.add_argument("--data", default=str(ROOT / "data" / "splits" / "train.csv"))
    ap.add_argument("--holdout", default=str(ROOT / "data" / "splits" / "test.csv"))
    ap.add_argument("--min-improvement", type=float, default=0.0)
    ap.add_argument("--force-promote", action="store_true",
                    help="promote whatever the comparison says (drills, emergencies)")
    args = ap.parse_args(argv)
    current = registry.ensure_initialised()
    champ_dir = registry.served_dir()
    meta = json.loads((champ_dir / "model_meta.json").read_text(encoding="utf-8"))
    features, target = meta["feature_columns"], meta["target"]
    metric, positive = meta["primary_metric"], meta.get("positive_class")
    try:
        data = pd.read_csv(args.data)
        holdout = pd.read_csv(args.holdout)
    except (OSError, ValueError) as e:
        print(f"retrain: cannot read the data: {e}", file=sys.stderr)
        return 2
    missing = [c for c in [*features, target] if c not in data.columns]
    if missing:
        print(f"retrain: {args.data}: missing column(s) {missing[:5]}", file=sys.stderr)
        return 2
    data = data.dropna(subset=[target])
    champion_model = joblib.load(champ_dir / "model.joblib")
    challenger = clone(champion_model)
    started = time.time()
    challenger.fit(data[features], data[target])
    y, frame = holdout[target], holdout[features]
    champ_score = score(metric, champion_model, frame, y, positive)
    chall_score = score(metric, challenger, frame, y, positive)
    better = (chall_score - champ_score) if higher_is_better(metric) else (champ_score - chall_score)
    promote = args.force_promote or better >= args.min_improvement
    if args.force_promote:
        reason = "promotion forced (--force-promote)"
    elif promote:
        reason = (f"challenger {metric} {chall_score:.4f} vs champion {champ_score:.4f}: "
                  f"improvement {better:+.4f} >= {args.min_improvement}")
    else:
        reason = (f"challenger {metric} {chall_score:.4f} vs champion {champ_score:.4f}: "
                  f"improvement {better:+.4f} < {args.min_improvement}; champion kept")
    mlflow = registry.store()
    with mlflow.start_run(run_name="retrain") as run:
        mlflow.log_params({"data": str(args.data), "rows": len(data), "metric": metric,
                           "min_improvement": args.min_improvement,
                           "force_promote": args.force_promote,
                           "champion_version": current["version"]})
        mlflow.log_metrics({f"champion_{metric}": champ_score, f"challenger_{metric}": chall_score,
                            "improvement": better})
        mv = registry.register(challenger, {
            **meta, "test_score": chall_score, "trained_on": str(args.data),
            "trained_rows": len(data), "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime()),
            "parent": current["version"]}, sample=frame.head(50))
        registry.set_challenger(mv)
        if promote:
            registry.promote(mv)
        mlflow.set_tags({"decision": "promote" if promote else "keep_champion",
                         "reason": reason, "challenger_version": mv.version})
    decision = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "champion": current["version"], "challenger": registry.model_version_name(mv),
                "metric": metric, "registered_model": mv.name,
                "challenger_uri": f"models:/{mv.name}/{mv.version}",
                "champion_model": (champ_dir / "model.joblib").relative_to(ROOT).as_posix(),
                "challenger_model": registry.model_path(mv),
                "champion_score": champ_score, "challenger_score": chall_score,
                "decision": "promote" if promote else "keep_champion", "reason": reason,
                "data": str(args.data), "rows": len(data), "mlflow_run_id": run.info.run_id,
                "train_seconds": round(time.time() - started, 2),
                "serving": (registry.champion() or {}).get("version")}
    registry.record_decision(decision)
    print(json.dumps(decision))
    return 0


if __name__ == "__main__":
    sys.exit(main())
