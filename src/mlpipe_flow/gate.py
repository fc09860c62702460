"""Running a gate: each check of a phase in a process of its own under its time limit,
collected into a GateReport.

A check is mlpipe's code, but it handles what an agent made (it starts the agent's API, runs
its scripts, reads its files), so each one runs as a killable child (`checks/child.py`): its own
process group, a hard wall-clock limit, nothing left behind when it ends. The child starts from
an empty folder with mlpipe's package first on its path, so nothing in the workspace can stand
in for mlpipe's own modules.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlpipe_flow import proc
from mlpipe_flow.checks import CHECKS, CheckContext
from mlpipe_flow.display import Display, NullDisplay
from mlpipe_flow.errors import UsageError
from mlpipe_flow.models import CheckResult, CheckSpec, Gate, GateReport, Phase

PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])
BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
        "from mlpipe_flow.checks.child import main; sys.exit(main(sys.argv[2:]))")
KILL_GRACE_S = 5.0


def run_check(spec: CheckSpec, ctx: CheckContext) -> CheckResult:
    """One check in a child process; a hung or crashing check is an `error` result."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mlpipe-check-{spec.id}-") as tmp:
        folder = Path(tmp)
        scratch = folder / "scratch"
        scratch.mkdir()
        ctx = CheckContext(**{**ctx.__dict__, "scratch": scratch})
        payload, out = folder / "payload.json", folder / "result.json"
        payload.write_text(json.dumps({"kind": spec.kind, "params": spec.params,
                                       "ctx": ctx.to_payload()}), encoding="utf-8")
        env = proc.scrubbed_env(extra={"PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(scratch)})
        env.pop("PYTHONPATH", None)
        res = proc.run([sys.executable, "-c", BOOT, PACKAGE_PARENT, str(payload), str(out)],
                       cwd=scratch, env=env, timeout_s=spec.timeout_s + KILL_GRACE_S)
        elapsed = round(time.monotonic() - started, 3)
        try:
            got = CheckResult.model_validate_json(out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            got = None
    if got is None:
        if res.timed_out:
            message = f"check did not finish within {spec.timeout_s:.0f}s (killed with its processes)"
        else:
            tail = [ln for ln in res.output.splitlines() if ln.strip()][-3:]
            message = f"check process died ({res.describe()}): {' | '.join(tail)[:300]}"
        return CheckResult(id=spec.id, name=spec.name, status="error", message=message,
                           duration_s=elapsed)
    message = got.message
    if got.status == "failed" and spec.message:
        message = f"{spec.message}: {got.message}"
    return got.model_copy(update={"id": spec.id, "name": spec.name, "message": message,
                                  "duration_s": elapsed})


def run_gate(
    phase: Phase,
    gate: Gate,
    workspace: Path,
    *,
    only: list[str] | None = None,
    display: Display | None = None,
    data: dict[str, Any] | None = None,
    python: str | None = None,
    run_id: str | None = None,
    jobs: int = 0,
) -> GateReport:
    """The checks run `jobs` at a time (0: one per CPU core, at most 4), each in its own
    process; a check whose kind measures time (`CheckKind.exclusive`, the load test) runs
    alone, after the checks before it finished. Results are shown and kept in gate order."""
    display = display or NullDisplay()
    checks = gate.checks
    if only:
        known = {c.id for c in checks}
        unknown = [o for o in only if o not in known]
        if unknown:
            raise UsageError(f"gate {phase.gate} has no check '{unknown[0]}' "
                             f"(checks: {', '.join(sorted(known))})")
        checks = [c for c in checks if c.id in only]
    started = time.monotonic()
    display.emit("gate_started", phase=phase.id, gate=phase.gate, checks=len(checks))

    # a worker says when its check starts; the thread running the gate shows it (displays are
    # called from one thread), woken by each start and each finish (None)
    news: queue.SimpleQueue[CheckSpec | None] = queue.SimpleQueue()

    def one(spec: CheckSpec) -> CheckResult:
        news.put(spec)
        ctx = CheckContext(workspace=workspace, phase=phase.id, timeout_s=spec.timeout_s,
                           data=dict(data or {}), run_id=run_id)
        if python:
            ctx.python = python
        return run_check(spec, ctx)

    def wait_for(future: Future[CheckResult]) -> CheckResult:
        """The check's result, showing every check that starts meanwhile."""
        while not future.done() or not news.empty():
            spec = news.get()
            if spec is not None:
                display.emit("check_started", phase=phase.id, id=spec.id, name=spec.name,
                             timeout_s=spec.timeout_s)
        return future.result()

    workers = jobs or min(4, os.cpu_count() or 1)
    results: list[CheckResult] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlpipe-check")
    pending: list[Future[CheckResult]] = []

    def submit(spec: CheckSpec) -> None:
        future = pool.submit(one, spec)
        future.add_done_callback(lambda _: news.put(None))
        pending.append(future)

    def drain() -> None:  # show finished checks in gate order
        while pending:
            res = wait_for(pending.pop(0))
            results.append(res)
            display.emit("check", phase=phase.id, **res.model_dump())

    try:
        for spec in checks:
            kind = CHECKS.get(spec.kind)
            if kind is not None and kind.exclusive:
                drain()
                submit(spec)
                drain()
            else:
                submit(spec)
        drain()
    except BaseException:  # Ctrl-C: checks not started never start, running ones are killed
        pool.shutdown(wait=False, cancel_futures=True)
        proc.kill_all()
        raise
    pool.shutdown()
    passed = all(r.status in ("passed", "skipped") for r in results)
    report = GateReport(phase=phase.id, gate=phase.gate, passed=passed, checks=results,
                        duration_s=round(time.monotonic() - started, 3))
    display.emit("gate_finished", phase=phase.id, gate=phase.gate, passed=passed,
                 success=gate.success if passed else "",
                 failed=[c.id for c in report.failures])
    return report
