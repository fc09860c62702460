"""Continuous-training checks: the DAG parses with a schedule and ordered tasks; retrain drills
(clean and corrupted labels) in a scratch copy of the workspace; a rollback drill that watches
the live API's /health version change and come back."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.serving import ApiDown, running_api
from mlpipe_flow.models import CheckResult

SCRATCH_IGNORE = shutil.ignore_patterns(".mlpipe", ".git", "mlruns", "mlflow.db", "__pycache__",
                                        ".venv", "*.pyc", "raw")


@contextmanager
def scratch_copy(ws: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mlpipe-drill-") as tmp:
        dest = Path(tmp) / "ws"
        shutil.copytree(ws, dest, ignore=SCRATCH_IGNORE, symlinks=True)
        yield dest


def _run_py(ctx: CheckContext, ws: Path, script: str, *args: str) -> proc.ProcResult:
    return proc.run([ctx.python, script, *args], cwd=ws, timeout_s=ctx.timeout_s,
                    env=proc.scrubbed_env(extra={"PYTHONPATH": str(ws),
                                                 "PYTHONDONTWRITEBYTECODE": "1"}))


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _decisions(ws: Path, rel: str) -> list[dict[str, Any]]:
    try:
        lines = (ws / rel).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for ln in lines:
        try:
            out.append(json.loads(ln))
        except ValueError:
            continue
    return out


class RetrainDrillParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    script: str = "continuous_training/retrain.py"
    champion: str = "registry/champion.json"
    decisions: str = "registry/decisions.jsonl"
    versions: str = "registry/versions"
    sample_fraction: float = Field(default=0.8, gt=0, le=1)


def _drill(ctx: CheckContext, ws: Path, params: RetrainDrillParams, corrupt: bool) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    meta = json.loads((ws / "artifacts" / "model_meta.json").read_text(encoding="utf-8"))
    target = meta["target"]
    train = pd.read_csv(ws / "data" / "splits" / "train.csv")
    sample = train.sample(frac=params.sample_fraction, random_state=7).reset_index(drop=True)
    if corrupt:
        rng = np.random.default_rng(3)
        if meta["problem_type"] == "regression":
            sample[target] = rng.permutation(sample[target].to_numpy())
        else:  # labels drawn at random: the challenger learns nothing
            labels = sample[target].unique()
            sample[target] = rng.choice(labels, size=len(sample))
    data = ws / "drill_data.csv"
    sample.to_csv(data, index=False)
    before = (_read(ws / params.champion) or {}).get("version")
    n_before = len(_decisions(ws, params.decisions))
    res = _run_py(ctx, ws, params.script, "--data", str(data))
    decisions = _decisions(ws, params.decisions)
    after = (_read(ws / params.champion) or {}).get("version")
    versions = sorted(p.name for p in (ws / params.versions).iterdir()) \
        if (ws / params.versions).is_dir() else []
    new = decisions[n_before:]
    return {"exit": res.returncode, "champion_before": before, "champion_after": after,
            "versions": versions, "decision": new[-1] if new else None,
            "output_tail": [ln for ln in res.output.splitlines() if ln.strip()][-4:]}


def retrain_drill(ctx: CheckContext, params: RetrainDrillParams) -> CheckResult:
    if not (ctx.workspace / params.script).is_file():
        return result("failed", f"{params.script} does not exist")
    with scratch_copy(ctx.workspace) as ws:
        clean = _drill(ctx, ws, params, corrupt=False)
    with scratch_copy(ctx.workspace) as ws:
        worse = _drill(ctx, ws, params, corrupt=True)
    ev = {"clean": clean, "corrupted_labels": worse}
    for name, d in (("clean", clean), ("corrupted-label", worse)):
        if d["exit"] != 0:
            return result("failed", f"the {name} retrain drill exited with {d['exit']}: "
                          f"{' | '.join(d['output_tail'])}", **ev)
        if not d["decision"] or not d["decision"].get("decision"):
            return result("failed", f"the {name} retrain drill recorded no decision in "
                          f"{params.decisions}", **ev)
        if not d["decision"].get("challenger") or str(d["decision"]["challenger"]) not in \
                d["versions"]:
            return result("failed", f"the {name} retrain drill registered no challenger under "
                          f"{params.versions}/", **ev)
    if worse["champion_after"] != worse["champion_before"]:
        return result("failed", f"a challenger trained on corrupted labels replaced the champion "
                      f"({worse['champion_before']} -> {worse['champion_after']}); decision: "
                      f"{worse['decision'].get('reason')}", **ev)
    return result("passed", f"clean drill: challenger {clean['decision']['challenger']}, decision "
                  f"{clean['decision']['decision']}; corrupted labels: champion "
                  f"{worse['champion_before']} kept", **ev)


class RollbackDrillParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retrain: list[str] = Field(default_factory=lambda: ["continuous_training/retrain.py",
                                                        "--force-promote"])
    rollback: list[str] = Field(default_factory=lambda: ["rollback/rollback.py"])


def rollback_drill(ctx: CheckContext, params: RollbackDrillParams) -> CheckResult:
    for script in (params.retrain[0], params.rollback[0]):
        if not (ctx.workspace / script).is_file():
            return result("failed", f"{script} does not exist")
    steps: dict[str, Any] = {}
    with scratch_copy(ctx.workspace) as ws:
        sub = CheckContext(workspace=ws, phase=ctx.phase, timeout_s=ctx.timeout_s,
                           python=ctx.python, env=ctx.env)
        try:
            with running_api(sub) as api:
                steps["serving_before"] = api.health.get("model_version")
            res = _run_py(ctx, ws, *params.retrain)
            steps["promote_exit"] = res.returncode
            if not res.ok:
                return result("failed", f"promoting a new version failed ({res.describe()})",
                              **steps)
            with running_api(sub) as api:
                steps["serving_after_promote"] = api.health.get("model_version")
            res = _run_py(ctx, ws, *params.rollback)
            steps["rollback_exit"] = res.returncode
            steps["rollback_output"] = [ln for ln in res.output.splitlines() if ln.strip()][-3:]
            with running_api(sub) as api:
                steps["serving_after_rollback"] = api.health.get("model_version")
        except ApiDown as e:
            return result("failed", f"the API did not start during the drill: {e}", **steps)
    before, promoted, restored = (steps["serving_before"], steps["serving_after_promote"],
                                  steps["serving_after_rollback"])
    if promoted == before:
        return result("failed", f"after promotion the API still serves version {before}", **steps)
    if steps["rollback_exit"] != 0 or restored != before:
        return result("failed", f"after rollback the API serves version {restored}, expected the "
                      f"previous version {before} (rollback exit {steps['rollback_exit']})",
                      **steps)
    return result("passed", f"served {before} -> promoted {promoted} -> rolled back to {restored}",
                  **steps)
