"""The phase-3 gate's own measurement of the saved model, made once per content and shared by
the checks of the gate (model_checks.py, model_card.py).

One probe process (`checks/model_probe.py`, in the workspace's interpreter: unpickling runs the
agent's code) returns raw outputs; every number below is computed here, from labels the probe
never sees except to fit clones:

- the saved model on the test split: every applicable metric (metrics.applicable), the same
  per group of each of the spec's `group_columns`, and the gate's own dummy baseline;
- CV_REPEATS x CV_FOLDS-fold cross-validation of a clone of the saved pipeline on train+valid
  (the rows the final model learns from; the test split stays out), folds and seed drawn at
  gate time: the agent cannot have tuned for them. The spread of one 5-fold CV is itself
  noisy (its std has a relative error of about 35%), so the gate repeats it and takes the
  mean of the repetitions' stds;
- clones refitted on train, on train+valid and on train+valid+test, scored on the test split,
  with their distance to the saved model's own outputs: a saved model that matches the refit
  that saw the test split, or scores far above the honest refit, was trained on the test split;
- permutation importance of every raw feature column on a sample of the test split, with the
  gate's seed.

Bounded cost (stated in the README): CV on at most MAX_CV_ROWS rows of train+valid (a random
sample above that); refits only while train+valid+test hold at most MAX_REFIT_ROWS rows;
importance on at most IMPORTANCE_ROWS test rows; CV repetitions after the first stop at half
the probe's time limit. Fitting runs single-threaded per native library (the probe).

The result is kept in mlpipe's records of the run (MLPIPE_HOME, out of the agent's reach),
keyed by the content of model, splits and spec, so a gate measures once; without a recorded run
it is kept under MLPIPE_HOME/gate-cache by the same key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import secrets
import statistics
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks import metrics
from mlpipe_flow.checks.artifacts import ProbeError, feature_types, run_model
from mlpipe_flow.checks.base import CheckContext
from mlpipe_flow.state import file_sha256

MEASURE_VERSION = "5"
CV_FOLDS = 5
CV_REPEATS = 3
MAX_CV_ROWS = 20_000
MAX_REFIT_ROWS = 50_000
IMPORTANCE_ROWS = 2_000
IMPORTANCE_REPEATS = 5
BOOTSTRAP = 200
NOISE_RESAMPLES = 60  # bootstrap resamples of each fold: the sampling noise of a fold score
LABEL = "__mlpipe_label__"
REFITS = {"train_valid": ("train", "valid"), "train_valid_test": ("train", "valid", "test"),
          "train": ("train",)}


class ScoreInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "artifacts/model.joblib"
    train: str = "data/splits/train.csv"
    valid: str = "data/splits/valid.csv"
    test: str = "data/splits/test.csv"
    spec: str = "ml-spec.yaml"
    score_timeout_s: float = Field(default=540, gt=0)

    #: numbers of the gate's own machinery that bind nothing the agent makes
    UNSTATED: ClassVar[frozenset[str]] = frozenset({"score_timeout_s"})


def scored_rule(p: ScoreInputs) -> str:
    """How the gate scores the saved model, the same for every phase-3 check."""
    return (f"the gate loads `{p.model}` with joblib and scores it itself on `{p.test}` with the "
            f"primary metric of `{p.spec}`")


def tolerance_rule(tolerance: float) -> str:
    """The one definition of a reported score's tolerance (score_tolerance)."""
    return (f"{tolerance:g} x max(1, |measured|) (an absolute {tolerance:g} for a score in "
            f"[-1, 1], {tolerance:.0%} of the score above that: an RMSE of 57.3 may be off by "
            f"{57.3 * tolerance:.3g})")


def baseline_rule() -> str:
    """The one definition of the gate's baseline (_baseline)."""
    proba = ", ".join(sorted(metrics.PROBA_METRICS))
    return ("the gate's own baseline, a scikit-learn dummy fitted on the train split "
            "(`DummyRegressor(strategy=\"mean\")` for a regression, "
            f"`DummyClassifier(strategy=\"prior\")` when the primary metric scores probabilities: "
            f"{proba}; `DummyClassifier(strategy=\"most_frequent\")` for the other "
            "classification metrics)")


def margin_rule() -> str:
    return ("the margin is (m - b) / (1 - b) for scores (roc_auc, accuracy, r2, ...) and "
            "(b - m) / b for errors (rmse, mae, mape, log_loss), m the model's and b the "
            "baseline's test score")


def cv_rule() -> str:
    return (f"the gate's own {CV_REPEATS}x{CV_FOLDS}-fold cross-validation of a clone "
            "(`sklearn.base.clone`) of the saved model on train+valid, with folds and a seed "
            f"drawn at gate time (a random sample of {MAX_CV_ROWS:,} rows when larger)")


def unit(metric: str, scale: float) -> float:
    """The size of one 'point' of a metric: 1 for scores and ratios, the target's standard
    deviation for errors in the target's units (rmse, mae)."""
    return scale if metric in ("rmse", "mae") and scale > 0 else 1.0


def goodness(metric: str, value: float) -> float:
    """Higher is better, whatever the metric."""
    return value if metrics.higher_is_better(metric) else -value


def score_tolerance(measured: float, tolerance: float = 0.01) -> float:
    """The one tolerance of a reported score (prompt and gate state it): 0.01 x max(1, |m|)."""
    return tolerance * max(1.0, abs(measured))


def measure(ctx: CheckContext, params: ScoreInputs) -> dict[str, Any]:
    """The gate's measurement (see the module's docstring), or {"error": ..., "status": ...}."""
    rels = {"spec": params.spec, "model": params.model, "train": params.train,
            "test": params.test}
    for rel in rels.values():
        if not ctx.path(rel).is_file():
            return {"error": f"{rel} does not exist"}
    if ctx.path(params.valid).is_file():
        rels["valid"] = params.valid
    digests = {k: file_sha256(ctx.path(rel)) for k, rel in rels.items()}
    records = ctx.records()
    if records is not None and not records.exists():
        return {"error": records.missing(), "status": "error"}
    for k in ("train", "valid", "test"):
        if k not in rels:
            continue
        recorded = records.recorded_hash(rels[k]) if records else None
        if recorded is not None and recorded != digests[k]:
            return {"error": f"{rels[k]} changed since the phase that made it passed (recorded "
                             f"sha256 {recorded[:12]}, now {digests[k][:12]}): a score on it is "
                             "not a hold-out score; run that phase again"}
    where = [params.model, params.train, params.valid, params.test, params.spec]
    key = json.dumps([MEASURE_VERSION, sorted(digests.items()), where])
    name = "measure-" + hashlib.sha256(key.encode()).hexdigest()[:24]
    lock = records.cache_lock(name) if records is not None else contextlib.nullcontext()
    with lock:  # checks of one gate run at once: the first measures, the others wait for it
        cached = records.cache_get(name) if records else _home_cache(name)
        if cached is not None:
            return cached
        try:
            out = _measure(ctx, params, rels)
        except (ProbeError, ValueError, KeyError) as e:
            return {"error": str(e)}
        if records is not None:
            records.cache_put(name, out)
        else:
            _home_cache(name, out)
        return out


def _home_cache(name: str, value: dict[str, Any] | None = None) -> dict[str, Any] | None:
    from mlpipe_flow.memory import memory_home
    from mlpipe_flow.state import atomic_write

    path = memory_home() / "gate-cache" / f"{name}.json"
    if value is not None:
        atomic_write(path, json.dumps(value))
        return value
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _measure(ctx: CheckContext, params: ScoreInputs, rels: dict[str, str]) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    import yaml

    spec = yaml.safe_load(ctx.path(rels["spec"]).read_text(encoding="utf-8"))
    metric, target = spec["primary_metric"], spec["target"]
    problem = spec["problem_type"]
    features = list(spec["feature_columns"])
    positive = spec.get("positive_class")
    splits: dict[str, Any] = {k: pd.read_csv(ctx.path(rels[k]), low_memory=False)
                              for k in ("train", "valid", "test") if k in rels}
    for k, frame in splits.items():
        missing = [c for c in [*features, target] if c not in frame.columns]
        if missing:
            raise ValueError(f"the {k} split lacks columns {missing[:5]}")
        splits[k] = frame[frame[target].notna()].reset_index(drop=True)
    train, test = splits["train"], splits["test"]
    dev = pd.concat([splits[k] for k in ("train", "valid") if k in splits], ignore_index=True)
    regression = problem == "regression"
    proba = not regression
    seed = secrets.randbelow(2**31 - 1)
    dtypes = feature_types(train, features)

    ops: list[dict[str, Any]] = [{"op": "predict", "frame": test, "proba": proba}]
    sample = test.sample(n=min(IMPORTANCE_ROWS, len(test)), random_state=seed % (2**32))
    ops.append({"op": "permute", "frame": sample, "columns": features,
                "repeats": IMPORTANCE_REPEATS, "seed": seed,
                "proba": metric in metrics.PROBA_METRICS})
    refit_rows = len(dev) + len(test)
    refits = [k for k in REFITS if all(part in splits for part in REFITS[k])]
    if refit_rows <= MAX_REFIT_ROWS:
        for k in refits:
            fit = pd.concat([splits[part] for part in REFITS[k]], ignore_index=True)
            ops.append({"op": "refit", "fit_frame": fit.rename(columns={target: LABEL}),
                        "label": LABEL, "frame": test, "proba": proba})
    cv_frame = dev if len(dev) <= MAX_CV_ROWS else dev.sample(n=MAX_CV_ROWS,
                                                                random_state=seed % (2**32))
    cv_frame = cv_frame.reset_index(drop=True)
    folds = _folds(cv_frame[target], regression, seed)
    ops.append({"op": "cv", "fit_frame": cv_frame.rename(columns={target: LABEL}),
                "label": LABEL, "folds": folds, "proba": proba})
    limit = min(params.score_timeout_s, ctx.timeout_s)
    out = run_model(ctx, params.model, features, dtypes, ops, timeout_s=max(5.0, limit - 5),
                    deadline_s=max(1.0, limit * 0.4))
    results = out["results"]
    got = results[0]
    if got.get("rows") != len(test) or len(got.get("predictions") or []) != len(test):
        raise ValueError(f"the model returned {len(got.get('predictions') or [])} predictions "
                         f"for {len(test)} rows")
    classes = out.get("classes")
    saved = _Outputs(got.get("predictions"), got.get("probabilities"), classes)
    truth = test[target].tolist()
    measured = saved.score(metric, truth, positive)
    scale = float(np.std(dev[target].astype(float))) if regression else 1.0
    base, strategy, base_all, base_alt = _baseline(train, test, features, target, metric,
                                                   problem, positive)
    result: dict[str, Any] = {
        "metric": metric, "score": measured, "baseline": base, "baseline_strategy": strategy,
        "n_test": int(len(test)), "n_train": int(len(train)),
        "n_valid": int(len(splits["valid"])) if "valid" in splits else 0,
        "higher_is_better": metrics.higher_is_better(metric), "model_type": out.get("model_type"),
        "estimator": out.get("estimator"),
        "problem_type": problem, "seed": seed, "scale": scale,
        "test_metrics": saved.score_all(problem, truth, positive),
        "baseline_metrics": base_all,
        "baseline_alternatives": base_alt,  # median / the other dummy: what a card may cite
        "groups": _groups(spec, test, saved, problem, positive),
    }
    result["importance"] = _guarded(_importance, results[1], sample, saved, metric, target,
                                    positive)
    if refit_rows <= MAX_REFIT_ROWS:
        result["refit"] = _guarded(_refits, dict(zip(refits, results[2:2 + len(refits)],
                                                     strict=True)),
                                   saved, truth, metric, positive, scale, seed)
    else:
        result["refit"] = {"skipped": f"train+valid+test hold {refit_rows} rows, more than the "
                                      f"gate refits ({MAX_REFIT_ROWS})"}
    result["cv"] = _guarded(_cv, results[-1], cv_frame[target].tolist(), folds, metric,
                            positive, seed, len(dev))
    return result


def _guarded(fn: Any, *args: Any) -> dict[str, Any]:
    """One part of the measurement; a part that cannot be scored says why, the others stand."""
    try:
        out: dict[str, Any] = fn(*args)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        return {"error": f"{type(e).__name__}: {e}"[:400]}
    return out


class _Outputs:
    """A model's raw outputs on some rows (predictions, class probabilities, class names)."""

    def __init__(self, predictions: Any, probabilities: Any, classes: Any) -> None:
        self.predictions = predictions
        self.probabilities = probabilities
        self.classes = classes

    def take(self, idx: Any) -> _Outputs:
        import numpy as np

        idx = np.asarray(idx)
        preds = np.asarray(self.predictions, dtype=object)[idx].tolist()
        proba = (np.asarray(self.probabilities, dtype=float)[idx].tolist()
                 if self.probabilities is not None else None)
        return _Outputs(preds, proba, self.classes)

    def score(self, metric: str, truth: Any, positive: Any) -> float:
        return metrics.score(metric, truth, self.predictions, self.probabilities,
                             self.classes, positive)

    def score_all(self, problem: str, truth: Any, positive: Any) -> dict[str, float | None]:
        return metrics.score_all(problem, truth, self.predictions, self.probabilities,
                                 self.classes, positive)

    def matrix(self, regression: bool, scale: float, order: list[str] | None = None) -> Any:
        """Comparable numbers: probabilities (columns in `order`), else predictions."""
        import numpy as np

        if regression:
            return np.asarray(self.predictions, dtype=float) / (scale or 1.0)
        if self.probabilities is not None and self.classes is not None:
            names = [metrics.label(c) for c in self.classes]
            proba = np.asarray(self.probabilities, dtype=float)
            if order is None:
                return proba
            cols = [names.index(c) if c in names else None for c in order]
            return np.column_stack([proba[:, i] if i is not None else np.zeros(len(proba))
                                    for i in cols])
        labels = [metrics.label(p) for p in self.predictions]
        return np.asarray(labels, dtype=object)


def _folds(y: Any, regression: bool, seed: int) -> list[list[int]]:
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold

    labels = y.astype(float) if regression else y.map(metrics.label)
    stratify = not regression and labels.value_counts().min() >= CV_FOLDS
    out = []
    for r in range(CV_REPEATS):
        rs = (seed + r) % (2**32)
        splitter: Any = (StratifiedKFold(CV_FOLDS, shuffle=True, random_state=rs) if stratify
                         else KFold(CV_FOLDS, shuffle=True, random_state=rs))
        ids = np.zeros(len(labels), dtype=int)
        for j, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            ids[held] = j
        out.append(ids.tolist())
    return out


def _baseline(train: Any, test: Any, features: list[str], target: str, metric: str,
              problem: str, positive: Any) -> tuple[float, str, dict[str, Any], dict[str, Any]]:
    """The gate's baseline (its score, how it predicts, every metric) and the metrics of the
    other usual dummy (median for a regression, the other class rule), which a card may cite."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    proba = metric in metrics.PROBA_METRICS
    if problem == "regression":
        model: Any = DummyRegressor(strategy="mean")
        other: Any = DummyRegressor(strategy="median")
        strategy = "mean of the train split's target"
    elif proba:
        model, other = DummyClassifier(strategy="prior"), DummyClassifier(strategy="most_frequent")
        strategy = "class prior of the train split"
    else:
        model, other = DummyClassifier(strategy="most_frequent"), DummyClassifier(strategy="prior")
        strategy = "most frequent class of the train split"
    y = train[target] if problem == "regression" else train[target].map(metrics.label)
    truth = test[target].tolist()
    scored = []
    for dummy in (model, other):
        dummy.fit(train[features], y)
        classes = [str(c) for c in getattr(dummy, "classes_", [])] or None
        scored.append(_Outputs(dummy.predict(test[features]).tolist(),
                               dummy.predict_proba(test[features]).tolist() if classes else None,
                               classes))
    return (scored[0].score(metric, truth, positive), strategy,
            scored[0].score_all(problem, truth, positive),
            scored[1].score_all(problem, truth, positive))


def _groups(spec: dict[str, Any], test: Any, saved: _Outputs, problem: str,
            positive: Any) -> dict[str, Any]:
    """{column: {level: {"rows", "share", "metrics"}}} for the spec's group columns."""
    target = spec["target"]
    out: dict[str, Any] = {}
    for col in spec.get("group_columns") or []:
        if col not in test.columns:
            out[col] = {"error": f"{col} is not a column of the test split"}
            continue
        levels = test[col].map(lambda v: "missing" if v != v or v is None else metrics.label(v))
        table: dict[str, Any] = {}
        for level in sorted(set(levels)):
            idx = [i for i, v in enumerate(levels) if v == level]
            part = saved.take(idx)
            truth = test[target].iloc[idx].tolist()
            table[level] = {"rows": len(idx), "share": round(len(idx) / len(test), 6),
                            "metrics": part.score_all(problem, truth, positive)}
        out[col] = table
    return out


def _importance(got: dict[str, Any], sample: Any, saved: _Outputs, metric: str, target: str,
                positive: Any) -> dict[str, Any]:
    """Drop in the primary metric (higher = more important) when one column is shuffled."""
    if "error" in got:
        return {"error": got["error"]}
    positions = [int(i) for i in sample.index]
    base_out = saved.take(positions)
    truth = sample[target].tolist()
    base = base_out.score(metric, truth, positive)
    features: dict[str, list[float]] = {}
    for col, runs in got["outputs"].items():
        drops = []
        for run in runs:
            shuffled = (_Outputs(base_out.predictions, run, saved.classes) if got.get("proba")
                        else _Outputs(run, None, saved.classes))
            drops.append(goodness(metric, base) - goodness(metric, shuffled.score(
                metric, truth, positive)))
        features[col] = [statistics.fmean(drops), statistics.pstdev(drops)]
    return {"rows": len(sample), "repeats": IMPORTANCE_REPEATS, "base": base,
            "features": features}


def _refits(got: dict[str, dict[str, Any]], saved: _Outputs, truth: list[Any], metric: str,
            positive: Any, scale: float, seed: int) -> dict[str, Any]:
    import numpy as np

    regression = metric in metrics.REGRESSION
    order = [metrics.label(c) for c in saved.classes] if saved.classes is not None else None
    mine = saved.matrix(regression, scale, order)
    out: dict[str, Any] = {}
    for name, res in got.items():
        if "error" in res:
            return {"error": res["error"]}
        refit = _Outputs(res.get("predictions"), res.get("probabilities"), res.get("classes"))
        theirs = refit.matrix(regression, scale, order)
        if mine.dtype == object or theirs.dtype == object:
            m_lab = [metrics.label(p) for p in saved.predictions]
            t_lab = [metrics.label(p) for p in refit.predictions]
            distance = float(np.mean([a != b for a, b in zip(m_lab, t_lab, strict=True)]))
        else:
            distance = float(np.mean(np.abs(mine - theirs)))
        out[name] = {"score": refit.score(metric, truth, positive), "distance": distance,
                     "seconds": res.get("seconds"), "_outputs": refit}
    if "train_valid" in out:
        out["paired_se"] = _paired_se(saved, out["train_valid"]["_outputs"], truth, metric,
                                      positive, seed)
    for v in out.values():
        if isinstance(v, dict):
            v.pop("_outputs", None)
    return out


def _paired_se(a: _Outputs, b: _Outputs, truth: list[Any], metric: str, positive: Any,
               seed: int) -> float:
    """Bootstrap standard error of score(a) - score(b) over the test rows (paired)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(truth)
    t = np.asarray(truth, dtype=object)
    diffs = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, n, n)
        try:
            diffs.append(a.take(idx).score(metric, t[idx].tolist(), positive)
                         - b.take(idx).score(metric, t[idx].tolist(), positive))
        except (ValueError, IndexError, ZeroDivisionError):
            continue
    diffs = [d for d in diffs if math.isfinite(d)]
    return float(np.std(diffs)) if len(diffs) > 10 else 0.0


def _cv(got: dict[str, Any], truth: list[Any], folds: list[list[int]], metric: str,
        positive: Any, seed: int, dev_rows: int) -> dict[str, Any]:
    import numpy as np

    if "error" in got:
        return {"error": got["error"]}
    t = np.asarray(truth, dtype=object)
    scores: list[list[float]] = []
    for ids, fold_outputs in zip(folds, got["repeats"], strict=False):
        ids_a = np.asarray(ids)
        one = []
        for j, res in enumerate(fold_outputs):
            held = np.flatnonzero(ids_a == j)
            outs = _Outputs(res.get("predictions"), res.get("probabilities"), res.get("classes"))
            one.append(outs.score(metric, t[held].tolist(), positive))
        scores.append(one)
    if not scores:
        return {"error": "no cross-validation repetition finished"}
    stds = [statistics.pstdev(s) for s in scores]
    var1 = [statistics.variance(s) for s in scores if len(s) > 1]
    flat = [x for s in scores for x in s]
    return {"folds": CV_FOLDS, "repeats": len(scores), "rows": len(truth),
            "capped": len(truth) < dev_rows, "seed": seed, "scores": scores,
            "mean": statistics.fmean(flat), "std": statistics.fmean(stds),
            "sd_fold": math.sqrt(statistics.fmean(var1)) if var1 else 0.0,
            "noise_sd": _fold_noise(got["repeats"][0], folds[0], t, metric, positive, seed),
            "fold_rows": len(truth) / CV_FOLDS, "seconds": got.get("seconds")}


def _fold_noise(fold_outputs: list[dict[str, Any]], ids: list[int], truth: Any, metric: str,
                positive: Any, seed: int) -> float:
    """The spread a fold score has from the fold's finite rows alone: the std of the score over
    NOISE_RESAMPLES bootstrap resamples of each fold's rows (the fold's predictions fixed),
    root-mean-squared over the folds of the first repetition. A model whose fold scores vary
    no more than this is as stable as the data lets anyone tell."""
    import numpy as np

    rng = np.random.default_rng(seed + 7)
    ids_a = np.asarray(ids)
    variances = []
    for j, res in enumerate(fold_outputs):
        held = np.flatnonzero(ids_a == j)
        outs = _Outputs(res.get("predictions"), res.get("probabilities"), res.get("classes"))
        got = []
        for _ in range(NOISE_RESAMPLES):
            pick = rng.integers(0, len(held), len(held))
            try:
                got.append(outs.take(pick).score(metric, truth[held[pick]].tolist(), positive))
            except ValueError:  # a resample with one class
                continue
        if len(got) > 1:
            variances.append(statistics.variance(got))
    return math.sqrt(statistics.fmean(variances)) if variances else 0.0


__all__ = ["ScoreInputs", "goodness", "measure", "score_tolerance", "unit"]
