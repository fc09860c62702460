"""Model training: a dummy baseline and several model families, cross-validated, every run
logged to MLflow (sqlite:///mlflow.db in the project), the best model refitted on
train+valid (never on the test split), scored once on the held-out test split — overall and
per group of the spec's group_columns — and saved with its preprocessing as ONE scikit-learn
Pipeline (artifacts/model.joblib) that predicts from the raw feature columns; the best run
logs that very file, so the store and the saved model can be matched by hash.

Cost that grows linearly with the data: model selection (the candidates' cross-validation and
the Optuna search) runs on a stratified random sample of at most SELECTION_MAX_ROWS train+valid
rows (all of them when fewer; the sample's size is in results.json's `model_selection` and the
log), and only the selected model is then fitted on every train+valid row. A random forest is a
candidate only up to FOREST_MAX_ROWS train+valid rows: its trees grow with the data (fitting,
size and predict time), where histogram gradient boosting bins the features once and keeps a
fixed number of leaves, so it is the tree model for large data.

Serving cost is a selection constraint: each candidate's predict time is measured on the
fold model it cross-validated with, for one row and for the batch the API's micro-batching
gathers under load (SERVE_BATCH_ROWS), and a model whose batch cannot be predicted within its
share of the serving budget in ml-spec.yaml (`serving`: throughput_rps, latency_p95_ms) is not
selected, however well it scores; results.json records the figures and the verdict.

Settings (environment): TRAIN_CV_FOLDS (5), TRAIN_N_JOBS (the number of CPUs, never more),
TRAIN_SELECTION_ROWS (20000), TRAIN_MAX_BATCH_MS (a tighter serving budget than the spec's, e.g.
after a failed load test), TRAIN_EXCLUDE_MODELS (candidates not to select, comma-separated),
TRAIN_OPTUNA_TRIALS (12; 0 turns the search off) and
TRAIN_OPTUNA_TIMEOUT_S (one second per 1,000 sampled rows, at least 5 and at most 30): a bounded
Optuna search over the gradient-boosting model runs only when optuna is installed.

Run: `python -m models.train_model`
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import yaml
from feature_engineering.features import SEED, build_preprocessor
from models.evaluate import by_group, evaluate
from models.metrics import higher_is_better, score
from models.report import write_evaluation
from models.tracking import tracking_uri
from sklearn.base import clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
MODEL_VERSION = "1"
SERVE_BATCH_ROWS = 32  # requests a loaded API gathers per predict (deployment/api/main.py)
SERVE_CPU_SHARE = 0.5  # of one core for predict calls; the rest serves HTTP
SELECTION_MAX_ROWS = 20_000  # model selection's sample (the phase-3 gate cross-validates as many)
FOREST_MAX_ROWS = 50_000  # above this many train+valid rows, no random forest candidate


def n_jobs() -> int:
    cpus = os.cpu_count() or 1
    return max(1, min(cpus, int(os.environ.get("TRAIN_N_JOBS", cpus))))


def candidates(problem_type: str, jobs: int, rows: int) -> dict[str, Any]:
    """The baseline and the model families; the forest only for up to FOREST_MAX_ROWS rows."""
    if problem_type == "regression":
        models: dict[str, Any] = {
            "dummy_mean": DummyRegressor(strategy="mean"),
            "ridge": Ridge(alpha=1.0),
            "hist_gradient_boosting": HistGradientBoostingRegressor(max_iter=150, learning_rate=0.1,
                                                                    random_state=SEED),
            "random_forest": RandomForestRegressor(n_estimators=100, min_samples_leaf=2,
                                                   n_jobs=jobs, random_state=SEED),
        }
    else:
        models = {
            "dummy_prior": DummyClassifier(strategy="prior"),
            "logistic_regression": LogisticRegression(max_iter=2000, C=1.0),
            "hist_gradient_boosting": HistGradientBoostingClassifier(
                max_iter=100, learning_rate=0.08, max_leaf_nodes=15, random_state=SEED),
            "random_forest": RandomForestClassifier(n_estimators=100, min_samples_leaf=3,
                                                    n_jobs=jobs, random_state=SEED),
        }
    if rows > FOREST_MAX_ROWS:
        del models["random_forest"]
    return models


def selection_rows() -> int:
    return max(1_000, int(os.environ.get("TRAIN_SELECTION_ROWS", SELECTION_MAX_ROWS)))


def selection_sample(X: pd.DataFrame, y: pd.Series, spec: dict[str, Any],
                     cap: int) -> tuple[pd.DataFrame, pd.Series]:
    """At most `cap` rows drawn at random (seed SEED), stratified on the target for a
    classification: every class keeps its share, so the sample's CV estimates the full data's."""
    if len(X) <= cap:
        return X, y
    stratify = (y if spec["problem_type"] != "regression" and y.value_counts().min() >= 2
                else None)
    X_s, _, y_s, _ = train_test_split(X, y, train_size=cap, random_state=SEED, stratify=stratify)
    return X_s.reset_index(drop=True), y_s.reset_index(drop=True)


def load() -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    spec = yaml.safe_load((ROOT / "ml-spec.yaml").read_text(encoding="utf-8"))
    schema = json.loads((ROOT / "data_quality/schema.json").read_text(encoding="utf-8"))
    splits = {n: pd.read_csv(ROOT / f"data/splits/{n}.csv", low_memory=False)
              for n in ("train", "valid", "test")}
    return spec, schema, splits


def cross_validate(pipe: Pipeline, X: pd.DataFrame, y: pd.Series, spec: dict[str, Any],
                   folds: int) -> tuple[list[float], Pipeline]:
    """The fold scores, and the last fold's fitted model (what the serving cost is measured on)."""
    if spec["problem_type"] == "regression":
        splitter: Any = KFold(folds, shuffle=True, random_state=SEED)
    else:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=SEED)
    # gradient boosting's OpenMP threads spin badly on a busy machine; one thread per fit
    # is faster here and leaves the other cores to the random forest and MLflow
    with threadpool_limits(limits=1, user_api="openmp"):
        return _folds(splitter, pipe, X, y, spec)


def _folds(splitter: Any, pipe: Pipeline, X: pd.DataFrame, y: pd.Series,
           spec: dict[str, Any]) -> tuple[list[float], Pipeline]:
    scores = []
    model = pipe
    for tr, va in splitter.split(X, y):
        model = clone(pipe).fit(X.iloc[tr], y.iloc[tr])
        scores.append(score(spec["primary_metric"], model, X.iloc[va], y.iloc[va],
                            spec.get("positive_class")))
    return scores, model


def serving_budget(spec: dict[str, Any]) -> dict[str, float]:
    """The most a predict call on one micro-batch may take: the batches arriving per second
    (throughput / SERVE_BATCH_ROWS) must fit in SERVE_CPU_SHARE of one core, and one batch in a
    quarter of the p95 latency objective (queueing and HTTP take the rest)."""
    serving = spec.get("serving") or {}
    rate = float(serving.get("throughput_rps") or 1000.0)
    p95 = float(serving.get("latency_p95_ms") or 100.0)
    max_batch_ms = min(1000.0 * SERVE_CPU_SHARE * SERVE_BATCH_ROWS / rate, p95 / 4)
    if os.environ.get("TRAIN_MAX_BATCH_MS"):  # tightened after a load test the model failed
        max_batch_ms = min(max_batch_ms, float(os.environ["TRAIN_MAX_BATCH_MS"]))
    return {"throughput_rps": rate, "latency_p95_ms": p95, "batch_rows": SERVE_BATCH_ROWS,
            "max_batch_ms": round(max_batch_ms, 3)}


def predict_cost(model: Pipeline, X: pd.DataFrame, classifier: bool,
                 repeats: int = 15) -> dict[str, float]:
    """CPU milliseconds per call of the fitted estimator (predict, and predict_proba for a
    classifier, as the API answers both) on one preprocessed row and on one preprocessed
    micro-batch, the fastest of `repeats` calls each. The preprocessing is left out: the API
    compiles it to numpy (deployment/api/predictor.py), at the same small cost for every
    candidate. CPU time of this process (all its threads: a forest predicts on several),
    measured when nothing else runs in it: the model's own cost, which other work on a busy
    machine does not inflate."""
    estimator = model[-1]

    def call(rows: Any) -> float:
        started = time.process_time()
        estimator.predict(rows)
        if classifier:
            estimator.predict_proba(rows)
        return (time.process_time() - started) * 1000

    prepared = model[:-1].transform(X.iloc[np.arange(SERVE_BATCH_ROWS) % len(X)])
    one, batch = prepared[:1], prepared
    call(batch)  # warm-up
    return {"single_row": round(min(call(one) for _ in range(repeats)), 3),
            f"batch_{SERVE_BATCH_ROWS}": round(min(call(batch) for _ in range(repeats)), 3)}


def optuna_budget_s(rows: int) -> float:
    """Seconds the search may take: one per 1,000 rows searched on, at least 5, at most 30."""
    default = min(30.0, max(5.0, rows / 1000))
    return float(os.environ.get("TRAIN_OPTUNA_TIMEOUT_S", default))


def optuna_search(base: Any, spec: dict[str, Any], schema: dict[str, Any], X: pd.DataFrame,
                  y: pd.Series, features: list[str]) -> dict[str, Any] | None:
    """A bounded search (trials and seconds) over gradient boosting on the selection sample:
    fitted on 80% of it, scored on the other 20% (stratified)."""
    trials = int(os.environ.get("TRAIN_OPTUNA_TRIALS", "12"))
    if trials <= 0:
        return None
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = spec["primary_metric"]
    stratify = y if spec["problem_type"] != "regression" and y.value_counts().min() >= 2 else None
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.2, random_state=SEED,
                                              stratify=stratify)

    def objective(trial: Any) -> float:
        est = clone(base).set_params(
            learning_rate=trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
            max_leaf_nodes=trial.suggest_int("max_leaf_nodes", 7, 63),
            l2_regularization=trial.suggest_float("l2_regularization", 1e-6, 1.0, log=True))
        pipe = Pipeline([("preprocess", build_preprocessor(schema, features)), ("model", est)])
        with threadpool_limits(limits=1, user_api="openmp"):
            pipe.fit(X_tr, y_tr)
        return score(metric, pipe, X_va, y_va, spec.get("positive_class"))

    study = optuna.create_study(direction="maximize" if higher_is_better(metric) else "minimize",
                                sampler=optuna.samplers.TPESampler(seed=SEED))
    study.optimize(objective, n_trials=trials, timeout=optuna_budget_s(len(X)))
    print(f"optuna: {len(study.trials)} trials on {len(X)} rows", flush=True)
    return dict(study.best_params)


def start_mlflow(spec: dict[str, Any]) -> Any:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(ROOT))
    name = f"{spec['target']}-{spec['problem_type']}"
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=(ROOT / "mlruns").as_uri())
    mlflow.set_experiment(name)
    return mlflow


def train() -> dict[str, Any]:
    warnings.filterwarnings("ignore", category=UserWarning)
    spec, schema, splits = load()
    target, metric = spec["target"], spec["primary_metric"]
    features = list(spec["feature_columns"])
    folds = int(os.environ.get("TRAIN_CV_FOLDS", "5"))
    jobs = n_jobs()
    dev = pd.concat([splits["train"], splits["valid"]], ignore_index=True)
    X_dev, y_dev = dev[features], dev[target]
    X_test, y_test = splits["test"][features], splits["test"][target]
    snapshot = ROOT / "data/raw/snapshot.json"
    data_sha = json.loads(snapshot.read_text())["sha256"] if snapshot.is_file() else ""
    # the MLflow store (schema migrations take seconds) is set up while the models train
    tracking: dict[str, Any] = {}

    def set_up() -> None:
        try:
            tracking["mlflow"] = start_mlflow(spec)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, raised there
            tracking["error"] = e

    setup = threading.Thread(target=set_up)
    setup.start()

    cap = selection_rows()
    X_sel, y_sel = selection_sample(X_dev, y_dev, spec, cap)
    selection = {"rows": int(len(X_sel)), "of_rows": int(len(X_dev)), "seed": SEED,
                 "method": (f"{folds}-fold CV of every candidate on "
                            + ("all train+valid rows" if len(X_sel) == len(X_dev) else
                               f"a {'stratified ' if spec['problem_type'] != 'regression' else ''}"
                               f"random sample of {len(X_sel)} train+valid rows"))
                           + "; the selected model fitted on all train+valid rows"}
    print(f"model selection: {selection['method']} (of {len(X_dev)})", flush=True)
    models = candidates(spec["problem_type"], jobs, len(X_dev))
    tuned = optuna_search(models["hist_gradient_boosting"], spec, schema, X_sel, y_sel, features)
    if tuned:
        models["hist_gradient_boosting_tuned"] = clone(models["hist_gradient_boosting"]).set_params(**tuned)
    budget = serving_budget(spec)
    classifier = spec["problem_type"] != "regression"
    results: dict[str, Any] = {}
    fold_models: dict[str, Pipeline] = {}
    for name, estimator in models.items():
        pipe = Pipeline([("preprocess", build_preprocessor(schema, features)), ("model", estimator)])
        started = time.perf_counter()
        scores, fold_models[name] = cross_validate(pipe, X_sel, y_sel, spec, folds)
        seconds = time.perf_counter() - started
        params = {k: v for k, v in estimator.get_params().items()
                  if isinstance(v, (int, float, str, bool)) or v is None}
        results[name] = {"cv_mean": float(np.mean(scores)), "cv_std": float(np.std(scores)),
                         "cv_scores": [round(s, 6) for s in scores], "cv_seconds": round(seconds, 2),
                         "cv_rows": int(len(X_sel)),
                         "estimator": type(estimator).__name__, "params": params}
        print(f"{name:32s} cv {metric} {results[name]['cv_mean']:.4f} "
              f"+/- {results[name]['cv_std']:.4f} ({seconds:.1f}s)", flush=True)

    setup.join()
    if "error" in tracking:
        raise RuntimeError(f"cannot open the MLflow store mlflow.db: {tracking['error']}") \
            from tracking["error"]
    for name, fold_model in fold_models.items():  # measured alone: the setup thread is done
        with threadpool_limits(limits=1, user_api="openmp"):  # as the API runs (OMP_NUM_THREADS=1)
            cost = predict_cost(fold_model, X_sel, classifier)
        batch_ms = cost[f"batch_{SERVE_BATCH_ROWS}"]
        results[name].update(predict_cpu_ms=cost, servable=batch_ms <= budget["max_batch_ms"])
        print(f"{name:32s} predict {SERVE_BATCH_ROWS} rows: {batch_ms:.2f} CPU ms "
              f"(budget {budget['max_batch_ms']:g})"
              f"{'' if results[name]['servable'] else ': too slow to serve'}", flush=True)
    fold_models.clear()
    mlflow = tracking["mlflow"]
    for name, r in results.items():
        with mlflow.start_run(run_name=name) as run:
            mlflow.set_tags({"model_family": r["estimator"], "data_sha256": data_sha,
                             "baseline": str(name.startswith("dummy")).lower()})
            mlflow.log_params({**{k: str(v) for k, v in r["params"].items()},
                               "cv_rows": r["cv_rows"], "train_rows": len(X_dev)})
            mlflow.log_metrics({f"cv_{metric}_mean": r["cv_mean"], f"cv_{metric}_std": r["cv_std"],
                                "cv_seconds": r["cv_seconds"],
                                **{f"predict_cpu_ms_{k}": v for k, v in r["predict_cpu_ms"].items()}})
            for i, s in enumerate(r["cv_scores"]):
                mlflow.log_metric(f"cv_{metric}", s, step=i)
            r["mlflow_run_id"] = run.info.run_id

    sign = 1 if higher_is_better(metric) else -1
    not_wanted = {n.strip() for n in os.environ.get("TRAIN_EXCLUDE_MODELS", "").split(",")}
    trained = [n for n in results if not n.startswith("dummy") and n not in not_wanted]
    if not trained:
        raise SystemExit(f"TRAIN_EXCLUDE_MODELS leaves no model to select from {list(results)}")
    contenders = [n for n in trained if results[n]["servable"]]
    if not contenders:  # nothing meets the budget: the cheapest to serve, said out loud
        contenders = [min(trained, key=lambda n: results[n]["predict_cpu_ms"][f"batch_{SERVE_BATCH_ROWS}"])]
        print(f"warning: no model predicts {SERVE_BATCH_ROWS} rows within "
              f"{budget['max_batch_ms']} ms; selecting the fastest, {contenders[0]}", flush=True)
    excluded = [n for n in trained if n not in contenders]
    baseline_name = next(n for n in results if n.startswith("dummy"))
    # the best contender fitted on every train+valid row; a model whose full fit predicts too
    # slowly to serve (a forest's trees grow with the rows) gives way to the next best
    best, final = "", None
    for name in sorted(contenders, key=lambda n: -sign * results[n]["cv_mean"]):
        started = time.perf_counter()
        with threadpool_limits(limits=1, user_api="openmp"):  # spinning threads: see cross_validate
            final = Pipeline([("preprocess", build_preprocessor(schema, features)),
                              ("model", clone(models[name]))]).fit(X_dev, y_dev)
        fit_s = time.perf_counter() - started
        with threadpool_limits(limits=1, user_api="openmp"):
            cost = predict_cost(final, X_sel, classifier)
        batch_ms = cost[f"batch_{SERVE_BATCH_ROWS}"]
        results[name]["final_fit"] = {"rows": int(len(X_dev)), "seconds": round(fit_s, 2),
                                      "predict_cpu_ms": cost}
        print(f"{name:32s} fitted on all {len(X_dev)} rows in {fit_s:.1f}s; predict "
              f"{SERVE_BATCH_ROWS} rows: {batch_ms:.2f} CPU ms", flush=True)
        best = name
        if batch_ms <= budget["max_batch_ms"] or len(contenders) == 1:
            break
        results[name]["servable"] = False
        excluded.append(name)
        print(f"{name}: too slow to serve once fitted on all rows; trying the next", flush=True)
    assert final is not None
    baseline = Pipeline([("preprocess", build_preprocessor(schema, features)),
                         ("model", clone(models[baseline_name]))]).fit(X_dev, y_dev)
    positive = spec.get("positive_class")
    test_score = score(metric, final, X_test, y_test, positive)
    baseline_score = score(metric, baseline, X_test, y_test, positive)
    test_metrics = evaluate(final, splits["test"], spec)
    group_metrics = by_group(final, splits["test"], spec)

    (ROOT / "artifacts").mkdir(exist_ok=True)
    joblib.dump(final, ROOT / "artifacts/model.joblib")
    classes = [c.item() if hasattr(c, "item") else c for c in getattr(final, "classes_", [])]
    meta = {
        "version": MODEL_VERSION, "model_name": best, "estimator": type(models[best]).__name__,
        "feature_columns": features, "target": target, "problem_type": spec["problem_type"],
        "classes": classes or None, "positive_class": positive, "primary_metric": metric,
        "test_score": test_score, "baseline_test_score": baseline_score,
        "cv_mean": results[best]["cv_mean"], "cv_std": results[best]["cv_std"],
        "n_train_rows": int(len(dev)), "n_test_rows": int(len(X_test)), "data_sha256": data_sha,
        "model_selection_rows": int(len(X_sel)),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (ROOT / "artifacts/model_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    with mlflow.start_run(run_id=results[best]["mlflow_run_id"]):
        mlflow.set_tag("best", "true")
        mlflow.log_metrics({f"test_{metric}": test_score, f"baseline_test_{metric}": baseline_score,
                            **{f"test_{k}": v for k, v in test_metrics.items()
                               if v is not None and k != metric}})
        mlflow.log_artifact(str(ROOT / "artifacts/model.joblib"))
    summary = {
        "primary_metric": metric, "higher_is_better": higher_is_better(metric),
        "cv_folds": folds, "n_jobs": jobs, "model_selection": selection, "target_std": float(y_dev.std()) if
        spec["problem_type"] == "regression" else None,
        "models": results, "best_model": best, "baseline_model": baseline_name,
        "serving_budget": budget, "excluded_for_serving_cost": excluded,
        "excluded_by_request": sorted(n for n in results if n in not_wanted),
        "test_score": test_score, "baseline_test_score": baseline_score,
        "test_metrics": test_metrics, "group_metrics": group_metrics,
        "optuna_best_params": tuned,
    }
    (ROOT / "experiments").mkdir(exist_ok=True)
    (ROOT / "experiments/results.json").write_text(json.dumps(summary, indent=2) + "\n")
    # per-class metrics, the decision threshold (chosen out of fold on the selection sample),
    # calibration, groups, figures and the executed notebook (reports/, artifacts/)
    write_evaluation(final, X_test, y_test, spec, ROOT, select=(X_sel, y_sel),
                     objective=os.environ.get("DECISION_OBJECTIVE", "f1"),
                     model_file=ROOT / "artifacts/model.joblib")
    print(f"best: {best}; test {metric} {test_score:.4f} vs baseline {baseline_score:.4f}")
    return summary


def main() -> None:
    train()


if __name__ == "__main__":
    main()
