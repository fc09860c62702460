"""Continuous-training drills, judged by what the API serves (see `ct_drills`): a retrain on
inverted labels must keep the champion, a retrain on the real labels must replace a bad
champion and bring the served score back to the phase-3 level, and a rollback must bring back
the model served before a promotion. Every drill runs the agent's scripts in a scratch copy of
the workspace, on data the gate makes at gate time. The MLflow Model Registry is judged the same
way: after a promotion and after a rollback the gate loads the version the alias `champion`
names (`registry_probe.py`, in the workspace's interpreter) and that version must predict what
the API served then: an alias that moves without the served model, or the other way round, fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mlpipe_flow.checks import metrics
from mlpipe_flow.checks.artifacts import ProbeError, feature_types, run_model
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.ct_drills import (
    Drill,
    DrillFailed,
    DrillParams,
    Truth,
    alias_state,
    champion_state,
    decision_brief,
    decisive_champion,
    disagreement,
    drill_data,
    phase3_level,
    recorded_score,
    run_drill,
    serve,
    served_rule,
    within,
    worse_by,
    wrong_labels_rule,
)
from mlpipe_flow.models import CheckResult


class RegistryParams(BaseModel):
    """Where the drills read the MLflow Model Registry, and how close its model must be."""

    registry_uri: str = Field(default="sqlite:///mlflow.db", description="the MLflow Model "
                              "Registry, relative to the workspace")
    registered_model: str | None = Field(default=None, description="None: the one registered "
                                         "model holding the alias")
    alias: str = "champion"
    agree_tol: float = Field(default=1e-4, gt=0, description="registry model vs served answers")

    def registry_rule(self, when: str) -> str:
        model = (f"`{self.registered_model}`" if self.registered_model else
                 f"the one registered model holding the alias `{self.alias}`")
        return (f"{when} the gate loads the version the alias `{self.alias}` of {model} names in "
                f"the MLflow Model Registry `{self.registry_uri}` (MLflow's scikit-learn flavour, "
                f"else pyfunc) and runs it on the test split: its class probabilities (else "
                f"predictions) must be within {self.agree_tol:g} of what the API served then "
                "(promotion and rollback move the alias, and the served model with it). The "
                "copy has no `mlflow.db` or `mlruns/` (they are not copied): the scripts create "
                "the registry from the served model when there is none. ")


class RetrainDrillParams(RegistryParams, DrillParams):
    recover_se: float = Field(default=2.0, gt=0)
    score_tolerance: float = Field(default=0.01, ge=0,
                                   description="recorded vs measured, x max(1, |score|)")

    def describe(self) -> str:
        return (f"`python {self.retrain} --data CSV [--force-promote]` must exit 0 and append one "
                f"JSON line to `{self.decisions}` with `decision` (`promote` or `keep`), "
                "`champion_score`, `challenger_score` and `challenger_model` (the challenger's "
                "model file, inside the workspace, kept after the run). The drill: (1) `--data` "
                f"{wrong_labels_rule(self)} must record `keep`, the API must serve the same "
                "answers and `/health` `model_version` as before, and the gate's own score of "
                f"`challenger_model` on `{self.test}` must be decisively worse than the champion's; "
                "(2) `--force-promote` on other such data must make the API serve that new, "
                "decisively worse model; (3) `--data` with the same rows and the real labels must "
                "record `promote`, and the API must then serve a score within "
                f"{self.recover_se:g} se of the one phase 3's `beats-baseline` measured. The "
                "`champion_score` and `challenger_score` recorded in (1) and (3) must equal the "
                f"gate's measurements within {self.score_tolerance:g} x max(1, |score|). "
                + self.registry_rule("After (3)") + served_rule(self))


class RollbackDrillParams(RegistryParams, DrillParams):
    rollback: list[str] = Field(default_factory=lambda: ["rollback/rollback.py"])

    def describe(self) -> str:
        return (f"the gate runs `python {self.retrain} --data CSV --force-promote` with "
                f"{wrong_labels_rule(self)}, which must make the API serve a new, decisively "
                f"worse model, then `python {' '.join(self.rollback)}`: it must exit 0, and the "
                "API started afterwards must serve the previous model's `/predict` answers and "
                "`/health` `model_version` again. "
                + self.registry_rule("After each of the two steps") + served_rule(self))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _measure_challenger(drill: Drill, truth: Truth, folder: Path, rel: Any) -> float:
    """The gate's score of a kept challenger's model file (run in the workspace's interpreter)."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise DrillFailed(f"the decision record names no challenger_model inside the workspace "
                          f"(got {rel!r})")
    if not (folder / rel).is_file():
        raise DrillFailed(f"the decision record's challenger_model {rel} does not exist")
    ctx = CheckContext(workspace=folder, phase=drill.ctx.phase, timeout_s=drill.ctx.timeout_s,
                       python=drill.ctx.python, env=drill.ctx.env, scratch=drill.root)
    proba = drill.metric in metrics.PROBA_METRICS
    try:
        out = run_model(ctx, rel, truth.features, feature_types(truth.frame, truth.features),
                        [{"op": "predict", "frame": truth.frame, "proba": proba}],
                        timeout_s=drill.params.script_timeout_s)
    except ProbeError as e:
        raise DrillFailed(f"the challenger {rel} cannot be scored: {e}") from None
    got = out["results"][0]
    probs = got.get("probabilities") if proba else None
    classes = [str(c) for c in out.get("classes") or []] or None
    try:
        return truth.score(got["predictions"], probs, classes)[0]
    except (ValueError, KeyError) as e:
        raise DrillFailed(f"the challenger {rel} cannot be scored: {e}") from None


def retrain_drill(ctx: CheckContext, params: RetrainDrillParams) -> CheckResult:
    return run_drill(ctx, params, _retrain)


def _retrain(drill: Drill, ev: dict[str, Any]) -> CheckResult:
    p: RetrainDrillParams = drill.params  # type: ignore[assignment]
    truth = Truth(drill)
    champ = champion_state(drill, truth)
    se = decisive_champion(drill, truth, champ)
    level, level_from = phase3_level(drill, champ)
    decisive, metric = p.decisive_se * se, drill.metric
    ev.update(metric=metric, champion=champ.brief(), phase3_level=level, level_from=level_from,
              decisive_margin=decisive, recover_margin=p.recover_se * se)

    # 1. known-worse: the training rows with inverted labels -> keep the champion
    inverted = drill_data(drill, "inverted-labels", corrupt=True)
    worse = drill.retrain(inverted)
    ev["worse_decision"] = decision_brief(worse)
    if worse["_promoted"]:
        return result("failed", f"a challenger trained on inverted labels was promoted (recorded "
                      f"challenger {_fmt(recorded_score(worse, 'challenger_score'))} vs champion "
                      f"{_fmt(recorded_score(worse, 'champion_score'))}); the champion must be "
                      "kept", **ev)
    after_worse = drill.snapshot("after-worse")
    chall = _measure_challenger(drill, truth, drill.ws, worse.get("challenger_model"))
    ev["worse_challenger_measured"] = chall
    if worse_by(drill, chall, champ.score) <= decisive:
        return result("failed", f"the challenger kept in the inverted-label drill "
                      f"({worse.get('challenger_model')}) scores {metric} {chall:.4f} on the test "
                      f"split, not decisively below the champion's {champ.score:.4f} (margin "
                      f"{decisive:.4f}): it was not trained on the data it was given", **ev)
    for key, measured in (("challenger_score", chall), ("champion_score", champ.score)):
        rec = recorded_score(worse, key)
        if not within(p.score_tolerance, rec, measured):
            return result("failed", f"the inverted-label decision records {key} {_fmt(rec)} but "
                          f"the gate measured {metric} {measured:.4f} (tolerance "
                          f"{p.score_tolerance} x max(1, |score|))", **ev)
    # 2. a bad champion: force-promote a challenger trained on inverted labels
    bad_rec = drill.retrain(drill_data(drill, "inverted-labels-2", corrupt=True),
                            "--force-promote")
    ev["forced_decision"] = decision_brief(bad_rec)
    bad_champion = drill.snapshot("bad-champion")
    # 3. known-better: the real labels -> the challenger replaces the bad champion
    better = drill.retrain(drill_data(drill, "labelled", corrupt=False))
    ev["better_decision"] = decision_brief(better)
    if not better["_promoted"]:
        return result("failed", f"a challenger trained on the real labels was not promoted over a "
                      f"bad champion (recorded: challenger "
                      f"{_fmt(recorded_score(better, 'challenger_score'))} vs champion "
                      f"{_fmt(recorded_score(better, 'champion_score'))}); decision "
                      f"{better.get('decision')!r}: {str(better.get('reason', ''))[:120]}", **ev)
    after_better = drill.snapshot("after-better")
    alias_better = alias_state(drill, truth, p.registry_uri, p.registered_model, p.alias)
    served = serve(drill, truth, {"after-worse": after_worse, "bad-champion": bad_champion,
                                  "after-better": after_better})
    ev["served"] = {k: v.brief() for k, v in served.items()}
    s_worse, s_bad, s_better = served["after-worse"], served["bad-champion"], served["after-better"]
    if s_worse.fingerprint != champ.fingerprint or s_worse.version != champ.version:
        return result("failed", f"after an inverted-label retrain recorded 'keep', the API serves "
                      f"another model (version {s_worse.version}, {metric} {s_worse.score:.4f}; "
                      f"before: version {champ.version}, {champ.score:.4f})", **ev)
    # judge the forced promotion (the drill's bad champion)
    if not bad_rec["_promoted"] or s_bad.fingerprint == champ.fingerprint:
        return result("failed", f"retrain --force-promote did not replace the served model "
                      f"(decision {bad_rec.get('decision')!r}; served {metric} {s_bad.score:.4f}, "
                      f"champion {champ.score:.4f})", **ev)
    if worse_by(drill, s_bad.score, champ.score) <= decisive:
        return result("failed", f"a model force-promoted from inverted labels serves {metric} "
                      f"{s_bad.score:.4f}, not decisively below the champion's {champ.score:.4f} "
                      f"(margin {decisive:.4f}): the retrain did not train on the data it was "
                      "given", **ev)
    if s_better.fingerprint == s_bad.fingerprint:
        return result("failed", f"the known-better retrain recorded 'promote' but the API still "
                      f"serves the bad champion ({metric} {s_bad.score:.4f})", **ev)
    if worse_by(drill, s_better.score, level) > p.recover_se * se:
        return result("failed", f"after the known-better retrain the API serves {metric} "
                      f"{s_better.score:.4f}, not back to the phase-3 level {level:.4f} (within "
                      f"{p.recover_se:g} standard errors, {p.recover_se * se:.4f})", **ev)
    off = disagreement(s_better, alias_better, truth.regression)
    ev["registry"] = {"after-better": {**alias_better.brief(), "disagreement": off}}
    if s_better.version is not None and s_better.version != alias_better.version:
        return result("failed", f"the known-better retrain promoted and the API serves version "
                      f"{s_better.version}, but the registry's {alias_better.model_name}@"
                      f"{p.alias} names version {alias_better.version}: the promotion did not "
                      "move the alias", **ev)
    if off > p.agree_tol:
        return result("failed", f"the known-better retrain promoted and the API serves it, but "
                      f"the registry's {alias_better.model_name}@{p.alias} (version "
                      f"{alias_better.version}) predicts otherwise (off by {off:.3g} > "
                      f"{p.agree_tol:g}): the promotion did not move the alias", **ev)
    for key, measured in (("challenger_score", s_better.score), ("champion_score", s_bad.score)):
        rec = recorded_score(better, key)
        if not within(p.score_tolerance, rec, measured):
            return result("failed", f"the known-better decision records {key} {_fmt(rec)} but "
                          f"the gate measured {metric} {measured:.4f} from the API (tolerance "
                          f"{p.score_tolerance} x max(1, |score|))", **ev)
    return result("passed", f"served {metric}: champion {champ.score:.4f}, kept after an "
                  f"inverted-label retrain (challenger {chall:.4f}); forced bad champion "
                  f"{s_bad.score:.4f}; the real-label retrain promoted and serves "
                  f"{s_better.score:.4f} (phase 3: {level:.4f})", **ev)


def rollback_drill(ctx: CheckContext, params: RollbackDrillParams) -> CheckResult:
    return run_drill(ctx, params, lambda drill, ev: _rollback(drill, params.rollback, ev))


def _rollback(drill: Drill, rollback: list[str], ev: dict[str, Any]) -> CheckResult:
    truth = Truth(drill)
    champ = champion_state(drill, truth)
    se = decisive_champion(drill, truth, champ)
    metric, decisive = drill.metric, drill.params.decisive_se * se
    ev.update(metric=metric, champion=champ.brief(), decisive_margin=decisive)
    p: RollbackDrillParams = drill.params  # type: ignore[assignment]
    forced = drill.retrain(drill_data(drill, "inverted-labels", corrupt=True),
                           "--force-promote")
    ev["forced_decision"] = decision_brief(forced)
    promoted = drill.snapshot("promoted")
    alias_promoted = alias_state(drill, truth, p.registry_uri, p.registered_model, p.alias)
    script, *args = rollback
    res = drill.run(script, *args)
    rolled_back = drill.snapshot("rolled-back")
    alias_back = (alias_state(drill, truth, p.registry_uri, p.registered_model, p.alias)
                  if res.ok else None)
    served = serve(drill, truth, {"promoted": promoted, "rolled-back": rolled_back})
    ev["served"] = {k: v.brief() for k, v in served.items()}
    s_new, s_back = served["promoted"], served["rolled-back"]
    if s_new.fingerprint == champ.fingerprint:
        return result("failed", f"after retrain --force-promote the API still serves the champion "
                      f"({metric} {s_new.score:.4f}): nothing to roll back", **ev)
    if worse_by(drill, s_new.score, champ.score) <= decisive:
        return result("failed", f"a model force-promoted from inverted labels serves {metric} "
                      f"{s_new.score:.4f}, not decisively below the champion's "
                      f"{champ.score:.4f}: the retrain did not train on the data it was given",
                      **ev)
    if s_back.fingerprint != champ.fingerprint or s_back.version != champ.version:
        return result("failed", f"after {script} (exit {res.returncode}) the API serves version "
                      f"{s_back.version} with {metric} {s_back.score:.4f}, expected the previous "
                      f"version {champ.version} with {champ.score:.4f}", **ev)
    if not res.ok or alias_back is None:
        return result("failed", f"{script} restored the previous model but exited with "
                      f"{res.describe()}", **ev)
    regression = truth.regression
    ev["registry"] = {"promoted": {**alias_promoted.brief(),
                                   "disagreement": disagreement(s_new, alias_promoted, regression)},
                      "rolled-back": {**alias_back.brief(),
                                      "disagreement": disagreement(s_back, alias_back, regression)}}
    name = alias_promoted.model_name
    for when, s, alias, move in (("promotion", s_new, alias_promoted, "move the alias"),
                                 ("rollback", s_back, alias_back, "move the alias back")):
        if s.version is not None and s.version != alias.version:
            return result("failed", f"after the {when} the API serves version {s.version} but "
                          f"the registry's {name}@{p.alias} names version {alias.version}: the "
                          f"{when} did not {move}", **ev)
    if ev["registry"]["promoted"]["disagreement"] > p.agree_tol:
        return result("failed", f"after retrain --force-promote the API serves the new model but "
                      f"the registry's {name}@{p.alias} (version {alias_promoted.version}) "
                      f"predicts otherwise (off by {ev['registry']['promoted']['disagreement']:.3g}"
                      f" > {p.agree_tol:g}): the promotion did not move the alias", **ev)
    if alias_back.version == alias_promoted.version or \
            ev["registry"]["rolled-back"]["disagreement"] > p.agree_tol:
        return result("failed", f"after {script} the API serves the previous model but the "
                      f"registry's {name}@{p.alias} names version {alias_back.version} (was "
                      f"{alias_promoted.version} after the promotion), which predicts otherwise "
                      f"(off by {ev['registry']['rolled-back']['disagreement']:.3g} > "
                      f"{p.agree_tol:g}): the rollback did not move the alias back", **ev)
    return result("passed", f"served version {champ.version} ({metric} {champ.score:.4f}) -> "
                  f"promoted {s_new.version} ({s_new.score:.4f}) -> rolled back to "
                  f"{s_back.version} ({s_back.score:.4f}, same answers); {name}@{p.alias}: "
                  f"version {alias_promoted.version} -> {alias_back.version}, each predicting "
                  "as served", **ev)
