"""Machine-readable shapes other tools rely on, and the text of `mlpipe status`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipe_flow.models import GateReport
from mlpipe_flow.state import RunState, atomic_write

if TYPE_CHECKING:
    from mlpipe_flow.config import Config
    from mlpipe_flow.workflow import Workflow


def gate_json(report: GateReport) -> dict[str, Any]:
    return {
        "phase": report.phase, "gate": report.gate, "passed": report.passed,
        "duration_s": report.duration_s,
        "checks": [{"id": c.id, "name": c.name, "status": c.status, "message": c.message,
                    "evidence": c.evidence, "duration_s": c.duration_s} for c in report.checks],
    }


def write_junit(reports: GateReport | list[GateReport], path: Path) -> None:
    """One gate report as a JUnit <testsuite>, several (one per phase) as <testsuites>."""
    from xml.etree import ElementTree as ET

    if isinstance(reports, GateReport):
        root = _junit_suite(reports)
    else:
        root = ET.Element("testsuites")
        root.extend(_junit_suite(r) for r in reports)
    xml = ET.tostring(root, encoding="unicode")
    atomic_write(path, '<?xml version="1.0" encoding="utf-8"?>\n' + xml + "\n")


def _junit_suite(report: GateReport) -> Any:
    import json
    from xml.etree import ElementTree as ET

    failures = sum(c.status == "failed" for c in report.checks)
    errors = sum(c.status == "error" for c in report.checks)
    skipped = sum(c.status == "skipped" for c in report.checks)
    suite = ET.Element("testsuite", name=f"mlpipe.{report.phase}", tests=str(len(report.checks)),
                       failures=str(failures), errors=str(errors), skipped=str(skipped),
                       time=f"{report.duration_s:.3f}")
    for c in report.checks:
        case = ET.SubElement(suite, "testcase", classname=f"mlpipe.{report.phase}", name=c.id,
                             time=f"{c.duration_s:.3f}")
        detail = json.dumps(c.evidence, indent=2, default=str)
        if c.status in ("failed", "error"):
            tag = "failure" if c.status == "failed" else "error"
            ET.SubElement(case, tag, message=c.message).text = detail
        elif c.status == "skipped":
            ET.SubElement(case, "skipped", message=c.message)
    return suite


def status_json(state: RunState | None, config: Config) -> dict[str, Any]:
    settings = config.describe()
    if state is None:
        return {"run_id": None, "problem": None, "progress": 0, "status": "none", "phases": [],
                "config": settings}
    return {
        "run_id": state.run_id, "problem": state.problem, "progress": state.progress,
        "status": state.status, "target": state.target,
        "data": state.data.model_dump() if state.data else None,
        "cost_usd": round(state.cost_usd, 6),
        "phases": [{"id": p.id, "status": p.status, "attempts": p.attempts,
                    "tokens_in": p.tokens_in, "tokens_out": p.tokens_out,
                    "cache_read_tokens": p.cache_read_tokens,
                    "cache_write_tokens": p.cache_write_tokens, "cost_usd": p.cost_usd,
                    "reason": p.reason} for p in state.phases],
        "config": settings,
    }


def status_text(state: RunState | None, config: Config, wf: Workflow, workspace: Path) -> str:
    lines = []
    if state is None:
        lines.append(f"no run in {workspace} yet (mlpipe run PROBLEM --data FILE starts one)")
    else:
        lines += [f"run {state.run_id}: {state.problem}",
                  f"status {state.status}, progress {state.progress}%, cost ${state.cost_usd:.4f}", ""]
        lines.append(f"{'phase':<8} {'status':<12} {'attempts':>8} {'tokens in':>10} "
                     f"{'tokens out':>10} {'cost $':>9}")
        for p in wf.phases:
            rec = state.phase(p.id)
            lines.append(f"{p.id:<8} {rec.status:<12} {rec.attempts:>8} {rec.tokens_in:>10} "
                         f"{rec.tokens_out:>10} {rec.cost_usd:>9.4f}")
            if rec.reason and rec.status != "passed":
                lines.append(f"         {rec.reason[:150]}")
    lines += ["", "configuration (value <- source):"]
    for key, item in config.describe().items():
        lines.append(f"  {key:<15} {item['value']!s:<30} <- {item['source']}")
    return "\n".join(lines)
