"""Runs a test file of the workspace under pytest, in a subprocess with a time limit."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.models import CheckResult

SUMMARY = re.compile(r"(\d+) (passed|failed|error|errors|skipped|deselected|xfailed|xpassed)")


class PytestParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    required: bool = Field(default=True, description="a missing test file fails (else: skipped)")
    min_tests: int = Field(default=1, ge=0)


def pytest(ctx: CheckContext, params: PytestParams) -> CheckResult:
    target = ctx.workspace / params.path
    if not target.exists():
        if params.required:
            return result("failed", f"{params.path} does not exist", path=params.path)
        return result("skipped", f"{params.path} does not exist", path=params.path)
    argv = [ctx.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", ".", params.path]
    env = proc.scrubbed_env(extra={**ctx.env, "PYTHONPATH": str(ctx.workspace),
                                   "PYTHONDONTWRITEBYTECODE": "1"})
    res = proc.run(argv, cwd=ctx.workspace, env=env, timeout_s=ctx.timeout_s)
    counts: dict[str, int] = {}
    for line in reversed(res.output.splitlines()):
        found = SUMMARY.findall(line)
        if found and ("passed" in line or "failed" in line or "error" in line or " in " in line):
            for n, word in found:
                counts["error" if word == "errors" else word] = int(n)
            break
    evidence: dict[str, object] = {"command": " ".join(argv[1:]), "exit": res.returncode, **counts}
    if not res.ok:
        tail = [ln for ln in res.output.splitlines() if ln.strip()][-15:]
        evidence["output_tail"] = tail
        if res.returncode == 1 or counts.get("failed") or counts.get("error"):
            return result("failed", f"{counts.get('failed', 0)} failed, {counts.get('error', 0)} "
                          f"errors, {counts.get('passed', 0)} passed ({res.describe()})", **evidence)
        return result("error", f"pytest could not run {params.path} ({res.describe()})", **evidence)
    if counts.get("passed", 0) < params.min_tests:
        return result("failed", f"{counts.get('passed', 0)} tests passed, expected at least "
                      f"{params.min_tests}", **evidence)
    return result("passed", f"{counts.get('passed', 0)} passed", **evidence)
