"""The MLflow store cross-checked with experiments/results.json and the gate's measurement.

The store is read with sqlite3 (read-only; no MLflow import): every model results.json lists
names its run (`mlflow_run_id`); that run exists, is active, finished and top-level (nested
trial runs do not count as a model family's run); its logged metrics hold the CV mean and std
results.json reports (and, for the best model, the test score); the best model's run logged
the saved model itself (a file in its artifacts, or in a model it logged, with the sha256 of
artifacts/model.joblib); and the best run's numbers agree with the gate's own re-measurement
of the saved model (its test score, its cross-validation): runs fabricated without training
report numbers the model does not have.
"""

from __future__ import annotations

import json
import math
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pydantic import Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.model_checks import cv_claim_problems
from mlpipe_flow.checks.model_measure import ScoreInputs, measure, score_tolerance, tolerance_rule
from mlpipe_flow.models import CheckResult
from mlpipe_flow.state import file_sha256


class MlflowRunsParams(ScoreInputs):
    db: str = "mlflow.db"
    results: str = "experiments/results.json"
    min_runs: int = Field(default=4, ge=1)
    tolerance: float = Field(default=0.01, ge=0, description="score tolerance, as reported-score")

    def describe(self) -> str:
        return (f"the gate reads the MLflow SQLite store `{self.db}` itself. Every model of "
                f"`{self.results}` names its own run (`mlflow_run_id`): an active, FINISHED, "
                "top-level run (not nested under another run) that logged metrics equal to the "
                "model's `cv_mean` and `cv_std` (to 1e-6, or to the digits the file states); the "
                "best model's run also logged its `test_score` and the saved model file itself "
                f"(a file with the sha256 of `{self.model}` among its artifacts), and the "
                "parameters it logged are the saved estimator's. Only active top-level runs "
                f"count, and there must be at least {self.min_runs} of them (one per model; "
                "nested tuning trials do not count). The best model's numbers are compared with "
                f"the gate's measurement: its test score within {tolerance_rule(self.tolerance)}, its "
                "CV mean and std as in `cv-stability`.")


def _close(reported: Any, logged: float) -> bool:
    """A logged value equals a reported one: to 1e-6, or to the digits results.json states
    (a file that rounds to 4 decimals still names the run's value)."""
    want = _num(reported)
    if want is None:
        return False
    exponent = reported.as_tuple().exponent if isinstance(reported, Decimal) else 0
    digits = -exponent if isinstance(exponent, int) else 0
    rounding = 0.5 * 10 ** -digits if 0 < digits < 7 else 0.0
    return abs(want - logged) <= max(1e-6 * max(1.0, abs(want), abs(logged)), rounding)


def mlflow_runs(ctx: CheckContext, params: MlflowRunsParams) -> CheckResult:
    p = ctx.path(params.db)
    if not p.is_file():
        return result("failed", f"{params.db} does not exist (expected an MLflow SQLite store, "
                      "tracking URI sqlite:///mlflow.db)")
    try:
        res = json.loads(ctx.path(params.results).read_text(encoding="utf-8"),
                         parse_float=Decimal)  # keeps the digits it states
        models: dict[str, Any] = dict(res["models"])
        best = str(res["best_model"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return result("failed", f"{params.results} lacks models/best_model: {e}")
    raw_ids = {name: (m.get("mlflow_run_id") if isinstance(m, dict) else None)
               for name, m in models.items()}
    unnamed = [n for n, i in raw_ids.items() if not isinstance(i, str) or not i]
    if unnamed:
        return result("failed", f"{params.results}: model(s) {unnamed} do not name their MLflow "
                      "run (mlflow_run_id)", models=list(models))
    ids = {name: str(i) for name, i in raw_ids.items()}
    try:
        store = _read_store(p, list(ids.values()))
    except sqlite3.Error as e:
        return result("failed", f"{params.db} is not an MLflow store: {e}")
    problems: list[str] = []
    evidence: dict[str, Any] = {"runs": store["top_level"], "models": ids,
                                "expected": max(params.min_runs, len(models))}
    if len(set(ids.values())) < len(ids):
        problems.append(f"{params.results} names one run for several models: each model "
                        "family is its own run")
    for name, rid in ids.items():
        run = store["runs"].get(rid)
        if run is None:
            problems.append(f"{name}: run {rid} is not in {params.db}")
            continue
        if run["lifecycle_stage"] != "active" or run["status"] != "FINISHED":
            problems.append(f"{name}: run {rid} is {run['lifecycle_stage']}/{run['status']}, "
                            "expected an active FINISHED run")
        if run["parent"]:
            problems.append(f"{name}: run {rid} is nested under run {run['parent']} (a trial): "
                            "a model family's run is a top-level run")
        logged = run["metrics"]
        entry = models[name] if isinstance(models[name], dict) else {}
        for key in ("cv_mean", "cv_std"):
            if not any(_close(entry.get(key), v) for v in logged):
                problems.append(f"{name}: run {rid} logged no metric equal to the {key} "
                                f"{entry.get(key)} of {params.results}")
        if name == best and not any(_close(res.get("test_score"), v) for v in logged):
            problems.append(f"{name}: the best run {rid} logged no metric equal to the "
                            f"test_score {res.get('test_score')} of {params.results}")
    if store["top_level"] < evidence["expected"]:
        problems.append(f"{store['top_level']} active top-level run(s) in {params.db}, expected "
                        f"at least {evidence['expected']} (a run per model; nested trial runs "
                        "do not count)")
    best_run = store["runs"].get(ids.get(best, ""))
    model_path = ctx.path(params.model)
    if best_run is not None and model_path.is_file():
        digest = file_sha256(model_path)
        where = _artifact_dirs(ctx.workspace, [(best_run["artifact_uri"], ids[best]),
                                               *[(loc, None) for loc in best_run["logged"]]])
        evidence["model_sha256"] = digest
        if not any(_holds(d, digest) for d in where):
            problems.append(f"the best run {ids[best]} did not log {params.model} (no file with "
                            f"its sha256 {digest[:12]} in the run's artifacts)")
    if not problems:
        problems += _against_measurement(ctx, params, models.get(best), res, best,
                                         (best_run or {}).get("params") or {})
    if problems:
        return result("failed", "; ".join(problems[:4]) + (
            f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""), problems=problems,
            **evidence)
    return result("passed", f"{len(ids)} models, each its own finished top-level run in "
                  f"{params.db} with the metrics {params.results} reports; the best run logged "
                  f"{params.model} and its numbers agree with the gate's measurement", **evidence)


def _against_measurement(ctx: CheckContext, params: MlflowRunsParams, entry: Any,
                         res: dict[str, Any], best: str, logged: dict[str, str]) -> list[str]:
    s = measure(ctx, params)
    if "error" in s:
        return [f"cannot compare with the gate's measurement: {s['error']}"]
    out = _describes_the_saved_model(s.get("estimator"), entry, best, logged)
    test = _num(res.get("test_score"))
    tol = score_tolerance(s["score"], params.tolerance)
    if test is not None and abs(test - s["score"]) > tol:
        out.append(f"the best run's test score {test:.4f} is not the saved model's: the gate "
                   f"measured {s['metric']} {s['score']:.4f} (tolerance {tol:.4f})")
    mean, std = _num((entry or {}).get("cv_mean")), _num((entry or {}).get("cv_std"))
    folds = (entry or {}).get("cv_scores")
    k = len(folds) if isinstance(folds, list) else 5
    if "error" not in s["cv"] and mean is not None and std is not None:
        out += cv_claim_problems(s, f"the best run ({best})", mean, std, k,
                                 (entry or {}).get("cv_rows"))
    return out


def _describes_the_saved_model(saved: dict[str, Any] | None, entry: Any, best: str,
                               logged: dict[str, str]) -> list[str]:
    """The best model of results.json and its run describe the saved model: its estimator
    class (when results.json names one) and every logged parameter named like one of the
    saved estimator's (a pipeline prefix such as model__ aside)."""
    if not saved:
        return []
    out = []
    named = entry.get("estimator") if isinstance(entry, dict) else None
    if isinstance(named, str) and named and named != saved["class"]:
        out.append(f"{best} is a {named} in results.json, but the saved model is a "
                   f"{saved['class']}")
    differ = []
    for key, value in logged.items():
        name = key.rsplit("__", 1)[-1]
        if name in saved["params"] and not _same(value, saved["params"][name]):
            differ.append(f"{key}={value} (saved: {saved['params'][name]})")
    if differ:
        out.append(f"the best run logged parameters the saved {saved['class']} does not have: "
                   + ", ".join(differ[:4]))
    return out


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    x, y = _num(a), _num(b)
    return x is not None and y is not None and math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12)


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _read_store(path: Path, wanted: list[str]) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute("SELECT run_uuid, status, lifecycle_stage, artifact_uri FROM runs"
                           ).fetchall()
        parents = dict(con.execute("SELECT run_uuid, value FROM tags WHERE key = "
                                   "'mlflow.parentRunId'").fetchall())
        runs: dict[str, Any] = {}
        for rid, status, stage, uri in rows:
            runs[rid] = {"status": status, "lifecycle_stage": stage, "artifact_uri": uri or "",
                         "parent": parents.get(rid), "metrics": [], "logged": []}
        for rid in set(wanted) & set(runs):
            runs[rid]["metrics"] = [float(v) for (v,) in con.execute(
                "SELECT value FROM metrics WHERE run_uuid = ?", (rid,)).fetchall()
                if v is not None]
            runs[rid]["params"] = dict(con.execute(
                "SELECT key, value FROM params WHERE run_uuid = ?", (rid,)).fetchall())
        try:
            for rid, loc in con.execute("SELECT source_run_id, artifact_location FROM "
                                        "logged_models").fetchall():
                if rid in runs and loc:
                    runs[rid]["logged"].append(loc)
        except sqlite3.OperationalError:  # MLflow 2 stores have no logged_models table
            pass
    finally:
        con.close()
    top = sum(1 for r in runs.values() if r["lifecycle_stage"] == "active" and not r["parent"])
    return {"runs": runs, "top_level": top}


def _artifact_dirs(ws: Path, uris: list[tuple[str, str | None]]) -> list[Path]:
    """The run's artifact folders inside the workspace. A URI is the agent's data: only what
    resolves inside the workspace is read, and a store made in another folder (a copied
    workspace) is re-rooted by the tail of its path that names the run (or the logged model)."""
    out = []
    root = ws.resolve()
    for uri, run_id in uris:
        parsed = urlparse(uri)
        if parsed.scheme not in ("", "file"):
            continue
        path = Path(unquote(parsed.path if parsed.scheme else uri))
        parts = path.parts
        key = run_id or next((p for p in reversed(parts) if p != "artifacts"), None)
        tries = [path if path.is_absolute() else ws / path]
        tries += [ws.joinpath(*parts[i:]) for i in range(1, len(parts)) if key in parts[i:]]
        for t in tries:
            try:
                r = t.resolve()
            except OSError:
                continue
            if r.is_dir() and (r == root or root in r.parents):
                out.append(r)
                break
    return out


def _holds(folder: Path, digest: str) -> bool:
    for f in folder.rglob("*"):
        try:
            if f.is_file() and f.stat().st_size < 2_000_000_000 and file_sha256(f) == digest:
                return True
        except OSError:
            continue
    return False
