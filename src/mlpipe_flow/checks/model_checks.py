"""Phase-3 checks that measure: the gate re-scores the saved model on the test split itself
(in a subprocess: the model is the agent's output and unpickling it runs its code), computes
its own dummy baseline, compares the reported score, checks CV stability, counts the runs in
the MLflow store, and reads the model card's sections.

Baseline margin (see README "Measured gates"), m = model, b = baseline on the test split:
- higher-is-better metrics bounded by 1 (roc_auc, f1_macro, accuracy, r2, ...): the share of
  the headroom above the baseline the model closes, (m - b) / (1 - b); for roc_auc with the
  prior baseline (b = 0.5) that is the Gini coefficient 2m - 1;
- lower-is-better errors (rmse, mae, mape, log_loss): the relative error reduction (b - m) / b.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import statistics
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks import metrics
from mlpipe_flow.checks.artifacts import ProbeError, feature_types, run_model
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.metrics import PROBA_METRICS
from mlpipe_flow.models import CheckResult
from mlpipe_flow.spec import LOWER_IS_BETTER, margin, margin_formula
from mlpipe_flow.state import file_sha256


class ScoreInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "artifacts/model.joblib"
    train: str = "data/splits/train.csv"
    test: str = "data/splits/test.csv"
    spec: str = "ml-spec.yaml"
    score_timeout_s: float = Field(default=300, gt=0)


def measure(ctx: CheckContext, params: ScoreInputs) -> dict[str, Any]:
    """The gate's own scores of the saved model and of its own dummy baseline on the test
    split (kept in the run's records, keyed by the content of model, splits and spec)."""
    paths = [ctx.path(r) for r in (params.spec, params.model, params.train, params.test)]
    for rel, p in zip((params.spec, params.model, params.train, params.test), paths, strict=True):
        if not p.is_file():
            return {"error": f"{rel} does not exist"}
    key = tuple(file_sha256(p) for p in paths)
    records = ctx.records()
    if records is not None and not records.exists():
        return {"error": records.missing(), "status": "error"}
    for rel, digest in ((params.train, key[2]), (params.test, key[3])):
        recorded = records.recorded_hash(rel) if records else None
        if recorded is not None and recorded != digest:
            return {"error": f"{rel} changed since the phase that made it passed (recorded "
                             f"sha256 {recorded[:12]}, now {digest[:12]}): a score on it is not "
                             "a hold-out score; run that phase again"}
    cache_name = "score-" + hashlib.sha256("".join(key).encode()).hexdigest()[:24]
    cached = records.cache_get(cache_name) if records else None
    if cached is not None:
        return cached
    try:
        out = _score(ctx, params, paths)
    except (ProbeError, ValueError, KeyError) as e:
        return {"error": str(e)}
    if records is not None:
        records.cache_put(cache_name, out)
    return out


def _score(ctx: CheckContext, params: ScoreInputs, paths: list[Path]) -> dict[str, Any]:
    import pandas as pd
    import yaml
    from sklearn.dummy import DummyClassifier, DummyRegressor

    spec = yaml.safe_load(paths[0].read_text(encoding="utf-8"))
    metric, target = spec["primary_metric"], spec["target"]
    features = list(spec["feature_columns"])
    train = pd.read_csv(paths[2], low_memory=False)
    test = pd.read_csv(paths[3], low_memory=False)
    missing = [c for c in [*features, target] if c not in test.columns or c not in train.columns]
    if missing:
        raise ValueError(f"the splits lack columns {missing[:5]}")
    positive = spec.get("positive_class")
    proba = metric in PROBA_METRICS
    out = run_model(ctx, params.model, features, feature_types(train, features),
                    [{"op": "predict", "frame": test, "proba": proba}],
                    timeout_s=min(params.score_timeout_s, ctx.timeout_s))
    got = out["results"][0]
    if got.get("rows") != len(test) or len(got.get("predictions") or []) != len(test):
        raise ValueError(f"the model returned {len(got.get('predictions') or [])} predictions "
                         f"for {len(test)} rows")
    measured = metrics.score(metric, test[target].tolist(), got["predictions"],
                             got.get("probabilities"), out.get("classes"), positive)
    regression = spec["problem_type"] == "regression"
    if regression:
        baseline: Any = DummyRegressor(strategy="mean")
        strategy = "mean of the train split's target"
    elif proba:
        baseline = DummyClassifier(strategy="prior")
        strategy = "class prior of the train split"
    else:
        baseline = DummyClassifier(strategy="most_frequent")
        strategy = "most frequent class of the train split"
    y_train = train[target] if regression else train[target].map(metrics.label)
    baseline.fit(train[features], y_train)
    base = metrics.score(metric, test[target].tolist(), baseline.predict(test[features]),
                         baseline.predict_proba(test[features]) if proba else None,
                         [str(c) for c in getattr(baseline, "classes_", [])] or None, positive)
    return {"metric": metric, "score": measured, "baseline": base, "baseline_strategy": strategy,
            "n_test": int(len(test)), "n_train": int(len(train)),
            "higher_is_better": metric not in LOWER_IS_BETTER, "model_type": out.get("model_type")}


class BeatsBaselineParams(ScoreInputs):
    min_margin: float = Field(default=0.10, description="required margin over the baseline")


def model_beats_baseline(ctx: CheckContext, params: BeatsBaselineParams) -> CheckResult:
    s = measure(ctx, params)
    if "error" in s:
        return result(s.get("status", "failed"),
                      f"cannot score {params.model} on {params.test}: {s['error']}")
    metric, m, b = s["metric"], s["score"], s["baseline"]
    got = margin(metric, m, b)
    evidence = {**s, "margin": round(got, 6), "formula": margin_formula(metric),
                "min_margin": params.min_margin}
    text = (f"measured test {metric} {m:.4f} vs the gate's baseline ({s['baseline_strategy']}) "
            f"{b:.4f}: margin {margin_formula(metric)} = {got:.1%}")
    if got <= params.min_margin:
        return result("failed", f"{text}, expected > {params.min_margin:.0%}", **evidence)
    return result("passed", text, **evidence)


class ReportedScoreParams(ScoreInputs):
    reports: list[str] = Field(default_factory=lambda: ["artifacts/model_meta.json",
                                                       "experiments/results.json"])
    key: str = "test_score"
    tolerance: float = Field(default=0.01, ge=0,
                             description="allowed |reported - measured| / max(1, |measured|)")


def reported_score_matches(ctx: CheckContext, params: ReportedScoreParams) -> CheckResult:
    reported: dict[str, float] = {}
    for rel in params.reports:
        try:
            data = json.loads(ctx.path(rel).read_text(encoding="utf-8"))
            reported[rel] = float(data[params.key])
        except (OSError, ValueError, KeyError, TypeError):
            return result("failed", f"{rel} does not report a numeric {params.key!r}")
    s = measure(ctx, params)
    if "error" in s:
        return result(s.get("status", "failed"),
                      f"cannot score {params.model} on {params.test}: {s['error']}")
    m = s["score"]
    allowed = params.tolerance * max(1.0, abs(m))
    off = {rel: round(v - m, 6) for rel, v in reported.items() if abs(v - m) > allowed}
    evidence = {"measured": m, "reported": reported, "tolerance": allowed, "metric": s["metric"]}
    if off:
        rel = next(iter(off))
        return result("failed", f"{rel} reports {params.key} {reported[rel]:.4f} but the gate "
                      f"measured {s['metric']} {m:.4f} on {params.test} (off by {off[rel]:+.4f}, "
                      f"tolerance {allowed:.4f})", **evidence)
    return result("passed", f"reported {params.key} matches the measured {s['metric']} "
                  f"{m:.4f} within {allowed:.4f}", **evidence)


class CvStabilityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    results: str = "experiments/results.json"
    train: str = "data/splits/train.csv"
    max_std: float = Field(default=0.05, gt=0)
    min_folds: int = Field(default=3, ge=2)
    min_models: int = Field(default=4, ge=1, description="baseline + model families")


def cv_stability(ctx: CheckContext, params: CvStabilityParams) -> CheckResult:
    try:
        res = json.loads(ctx.path(params.results).read_text(encoding="utf-8"))
        models: dict[str, Any] = res["models"]
        best = res["best_model"]
        metric = res["primary_metric"]
        entry = models[best]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return result("failed", f"{params.results} lacks models/best_model/primary_metric: {e}")
    if len(models) < params.min_models:
        return result("failed", f"{params.results} holds {len(models)} model(s), expected at "
                      f"least {params.min_models} (a baseline and the model families)",
                      models=list(models))
    scores = entry.get("cv_scores")
    if not isinstance(scores, list) or len(scores) < params.min_folds:
        return result("failed", f"{best}: cv_scores must list at least {params.min_folds} fold "
                      f"scores, found {scores!r}")
    scores = [float(x) for x in scores]
    mean, std = statistics.fmean(scores), statistics.pstdev(scores)
    problems = []
    if abs(mean - float(entry.get("cv_mean", float("nan")))) > 1e-3 * max(1.0, abs(mean)):
        problems.append(f"cv_mean {entry.get('cv_mean')} is not the mean of its fold scores "
                        f"({mean:.4f})")
    if abs(std - float(entry.get("cv_std", float("nan")))) > 1e-3 * max(1.0, abs(std)) + 1e-4:
        problems.append(f"cv_std {entry.get('cv_std')} is not the std of its fold scores "
                        f"({std:.4f})")
    bounded = metric not in LOWER_IS_BETTER
    if bounded and metric != "r2" and not all(0.0 <= x <= 1.0 for x in scores):
        problems.append(f"fold scores outside [0, 1] for {metric}: {scores}")
    if not bounded and not all(x >= 0 for x in scores):
        problems.append(f"negative fold scores for the error metric {metric}: {scores}")
    if problems:
        return result("failed", f"{params.results}: {'; '.join(problems)}", cv_scores=scores)
    scale, normalised = 1.0, std
    if not bounded:  # errors are in target units: divide by the target's std (scale-free)
        target_std = _target_std(ctx, params.train)
        if not target_std:
            return result("failed", f"cannot measure the target's spread in {params.train}")
        scale, normalised = target_std, std / target_std
    evidence = {"model": best, "metric": metric, "cv_scores": scores, "cv_std": round(std, 6),
                "scale": round(scale, 6), "normalised_std": round(normalised, 6),
                "max_std": params.max_std}
    what = (f"{best}: CV std of {metric} {std:.4f}"
            + ("" if bounded else f" / target std {scale:.3f} = {normalised:.4f}"))
    if normalised >= params.max_std:
        return result("failed", f"measured {what} over {len(scores)} folds, expected < "
                      f"{params.max_std}", **evidence)
    return result("passed", f"{what} over {len(scores)} folds (< {params.max_std})", **evidence)


def _target_std(ctx: CheckContext, rel: str) -> float | None:
    import csv

    spec = ctx.spec() or {}
    target = spec.get("target")
    p = ctx.path(rel)
    if not target or not p.is_file():
        return None
    values = []
    with p.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                values.append(float(row[target]))
            except (KeyError, TypeError, ValueError):
                continue
    return statistics.pstdev(values) if len(values) > 1 else None


class MlflowRunsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    db: str = "mlflow.db"
    results: str = "experiments/results.json"
    min_runs: int = Field(default=4, ge=1)


def mlflow_runs(ctx: CheckContext, params: MlflowRunsParams) -> CheckResult:
    p = ctx.path(params.db)
    if not p.is_file():
        return result("failed", f"{params.db} does not exist (expected an MLflow SQLite store, "
                      "tracking URI sqlite:///mlflow.db)")
    expected = params.min_runs
    metric = None
    try:
        res = json.loads(ctx.path(params.results).read_text(encoding="utf-8"))
        expected = max(expected, len(res.get("models", {})))
        metric = res.get("primary_metric")
    except (OSError, ValueError, AttributeError):
        pass
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=10)
        try:
            runs = con.execute("SELECT count(*) FROM runs WHERE lifecycle_stage = 'active'"
                               ).fetchone()[0]
            with_metric = con.execute(
                "SELECT count(DISTINCT run_uuid) FROM metrics WHERE key LIKE ?",
                (f"%{metric or ''}%",)).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as e:
        return result("failed", f"{params.db} is not an MLflow store: {e}")
    evidence = {"runs": runs, "runs_with_metric": with_metric, "expected": expected,
                "metric": metric}
    if runs < expected or with_metric < expected:
        return result("failed", f"measured {runs} active run(s) in {params.db}, {with_metric} "
                      f"with a {metric or 'any'} metric; expected at least {expected}", **evidence)
    return result("passed", f"{runs} runs in {params.db}, {with_metric} logging "
                  f"{metric or 'metrics'}", **evidence)


class ModelCardParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    glob: str = "model_cards/*.md"
    sections: list[str] = Field(default_factory=lambda: ["Intended use", "Data", "Metrics",
                                                         "Limitations", "Fairness"])
    min_words: int = Field(default=5, ge=0, description="words of text each section needs")


HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def model_card_sections(ctx: CheckContext, params: ModelCardParams) -> CheckResult:
    cards = sorted(ctx.workspace.glob(params.glob))
    if not cards:
        return result("failed", f"no model card matches {params.glob}")
    best: dict[str, Any] = {}
    for card in cards:
        bodies: dict[str, list[str]] = {}
        current = None
        for line in card.read_text(encoding="utf-8", errors="replace").splitlines():
            m = HEADING.match(line)
            if m:
                current = m.group(1).strip().lower()
                bodies.setdefault(current, [])
            elif current is not None:
                bodies[current].append(line)
        found: list[str] = []
        thin: list[str] = []
        missing: list[str] = []
        for want in params.sections:
            heads = [h for h in bodies if want.lower() in h]
            if not heads:
                missing.append(want)
                continue
            words = sum(len(re.findall(r"\w+", " ".join(bodies[h]))) for h in heads)
            (found if words >= params.min_words else thin).append(want)
        rel = card.relative_to(ctx.workspace).as_posix()
        if not missing and not thin:
            return result("passed", f"{rel} has all {len(params.sections)} sections",
                          card=rel, sections=found)
        if not best or len(found) > len(best["found"]):
            best = {"card": rel, "found": found, "missing": missing, "thin": thin}
    msg = f"{best['card']}: missing section(s) {best['missing']}" if best["missing"] else ""
    if best["thin"]:
        msg += ("; " if msg else f"{best['card']}: ") + (
            f"section(s) with fewer than {params.min_words} words: {best['thin']}")
    return result("failed", f"{msg} (expected: {', '.join(params.sections)})", **best)
