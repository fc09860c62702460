"""Phase-3 checks that measure: every verdict comes from the gate's own measurement of the saved
model (model_measure.py: re-scored on the test split, its own baseline, its own repeated
cross-validation of a clone, clones refitted with and without the test split, permutation
importance), never from what the agent reports. What the agent reports is compared with it.

Baseline margin (see docs/gates.md, "The baseline margin"), m = model, b = baseline on the test split:
- higher-is-better metrics bounded by 1 (roc_auc, f1_macro, accuracy, r2, ...): the share of
  the headroom above the baseline the model closes, (m - b) / (1 - b); for roc_auc with the
  prior baseline (b = 0.5) that is the Gini coefficient 2m - 1;
- lower-is-better errors (rmse, mae, mape, log_loss): the relative error reduction (b - m) / b.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any

from pydantic import Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.model_measure import (
    IMPORTANCE_REPEATS,
    IMPORTANCE_ROWS,
    NOISE_RESAMPLES,
    ScoreInputs,
    baseline_rule,
    cv_rule,
    goodness,
    margin_rule,
    measure,
    score_tolerance,
    scored_rule,
    tolerance_rule,
    unit,
)
from mlpipe_flow.models import CheckResult
from mlpipe_flow.spec import LOWER_IS_BETTER, margin, margin_formula

#: slack for honest differences between two cross-validations of one model that the fold
#: noise does not cover (another CV scheme, train instead of train+valid), in metric points
CV_MEAN_SLACK = 0.02
#: two-sided p-value below which reported CV numbers are called fabricated
CV_P_VALUE = 0.001


def _cannot(params: ScoreInputs, s: dict[str, Any]) -> CheckResult:
    return result(s.get("status", "failed"),
                  f"cannot score {params.model} on {params.test}: {s['error']}")


class BeatsBaselineParams(ScoreInputs):
    min_margin: float = Field(default=0.10, description="required margin over the baseline")

    def describe(self) -> str:
        return (f"{scored_rule(self)} and compares it with {baseline_rule()}; "
                f"{margin_rule()}; it must be above {self.min_margin:.0%}.")


def model_beats_baseline(ctx: CheckContext, params: BeatsBaselineParams) -> CheckResult:
    s = measure(ctx, params)
    if "error" in s:
        return _cannot(params, s)
    metric, m, b = s["metric"], s["score"], s["baseline"]
    got = margin(metric, m, b)
    evidence = {k: s[k] for k in ("metric", "score", "baseline", "baseline_strategy", "n_test",
                                  "n_train", "higher_is_better", "model_type")}
    evidence.update(margin=round(got, 6), formula=margin_formula(metric),
                    min_margin=params.min_margin)
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

    def describe(self) -> str:
        files = " and ".join(f"`{r}`" for r in self.reports)
        return (f"{scored_rule(self)}; the `{self.key}` in {files} must equal that measurement "
                f"within {tolerance_rule(self.tolerance)}.")


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
        return _cannot(params, s)
    m = s["score"]
    allowed = score_tolerance(m, params.tolerance)
    off = {rel: round(v - m, 6) for rel, v in reported.items() if not abs(v - m) <= allowed}
    evidence = {"measured": m, "reported": reported, "tolerance": allowed, "metric": s["metric"]}
    if off:
        rel = next(iter(off))
        return result("failed", f"{rel} reports {params.key} {reported[rel]:.4f} but the gate "
                      f"measured {s['metric']} {m:.4f} on {params.test} (off by {off[rel]:+.4f}, "
                      f"tolerance {allowed:.4f})", **evidence)
    return result("passed", f"reported {params.key} matches the measured {s['metric']} "
                  f"{m:.4f} within {allowed:.4f}", **evidence)


# -- trained on the test split? ------------------------------------------------------------
class RefitParams(ScoreInputs):
    tolerance: float = Field(default=0.01, ge=0, description="score tolerance, as reported-score")
    max_se: float = Field(default=3.0, gt=0, description="standard errors above the CV mean")
    match_ratio: float = Field(default=0.5, gt=0, lt=1, description=(
        "a saved model this many times closer to the refit that saw the test split than to "
        "the honest refits was trained on it"))
    learning_slack: float = Field(default=0.005, ge=0, description=(
        "when the gate's CV ran on a sample, metric points (x the target's std for rmse/mae) "
        "the saved model may score above the CV mean per doubling of the rows it learnt from "
        "over the rows a CV fold learnt from: the learning curve, not leakage"))

    def describe(self) -> str:
        return ("the saved model must be refittable (`clone(model).fit(X, y)` on the raw feature "
                "columns trains it as you did) and must not have learnt from the test split. "
                "The gate fits clones on train+valid, on train and on train+valid+test and "
                f"scores each on `{self.test}`. It fails when the saved model's test outputs are "
                f"closer to the clone that saw the test split than {self.match_ratio:g} times "
                "their distance to the nearest honest clone; when the saved model scores above "
                f"the train+valid clone by more than {tolerance_rule(self.tolerance)} (or 3 "
                "bootstrap standard errors of the paired difference, if larger); or when its test "
                f"score lies more than {self.max_se:g} standard errors above the mean of "
                f"{cv_rule()}; when that CV ran on a sample, the saved model learnt from more "
                f"rows than its folds did, and may score {self.learning_slack:g} more (x the "
                "target's std for rmse/mae) per doubling of those rows (log2 of train+valid "
                "over a fold's training rows).")


def model_refit(ctx: CheckContext, params: RefitParams) -> CheckResult:
    s = measure(ctx, params)
    if "error" in s:
        return _cannot(params, s)
    metric, m = s["metric"], s["score"]
    refit, cv = s.get("refit") or {}, s.get("cv") or {}
    for part, what in ((refit, "refit a clone of"), (cv, "cross-validate a clone of")):
        if "error" in part:
            return result("failed", f"the gate could not {what} {params.model} "
                          f"(sklearn.base.clone, then fit on the splits): {part['error']}; the "
                          "saved model must be a scikit-learn estimator the gate can refit")
    evidence: dict[str, Any] = {"metric": metric, "saved_test_score": m, "seed": s["seed"]}
    problems = []
    if "skipped" not in refit:
        tv, tvt, tr = refit["train_valid"], refit["train_valid_test"], refit.get("train")
        honest = [d for d in (tv["distance"], tr["distance"] if tr else None) if d is not None]
        evidence.update(refit_scores={k: v["score"] for k, v in refit.items()
                                      if isinstance(v, dict)},
                        distances={k: v["distance"] for k, v in refit.items()
                                   if isinstance(v, dict)},
                        paired_se=refit.get("paired_se"))
        nearest = min(honest)
        if nearest > 1e-6 and tvt["distance"] <= params.match_ratio * nearest:
            problems.append(
                f"{params.model} matches a clone refitted on train+valid+test (mean |difference| "
                f"of its outputs on the test split {tvt['distance']:.2g}) far more closely than "
                f"one refitted on train+valid ({tv['distance']:.2g})"
                + (f" or on train ({tr['distance']:.2g})" if tr else "")
                + ": it was trained on the test split")
        tol = max(score_tolerance(tv["score"], params.tolerance),
                  3 * float(refit.get("paired_se") or 0.0))
        gap = goodness(metric, m) - goodness(metric, tv["score"])
        evidence.update(refit_gap=gap, refit_tolerance=tol)
        if gap > tol:
            problems.append(f"it scores {metric} {m:.4f} on the test split, a clone refitted on "
                            f"train+valid {tv['score']:.4f} ({gap:+.4f}, tolerance {tol:.4f}): "
                            "it learnt from rows the refit does not see (the test split)")
    else:
        evidence["refit"] = refit["skipped"]
    if "mean" in cv:
        # a test score is one more 'fold' of about n_test rows: its spread around the CV mean
        # is the fold spread scaled to the test split's size, plus the CV mean's own error
        se = cv["sd_fold"] * math.sqrt(cv["fold_rows"] / max(1, s["n_test"])
                                       + 1 / (cv["repeats"] * cv["folds"]))
        se = max(se, 1e-9)
        # a CV on a sample learnt from fewer rows than the saved model: the learning curve
        # lifts the saved model's score by about learning_slack per doubling of the rows
        n_dev = s["n_train"] + s.get("n_valid", 0)
        fold_fit = cv["rows"] * (cv["folds"] - 1) / cv["folds"]
        doublings = math.log2(n_dev / fold_fit) if cv.get("capped") and fold_fit > 0 else 0.0
        allowance = params.learning_slack * max(0.0, doublings) * unit(metric, s["scale"])
        z = (goodness(metric, m) - goodness(metric, cv["mean"]) - allowance) / se
        evidence.update(cv_mean=cv["mean"], cv_sd_fold=cv["sd_fold"], cv_repeats=cv["repeats"],
                        z=round(z, 3), max_se=params.max_se)
        if allowance:
            evidence.update(cv_rows=cv["rows"], learning_allowance=round(allowance, 6))
        if z > params.max_se:
            problems.append(f"its test {metric} {m:.4f} is {z:.1f} standard errors above the "
                            f"gate's cross-validated mean {cv['mean']:.4f}"
                            + (f" + {allowance:.4f} for the learning curve" if allowance else "")
                            + f" (fold sd {cv['sd_fold']:.4f}, expected at most "
                            f"{params.max_se:g}): "
                            "a score this far above cross-validation was trained on the test "
                            "split")
    if problems:
        return result("failed", "; ".join(problems), **evidence)
    text = f"test {metric} {m:.4f}"
    if "skipped" not in refit:
        text += (f"; clone refitted on train+valid {refit['train_valid']['score']:.4f}, "
                 f"output distance to it {refit['train_valid']['distance']:.2g} vs "
                 f"{refit['train_valid_test']['distance']:.2g} to the refit that saw the test "
                 "split")
    if "z" in evidence:
        text += f"; {evidence['z']:+.1f} SE from the gate's CV mean {cv['mean']:.4f}"
    return result("passed", text, **evidence)


# -- cross-validation ---------------------------------------------------------------------
class CvStabilityParams(ScoreInputs):
    results: str = "experiments/results.json"
    max_std: float = Field(default=0.05, gt=0)
    noise_k: float = Field(default=1.6, gt=0, description="x the fold scores' sampling noise")
    min_folds: int = Field(default=3, ge=2)
    min_models: int = Field(default=4, ge=1, description="baseline + model families")

    def describe(self) -> str:
        return (f"`{self.results}` lists at least {self.min_models} models (the dummy baseline "
                f"and the model families), the best with at least {self.min_folds} fold scores "
                "`cv_scores` whose mean and population std (`numpy.std`) are its `cv_mean` and "
                f"`cv_std`. From {cv_rule()}: the std of its fold scores must be below "
                f"{self.max_std:g}, or below {self.noise_k:g} x their sampling noise when "
                "that is larger (small data: the std of a fold's score over "
                f"{NOISE_RESAMPLES} bootstrap resamples of its rows, the predictions fixed, "
                "root-mean-squared over the folds; a model varying no more than that is as "
                "stable as the data can show), both for rmse and mae divided by the standard "
                "deviation of the target on train+valid, so unit-free; your reported mean must "
                "lie within "
                f"3.29 standard errors + {CV_MEAN_SLACK:g} (x the target's std for rmse/mae) of "
                "the gate's mean, and your reported spread must be one cross-validation can give "
                f"(an F-test at p = {CV_P_VALUE:g}: fold scores made up to look stable fail) on "
                "the rows it ran on: all of train+valid, or the `cv_rows` the best model's entry "
                "states when model selection ran on a sample (counted as at least the gate's own "
                "CV sample).")


def reported_cv_rows(s: dict[str, Any], rows_r: Any) -> int | None:
    """The rows a reported CV ran on, as the report states them (`cv_rows`: model selection on a
    sample of a large train+valid), held to at least the gate's own CV sample (the spread of
    folds of fewer rows is larger, which a smaller claim would excuse) and at most train+valid;
    None when not stated: all of train+valid."""
    try:
        rows = int(rows_r)
    except (TypeError, ValueError):
        return None
    n_dev = s["n_train"] + s["n_valid"]
    return max(min(rows, n_dev), min(n_dev, int(s["cv"]["rows"])))


def cv_claim_problems(s: dict[str, Any], who: str, mean_r: float, std_r: float,
                      k_r: int, rows_r: Any = None) -> list[str]:
    """Problems with a reported CV mean/std of the saved model against the gate's own CV (an
    F-test on the spread, a z-test plus CV_MEAN_SLACK on the mean; see docs/gates.md). `rows_r`:
    the rows the reported CV ran on, when the report states them (reported_cv_rows)."""
    from scipy.special import fdtri  # the F distribution's quantile (lighter than scipy.stats)

    cv, metric = s["cv"], s["metric"]
    u = unit(metric, s["scale"])
    sd, reps, k = cv["sd_fold"], cv["repeats"], cv["folds"]
    out = []
    se = sd * math.sqrt(1 / max(k_r, 1) + 1 / (reps * k))
    tol = 3.29 * se + CV_MEAN_SLACK * u
    if abs(mean_r - cv["mean"]) > tol:
        out.append(f"{who} reports CV mean {mean_r:.4f}, the gate's own {reps}x{k}-fold CV of "
                   f"the saved model measured {cv['mean']:.4f} (tolerance {tol:.4f})")
    if k_r >= 2 and sd > 0:
        n_train, n_dev = s["n_train"], s["n_train"] + s["n_valid"]
        stated = reported_cv_rows(s, rows_r)
        if stated is not None:  # a sample of train+valid (or of train: the same share less)
            n_train, n_dev = max(1, round(stated * n_train / max(1, n_dev))), stated
        per_fold = sd ** 2 * (cv["rows"] / k)  # variance x rows per fold (variance ~ 1/rows)
        low, high = per_fold / (n_dev / k_r), per_fold / (max(1, n_train) / k_r)
        var_r = std_r ** 2 * k_r / (k_r - 1)
        dfn, dfd = k_r - 1, reps * (k - 1)
        lo_q, hi_q = float(fdtri(dfn, dfd, CV_P_VALUE / 2)), float(fdtri(dfn, dfd, 1 - CV_P_VALUE / 2))
        floor = (0.002 * u) ** 2
        if var_r < low * lo_q and low - var_r > floor:
            out.append(f"{who} reports CV std {std_r:.4f}, implausibly small for this model: the "
                       f"gate's own CV measured a fold sd of {sd:.4f}, expected a reported std of "
                       f"at least {math.sqrt(low * lo_q * (k_r - 1) / k_r):.4f} (F-test, "
                       f"p < {CV_P_VALUE})")
        elif var_r > high * hi_q and var_r - high > floor:
            out.append(f"{who} reports CV std {std_r:.4f}, implausibly large for this model: the "
                       f"gate's own CV measured a fold sd of {sd:.4f} (F-test, p < {CV_P_VALUE})")
    return out


def cv_stability(ctx: CheckContext, params: CvStabilityParams) -> CheckResult:
    try:
        res = json.loads(ctx.path(params.results).read_text(encoding="utf-8"))
        models: dict[str, Any] = res["models"]
        best = res["best_model"]
        entry = models[best]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return result("failed", f"{params.results} lacks models/best_model: {e}")
    if len(models) < params.min_models:
        return result("failed", f"{params.results} holds {len(models)} model(s), expected at "
                      f"least {params.min_models} (a baseline and the model families)",
                      models=list(models))
    s = measure(ctx, params)
    if "error" in s:
        return _cannot(params, s)
    metric, cv = s["metric"], s["cv"]
    if "error" in cv:
        return result("failed", f"the gate could not cross-validate a clone of {params.model} "
                      f"(sklearn.base.clone, then fit): {cv['error']}")
    u = unit(metric, s["scale"])
    normalised = cv["std"] / u
    noise = float(cv.get("noise_sd") or 0.0) / u
    limit = max(params.max_std, params.noise_k * noise)
    evidence: dict[str, Any] = {
        "model": best, "metric": metric, "gate_cv_mean": cv["mean"], "gate_cv_std": cv["std"],
        "gate_fold_scores": cv["scores"], "folds": cv["folds"], "repeats": cv["repeats"],
        "rows": cv["rows"], "capped": cv["capped"], "seed": cv["seed"], "scale": u,
        "normalised_std": round(normalised, 6), "max_std": params.max_std,
        "normalised_noise": round(noise, 6), "limit": round(limit, 6)}
    problems = _reported_fold_problems(entry, best, metric, params)
    if not problems:
        scores = [float(x) for x in entry["cv_scores"]]
        evidence["reported_cv_scores"] = scores
        problems += cv_claim_problems(s, f"{params.results} ({best})",
                                      statistics.fmean(scores), statistics.pstdev(scores),
                                      len(scores), entry.get("cv_rows"))
        if reported_cv_rows(s, entry.get("cv_rows")) is not None:
            evidence["reported_cv_rows"] = entry.get("cv_rows")
    what = (f"the gate's {cv['repeats']}x{cv['folds']}-fold CV of the saved model on "
            f"{cv['rows']} train+valid rows: {metric} {cv['mean']:.4f}, std {cv['std']:.4f}"
            + ("" if u == 1.0 else f" / target std {u:.3f} = {normalised:.4f}"))
    bound = (f"{params.max_std}" if limit == params.max_std else
             f"{limit:.4f} ({params.noise_k:g} x the folds' sampling noise {noise:.4f}, above "
             f"{params.max_std})")
    if normalised >= limit:
        problems.insert(0, f"{what}, expected a std < {bound}")
    if problems:
        return result("failed", "; ".join(problems), **evidence)
    return result("passed", f"{what} (< {bound}); the reported folds agree", **evidence)


def _reported_fold_problems(entry: dict[str, Any], best: str, metric: str,
                            params: CvStabilityParams) -> list[str]:
    scores = entry.get("cv_scores")
    if not isinstance(scores, list) or len(scores) < params.min_folds:
        return [f"{best}: cv_scores must list at least {params.min_folds} fold scores, found "
                f"{scores!r}"]
    try:
        values = [float(x) for x in scores]
    except (TypeError, ValueError):
        return [f"{best}: cv_scores are not numbers: {scores!r}"]
    mean, std = statistics.fmean(values), statistics.pstdev(values)
    problems = []
    try:
        if abs(mean - float(entry.get("cv_mean", "nan"))) > 1e-3 * max(1.0, abs(mean)):
            problems.append(f"cv_mean {entry.get('cv_mean')} is not the mean of its fold "
                            f"scores ({mean:.4f})")
        sample_std = statistics.stdev(values) if len(values) > 1 else std  # ddof=1 is fine too
        if not any(abs(sd - float(entry.get("cv_std", "nan"))) <= 1e-3 * max(1.0, abs(sd)) + 1e-4
                   for sd in (std, sample_std)):
            problems.append(f"cv_std {entry.get('cv_std')} is not the std of its fold scores "
                            f"({std:.4f})")
    except (TypeError, ValueError):
        problems.append(f"{best}: cv_mean/cv_std are not numbers")
    bounded = metric not in LOWER_IS_BETTER
    if bounded and metric != "r2" and not all(0.0 <= x <= 1.0 for x in values):
        problems.append(f"fold scores outside [0, 1] for {metric}: {values}")
    if not bounded and not all(x >= 0 for x in values):
        problems.append(f"negative fold scores for the error metric {metric}: {values}")
    return [f"{params.results}: {p}" for p in problems]


# -- feature importance ---------------------------------------------------------------------
class ImportanceParams(ScoreInputs):
    folder: str = "interpretability"
    min_concordance: float = Field(default=0.8, ge=0, le=1, description=(
        "share of the feature pairs the gate orders with confidence that the file orders alike"))
    top_k: int = Field(default=3, ge=1, description="the gate's most important feature must "
                                                    "be among the file's top k")
    z: float = Field(default=3.0, gt=0, description="a pair is ordered with confidence when "
                                                    "its importances differ by z standard errors")

    def describe(self) -> str:
        return (f"`{self.folder}/feature_importance.json` ranks every raw feature column; the gate "
                "computes permutation importance of the raw columns itself (its own sample of "
                f"up to {IMPORTANCE_ROWS:,} test rows and seed, {IMPORTANCE_REPEATS} repeats): its "
                f"most important feature must be in your top {self.top_k}, and at least "
                f"{self.min_concordance:.0%} of the feature pairs it orders with confidence "
                f"(importances {self.z:g} standard errors apart) must be in your order.")


def feature_importance(ctx: CheckContext, params: ImportanceParams) -> CheckResult:
    from mlpipe_flow.checks.importance_file import find_importances

    spec = ctx.spec() or {}
    features = [str(c) for c in spec.get("feature_columns") or []]
    found = find_importances(ctx.path(params.folder), features)
    if found is None:
        return result("failed", f"no machine-readable feature importance in {params.folder}/ "
                      "(a JSON or CSV file naming the raw feature columns with a number each, "
                      "e.g. feature_importance.json)", features=features[:20])
    rel, reported = found
    rel = Path(params.folder, rel).as_posix()
    s = measure(ctx, params)
    if "error" in s:
        return _cannot(params, s)
    imp = s["importance"]
    if "error" in imp:
        return result("failed", f"the gate could not measure permutation importance of "
                      f"{params.model}: {imp['error']}")
    u = unit(s["metric"], s["scale"])
    gate = {c: (v[0], v[1]) for c, v in imp["features"].items()}
    ranked = sorted(gate, key=lambda c: -gate[c][0])
    mine = sorted(reported, key=lambda c: -reported[c])
    reps = imp["repeats"]
    pairs = conc = 0
    discordant: list[str] = []
    for a, b in itertools.combinations(features, 2):
        (ma, sa), (mb, sb) = gate[a], gate[b]
        se = math.sqrt((sa ** 2 + sb ** 2) / reps)
        if abs(ma - mb) <= params.z * se or max(ma, mb) <= 0.002 * u:
            continue
        ra, rb = reported.get(a), reported.get(b)
        if ra is None and rb is None or ra == rb:
            continue  # the file does not order these two
        pairs += 1
        hi, lo = (a, b) if ma > mb else (b, a)
        rh, rl = reported.get(hi, -math.inf), reported.get(lo, -math.inf)
        if rh > rl:
            conc += 1
        elif len(discordant) < 3:
            discordant.append(f"{hi} > {lo}")
    top = ranked[0]
    evidence = {"file": rel, "metric": s["metric"], "seed": s["seed"], "rows": imp["rows"],
                "repeats": reps,
                "gate_importance": {c: round(gate[c][0], 6) for c in ranked},
                "reported_top": mine[:10], "confident_pairs": pairs,
                "concordance": round(conc / pairs, 4) if pairs else None}
    problems = []
    # the top feature is held to the file's top k only when the gate is sure it belongs there:
    # clearly above zero and above the gate's (k+1)-th feature
    runner_up = gate[ranked[params.top_k]] if len(ranked) > params.top_k else (0.0, 0.0)
    top_sig = (gate[top][0] > 0.002 * u
               and gate[top][0] - runner_up[0] > params.z * math.sqrt(
                   (gate[top][1] ** 2 + runner_up[1] ** 2) / reps))
    if top_sig and top not in mine[:params.top_k]:
        problems.append(f"the gate's most important feature {top!r} (drop in {s['metric']} "
                        f"{gate[top][0]:.4f} when shuffled) is not in {rel}'s top "
                        f"{params.top_k} ({', '.join(mine[:params.top_k])})")
    if pairs and conc / pairs < params.min_concordance:
        problems.append(f"{rel} orders only {conc}/{pairs} of the feature pairs the gate's "
                        f"permutation importance orders with confidence as the gate does "
                        f"(expected >= {params.min_concordance:.0%}; e.g. measured "
                        f"{'; '.join(discordant)})")
    if problems:
        return result("failed", "; ".join(problems), **evidence)
    return result("passed", f"{rel} agrees with the gate's permutation importance "
                  f"(seed {s['seed']}, {imp['rows']} test rows): top feature {top!r}, "
                  f"{conc}/{pairs} confident pairs in the same order", **evidence)
