"""The continuous-training DAG, run: drift decides whether retraining runs (phase 6,
`dag_drift_drill`).

`dag_parses` judges what the DAG file builds; this drill judges what it does. In a scratch copy
of the workspace the gate starts the API, posts records to `/predict` (the API logs what it
samples of them where the drift job reads), stops it, and runs the DAG once, in dependency
order, with mlpipe's stand-in of Airflow's `dag.test()` (`dag_loader.py --run`): every task up
to the retraining task runs for real (the drift job, the decision, what prepares the training
set); the retraining task itself and what follows it are not run, only recorded as reached.

Twice, each time in a fresh copy: records drawn from the training split (no drift: the
retraining task must not be reached) and the same records with every numeric feature shifted
by `shift_std` training standard deviations (drift: it must be reached). A DAG that retrains
whatever the drift job says (`|| true`, an exit status swallowed, a short-circuit that always
passes), a drift job that does not read the API's logged inputs, or an API that logs nothing,
fails one of the two runs."""

from __future__ import annotations

import json
import os
import shutil
import stat
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.ct_drills import (
    SCRATCH_IGNORE,
    Drill,
    DrillError,
    DrillFailed,
    DrillParams,
    _wait_healthy,
    run_drill,
    tail,
)
from mlpipe_flow.checks.dag_checks import LOADER, STANDIN
from mlpipe_flow.checks.serving import API_APP, http
from mlpipe_flow.models import CheckResult


class DagDriftDrillParams(DrillParams):
    UNSTATED: ClassVar[frozenset[str]] = frozenset({"parallel", "se_resamples", "decisive_se"})
    path: str = "airflow_dags/continuous_training.py"
    check_task: str = Field(default="check", description="task-id fragment of the drift job")
    retrain_task: str = Field(default="retrain", description="task-id fragment of retraining")
    production: str = Field(default="data/production", description="where the API logs inputs "
                            "and the drift job reads them; emptied in the copy before each run")
    records: int = Field(default=2000, ge=100, description="records posted per run")
    shift_std: float = Field(default=3.0, gt=0)

    def describe(self) -> str:
        return (f"the gate runs `{self.path}` for real, twice, each time in a fresh scratch copy "
                f"of the workspace with `{self.production}/` emptied: it starts `deployment/api` "
                f"(`/health` within {self.startup_s:g} s), posts {self.records:,} records to "
                f"`/predict` in requests of {self.request_records:,}, stops the API, then runs "
                "the DAG once in dependency order with mlpipe's stand-in of Airflow's "
                "`dag.test()` (Bash tasks through `bash -c` in their `cwd` with the workspace's "
                "interpreter first on PATH as `python`, Python tasks with their XComs, "
                "short-circuits and branches skipping what they skip; each task "
                f"{self.script_timeout_s:g} s) up to the first task whose id contains "
                f"`{self.retrain_task}`, which is not run but recorded as reached. (1) Records "
                f"drawn from `{self.train[0]}` (no drift): the task whose id contains "
                f"`{self.check_task}` must succeed and retraining must not be reached. (2) The "
                f"same records with every numeric feature raised by {self.shift_std:g} training "
                "standard deviations (no numeric feature: every categorical feature set to its "
                "rarest value): retraining must be reached. So the API must log (a sample of) "
                f"its inputs under `{self.production}/`, the drift job must read them there by "
                "default, and its verdict must decide whether retraining runs.")


def dag_drift_drill(ctx: CheckContext, params: DagDriftDrillParams) -> CheckResult:
    if not ctx.path(params.path).is_file():
        return result("failed", f"{params.path} does not exist")
    return run_drill(ctx, params, lambda drill, ev: _drill(drill, params, ev))


def _drill(drill: Drill, params: DagDriftDrillParams, ev: dict[str, Any]) -> CheckResult:
    calm, shifted, how = traffic(drill, params)
    ev["records"] = len(calm)
    ev["shift"] = how
    runs: dict[str, dict[str, Any]] = {}
    for name, records in (("no_drift", calm), ("drift", shifted)):
        folder = drill.root / f"run-{name}"
        shutil.copytree(drill.ws, folder, ignore=SCRATCH_IGNORE, symlinks=True)
        shutil.rmtree(folder / params.production, ignore_errors=True)
        post(drill, params, folder, name, records)
        runs[name] = run_dag(drill, params, folder, name)
        ev[name] = {"tasks": runs[name]["brief"], "drift_job": said(runs[name])}
        verdict = judge(params, name, runs[name], how)
        if verdict is not None:
            return result("failed", verdict, **ev)
    return result("passed", f"no drift: `{runs['no_drift']['check']}` succeeded and "
                  f"`{runs['no_drift']['retrain']}` was skipped; drift ({how}): it was reached",
                  **ev)


# -- the records the gate posts ---------------------------------------------------------------
def traffic(drill: Drill, params: DagDriftDrillParams
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """(records from the training split, the same records shifted, what the shift did)."""
    import numpy as np
    import pandas as pd

    features = list(drill.spec.get("feature_columns") or [])
    train = pd.read_csv(drill.ctx.workspace / params.train[0], low_memory=False)
    missing = [c for c in features if c not in train.columns]
    if not features or missing:
        raise DrillError(f"{params.train[0]} lacks the spec's feature columns {missing[:5]}")
    rng = np.random.default_rng(drill.seed)
    idx = rng.choice(len(train), size=params.records, replace=len(train) < params.records)
    calm = train[features].iloc[idx].reset_index(drop=True)
    shifted = calm.copy()
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(train[c])
               and not pd.api.types.is_bool_dtype(train[c]) and train[c].nunique() > 2]
    if numeric:
        for c in numeric:
            std = float(train[c].std()) or 1.0
            moved = shifted[c] + params.shift_std * std
            shifted[c] = moved.round() if pd.api.types.is_integer_dtype(train[c]) else moved
        how = f"{len(numeric)} numeric feature(s) + {params.shift_std:g} std"
    else:
        for c in features:
            rarest = train[c].value_counts().index[-1]
            shifted[c] = rarest
        how = f"{len(features)} categorical feature(s) set to their rarest value"
    return records_of(calm), records_of(shifted), how


def records_of(frame: Any) -> list[dict[str, Any]]:
    """The rows as JSON-able dicts with every float exact (pandas' to_json rounds to 10 digits,
    or 15 at most: a value rounded in transit is another value, and a coded two-level feature
    such as diabetes' `sex` would then "drift"); missing values as None."""
    import pandas as pd

    def plain(v: Any) -> Any:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return None
        return v.item() if hasattr(v, "item") else v

    cols = list(frame.columns)
    return [{c: plain(v) for c, v in zip(cols, row, strict=True)}
            for row in frame.itertuples(index=False, name=None)]


def post(drill: Drill, params: DagDriftDrillParams, folder: Path, name: str,
         records: list[dict[str, Any]]) -> None:
    """Start the API on `folder`, post `records`, stop it (gracefully: SIGTERM first)."""
    if not (folder / "deployment" / "api" / "main.py").is_file():
        raise DrillFailed("deployment/api/main.py does not exist")
    port = proc.free_port()
    env = proc.scrubbed_env(extra={**drill.ctx.env, "PYTHONPATH": str(folder),
                                   "PYTHONDONTWRITEBYTECODE": "1"})
    argv = [drill.ctx.python, "-m", "uvicorn", API_APP, "--host", "127.0.0.1", "--port",
            str(port), "--log-level", "warning"]
    chunk = params.request_records
    with ExitStack() as stack:
        server = stack.enter_context(proc.start_server(
            argv, cwd=folder, env=env, log_path=drill.root / "logs" / f"api-{name}.log"))
        _wait_healthy(drill, {name: (port, server)})
        for i in range(0, len(records), chunk):
            body = json.dumps({"records": records[i:i + chunk]}).encode()
            status, raw = http("POST", f"http://127.0.0.1:{port}/predict", body, timeout=60)
            if status != 200:
                raise DrillFailed(f"/predict ({name} records) answered HTTP {status}: "
                                  f"{raw[:200].decode(errors='replace')}")


# -- the DAG run ------------------------------------------------------------------------------
def run_dag(drill: Drill, params: DagDriftDrillParams, folder: Path, name: str) -> dict[str, Any]:
    """The loader's run of the DAG in `folder`: {check, retrain, states, brief}."""
    shim = drill.root / "bin"
    if not (shim / "python").is_file():  # `python` in Bash tasks: the workspace's interpreter
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "python").write_text(f'#!/bin/sh\nexec "{drill.ctx.python}" "$@"\n',
                                     encoding="utf-8")
        (shim / "python").chmod(stat.S_IRWXU)
    out = drill.root / f"dag-run-{name}.json"
    env = proc.scrubbed_env(extra={**drill.ctx.env, "PYTHONDONTWRITEBYTECODE": "1",
                                   "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}",
                                   "MLPIPE_TASK_TIMEOUT_S": f"{params.script_timeout_s:g}"})
    env.pop("PYTHONPATH", None)
    run_dir = drill.root / f"cwd-{name}"
    run_dir.mkdir(exist_ok=True)
    res = proc.run([drill.ctx.python, str(LOADER), str(folder / params.path), str(STANDIN),
                    str(out), "--run", params.check_task, params.retrain_task],
                   cwd=run_dir, env=env, timeout_s=params.script_timeout_s * 3)
    drill.log.append({"run": f"{params.path} ({name} records)", "exit": res.returncode,
                      "seconds": round(res.duration_s, 2), "tail": tail(res.output)})
    try:
        report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DrillFailed(f"running {params.path} died ({res.describe()}): "
                          f"{' | '.join(tail(res.output))}") from None
    if report.get("error"):
        if "[stand-in gap]" in str(report["error"]):  # mlpipe's stand-in lacks an Airflow API
            raise DrillError(f"cannot run {params.path} with mlpipe's stand-in of Airflow: "
                             f"{report['error']}")
        raise DrillFailed(f"running {params.path}: {report['error']}")
    return report


def said(run: dict[str, Any]) -> str:
    """The drift task's last line, shortened to its verdict when it is a JSON report."""
    last = run["states"][run["check"]].get("last") or ""
    try:
        report = json.loads(last)
    except ValueError:
        return last[:200] or "(nothing)"
    if not isinstance(report, dict):
        return last[:200]
    keys = ("status", "drift_detected", "drifted_features", "rows", "reason")
    return json.dumps({k: report[k] for k in keys if k in report})[:300] or last[:200]


def judge(params: DagDriftDrillParams, name: str, run: dict[str, Any], how: str) -> str | None:
    """Why the run of `name` records fails the drill, or None."""
    states: dict[str, dict[str, Any]] = run["states"]
    check, retrain = run["check"], run["retrain"]
    got = states[check]
    if got["state"] != "success":
        return (f"with {name.replace('_', ' ')} records the drift task `{check}` ended "
                f"{got['state']}: {' | '.join(got.get('tail') or [got.get('error') or ''])}")
    verdict = said(run)
    after = states[retrain]
    if name == "no_drift" and after["state"] == "reached":
        return (f"retraining ran without drift: records drawn from {params.train[0]} reached "
                f"`{retrain}` (drift task said: {verdict}); drift must decide whether it runs")
    if name == "drift" and after["state"] != "reached":
        why = (f"skipped by `{after['skipped_by']}`" if after.get("skipped_by") else
               f"{after['state']}" + (f" ({after['error']})" if after.get("error") else ""))
        failed = [f"`{t}`: {s.get('error') or ' | '.join(s.get('tail') or [])}"
                  for t, s in states.items() if s["state"] == "failed"]
        return (f"drift did not start retraining: with {how} `{retrain}` was {why} (drift "
                f"task said: {verdict})"
                + (f"; failed: {'; '.join(failed)[:300]}" if failed else ""))
    return None
