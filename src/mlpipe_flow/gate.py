"""Running a gate: each check of a phase under its time limit, collected into a GateReport."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from mlpipe_flow.checks import CHECKS, CheckContext
from mlpipe_flow.display import Display, NullDisplay
from mlpipe_flow.errors import MlpipeError, UsageError
from mlpipe_flow.models import CheckResult, CheckSpec, Gate, GateReport, Phase


def run_check(spec: CheckSpec, ctx: CheckContext) -> CheckResult:
    """One check, in a worker thread so a hung check is reported as an error, not a hung gate."""
    kind = CHECKS[spec.kind]
    params = kind.params.model_validate(spec.params)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = kind.run(ctx, params)
        except MlpipeError as e:
            box["result"] = CheckResult(id=spec.id, status="error", message=str(e))
        except Exception as e:  # noqa: BLE001 - a crashing check is an error result, not a crash
            box["result"] = CheckResult(
                id=spec.id, status="error", message=f"check crashed: {type(e).__name__}: {e}"
            )

    started = time.monotonic()
    worker = threading.Thread(target=work, name=f"check-{spec.id}", daemon=True)
    worker.start()
    worker.join(timeout=spec.timeout_s + 5)  # the check's own subprocesses honour timeout_s
    elapsed = time.monotonic() - started
    res: CheckResult | None = box.get("result")
    if res is None:
        return CheckResult(id=spec.id, name=spec.name, status="error",
                           message=f"check did not finish within {spec.timeout_s:.0f}s",
                           duration_s=elapsed)
    message = res.message
    if res.status == "failed" and spec.message:
        message = f"{spec.message}: {res.message}"
    return res.model_copy(update={"id": spec.id, "name": spec.name, "message": message,
                                  "duration_s": round(elapsed, 3)})


def run_gate(
    phase: Phase,
    gate: Gate,
    workspace: Path,
    *,
    only: list[str] | None = None,
    display: Display | None = None,
    data: dict[str, Any] | None = None,
    python: str | None = None,
) -> GateReport:
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
    results: list[CheckResult] = []
    display.emit("gate_started", phase=phase.id, gate=phase.gate, checks=len(checks))
    for spec in checks:
        ctx = CheckContext(workspace=workspace, phase=phase.id, timeout_s=spec.timeout_s,
                           data=dict(data or {}))
        if python:
            ctx.python = python
        res = run_check(spec, ctx)
        results.append(res)
        display.emit("check", phase=phase.id, **res.model_dump())
    passed = all(r.status in ("passed", "skipped") for r in results)
    report = GateReport(phase=phase.id, gate=phase.gate, passed=passed, checks=results,
                        duration_s=round(time.monotonic() - started, 3))
    display.emit("gate_finished", phase=phase.id, gate=phase.gate, passed=passed,
                 success=gate.success if passed else "",
                 failed=[c.id for c in report.failures])
    return report
