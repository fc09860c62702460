"""Reading the memory database for people: `mlpipe history`, `show`, `patterns search`, and the
provenance manifest of `mlpipe export` (logged to the workspace's MLflow store only with --mlflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpipe_flow.errors import UsageError
from mlpipe_flow.memory import MemoryDB, memory_path, now

MANIFEST_VERSION = 1
MLFLOW_EXPERIMENT = "mlpipe-provenance"


def open_for_reading() -> MemoryDB | None:
    """The memory database, or None when no run has been recorded yet. Errors (corrupt, newer
    schema) are StateErrors: one line, exit 2."""
    return MemoryDB.open(memory_path(), create=False)


def require_run(db: MemoryDB | None, run_id: str) -> dict[str, Any]:
    run = db.find_run(run_id) if db is not None else None
    if run is None or db is None:
        raise UsageError(f"no run {run_id!r} in the memory database {memory_path()}; "
                         "`mlpipe history` lists the recorded runs")
    return run


def run_record(db: MemoryDB, run: dict[str, Any]) -> dict[str, Any]:
    return {**run, **db.run_detail(run["id"])}


def history_text(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return f"no runs recorded yet in {memory_path()}"
    lines = [f"{'RUN':<24} {'STARTED':<25} {'OUTCOME':<11} {'PROG':>4} {'COST':>9} {'RUNNER':<9} PROBLEM"]
    for r in runs:
        lines.append(f"{r['id']:<24} {r['started']:<25} {r['outcome']:<11} {r['progress']:>3}% "
                     f"${r['cost_usd']:>8.4f} {(r['runner'] or '-'):<9} {r['problem']}")
    return "\n".join(lines)


def show_text(rec: dict[str, Any]) -> str:
    lines = [f"run {rec['id']}: {rec['outcome']}, {rec['progress']}%",
             f"problem:   {rec['problem']}", f"workspace: {rec['workspace']}",
             f"runner:    {rec['runner'] or '-'}" + (f" (model {rec['model']})" if rec["model"] else ""),
             f"started:   {rec['started']}   finished: {rec['finished'] or '-'}", "", "attempts:"]
    for a in rec["attempts"]:
        gate = {True: "gate passed", False: "gate failed", None: "no gate"}[a["gate_passed"]]
        failing = [c["id"] for c in a["gate_evidence"] or [] if c["status"] in ("failed", "error")]
        lines.append(f"  {a['phase']} #{a['attempt']}: agent {a['agent_status']}, {gate}"
                     + (f" ({', '.join(failing)})" if failing else "")
                     + f", {a['tokens_in']}+{a['tokens_out']} tokens, ${a['cost_usd']:.4f}, "
                     f"{a['duration_s']:.1f}s, prompt {a['prompt_sha256'][:12]}")
    lines += ["", f"artifacts: {len(rec['artifacts'])}"]
    lines += [f"  {a['sha256'][:12]}  {a['path']} ({a['phase']} #{a['attempt']})" for a in rec["artifacts"]]
    lines += ["", f"patterns: {len(rec['patterns'])}"]
    lines += [f"  {p['phase']}: {p['title']}" for p in rec["patterns"]]
    return "\n".join(lines)


def patterns_text(hits: list[dict[str, Any]]) -> str:
    if not hits:
        return "no matching patterns"
    out = []
    for h in hits:
        out.append(f"== {h['title']} ({h['phase']}, run {h['run_id']}, problem: {h['problem']})")
        out.extend("   " + line for line in h["text"].splitlines()[:8])
    return "\n".join(out)


def manifest(db: MemoryDB, run: dict[str, Any]) -> dict[str, Any]:
    """Each artifact with its hash, the attempt that produced it (prompt hash, runner, model,
    tokens, cost) and the gate's verdict on that attempt."""
    from mlpipe_flow.state import file_sha256

    detail = db.run_detail(run["id"])
    attempts = {(a["phase"], a["attempt"]): a for a in detail["attempts"]}
    artifacts = []
    workspace = Path(run["workspace"])
    for art in detail["artifacts"]:
        a = attempts.get((art["phase"], art["attempt"]), {})
        checks = a.get("gate_evidence") or []
        try:  # the file as it is now: a manifest must not vouch for a file changed since
            current: str | None = file_sha256(workspace / art["path"])
        except OSError:
            current = None
        artifacts.append({
            "path": art["path"], "sha256": art["sha256"], "current_sha256": current,
            "matches": current == art["sha256"], "phase": art["phase"],
            "attempt": art["attempt"], "prompt_sha256": a.get("prompt_sha256"),
            "runner": a.get("runner"), "model": a.get("model"),
            "gate": {"passed": a.get("gate_passed"),
                     "checks": [{"id": c["id"], "status": c["status"], "message": c["message"]}
                                for c in checks]},
        })
    return {
        "manifest_version": MANIFEST_VERSION, "generated": now(),
        "run": {k: run[k] for k in ("id", "problem", "workspace", "runner", "model", "started",
                                    "finished", "outcome", "progress")},
        "artifacts": artifacts,
        "attempts": [{k: v for k, v in a.items() if k != "gate_evidence"} | {
            "gate_checks": [{"id": c["id"], "status": c["status"], "evidence": c.get("evidence", {})}
                            for c in a["gate_evidence"] or []]} for a in detail["attempts"]],
        "changed_since": [a["path"] for a in artifacts if not a["matches"]],
        "totals": {"cost_usd": round(sum(a["cost_usd"] for a in detail["attempts"]), 6),
                   "tokens_in": sum(a["tokens_in"] for a in detail["attempts"]),
                   "tokens_out": sum(a["tokens_out"] for a in detail["attempts"])},
    }


def log_to_mlflow(manifest_file: Path, workspace: Path, run_id: str) -> str:
    """Log the manifest as an artifact of an MLflow run in the workspace's store
    (`sqlite:///WORKSPACE/mlflow.db`); returns a one-line note of what happened."""
    if not workspace.is_dir():
        return f"MLflow: skipped, workspace {workspace} no longer exists"
    try:
        import mlflow
    except ImportError:
        return "MLflow: not installed, manifest not logged (pip install 'mlpipe-flow[ml]')"
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    try:
        mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow.db'}")
        exp = mlflow.get_experiment_by_name(MLFLOW_EXPERIMENT)
        exp_id = exp.experiment_id if exp else mlflow.create_experiment(
            MLFLOW_EXPERIMENT, artifact_location=(workspace / "mlruns").resolve().as_uri())
        with mlflow.start_run(experiment_id=exp_id, run_name=f"mlpipe-{run_id}") as mrun:
            mlflow.set_tag("mlpipe.run_id", run_id)
            mlflow.log_artifact(str(manifest_file))
            return (f"MLflow: logged {manifest_file.name} to run {mrun.info.run_id} "
                    f"(experiment {MLFLOW_EXPERIMENT}, sqlite:///{workspace / 'mlflow.db'})")
    except Exception as e:  # the store is the workspace's; a failure there must not lose the manifest
        return f"MLflow: not logged ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
