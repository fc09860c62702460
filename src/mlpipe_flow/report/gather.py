"""What `mlpipe report` shows, read (never measured) from a run's records:

- `.mlpipe/state.json`: each phase's status, attempts, agent time, tokens and cost;
- `.mlpipe/runs/<run-id>/<phase>/attempt-N/`: each attempt's agent result and gate report;
- `MLPIPE_HOME/records/<run-id>/phases/<phase>.json`: the gate report a phase passed with
  (mlpipe's own copy, out of the agent's reach). A passed phase whose record is missing is
  shown from the workspace's copy of that report, and says so; a phase that has not passed
  shows its last attempt's report, labelled as such. No gate is run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.records import RunRecords, read_json_object
from mlpipe_flow.state import RunState
from mlpipe_flow.workflow import Workflow

EVIDENCE_CHARS = 6000  # a check's evidence shown in the page, as indented JSON
Source = Literal["records", "workspace", "last-attempt", "none"]


class View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttemptView(View):
    n: int
    agent_status: str = "-"  # the runner's word ("ok", "error", "timeout"); "-" when it never ended
    agent_s: float = 0.0
    gate_s: float = 0.0
    gate: Literal["passed", "failed", "none"] = "none"
    failing: list[str] = Field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0


class CheckView(View):
    id: str
    name: str
    status: str
    message: str
    duration_s: float = 0.0
    evidence: dict[str, Any] = Field(default_factory=dict)
    evidence_json: str = ""


class PhaseView(View):
    id: str
    name: str
    progress_start: int = 0
    progress_end: int = 0
    status: str = "pending"
    attempts: int = 0
    agent_s: float = 0.0
    gate_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None
    reason: str = ""
    history: list[AttemptView] = Field(default_factory=list)
    checks: list[CheckView] = Field(default_factory=list)
    source: Source = "none"
    source_note: str = ""

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out + self.cache_read_tokens + self.cache_write_tokens


class Evidence(View):
    """One check's evidence wherever the report needs it (a score, a latency, a drill)."""

    phase: str
    check: CheckView
    source: Source


class RunView(View):
    state: RunState
    workspace: str
    records_dir: str
    records_found: bool
    phases: list[PhaseView]
    kinds: dict[str, list[tuple[str, str]]]  # check kind -> [(phase id, check id)]

    def evidence(self, kind: str) -> Evidence | None:
        """The first check of this kind (by the workflow's gate definitions) with a report."""
        for phase_id, check_id in self.kinds.get(kind, []):
            phase = next((p for p in self.phases if p.id == phase_id), None)
            if phase is None:
                continue
            check = next((c for c in phase.checks if c.id == check_id), None)
            if check is not None:
                return Evidence(phase=phase_id, check=check, source=phase.source)
        return None


def _number(value: Any) -> float:
    """A finite number from an attempt file (the workspace's, so anything may be there), else 0."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return 0.0


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _attempt_dirs(workspace: Path, run_id: str, phase_id: str) -> list[Path]:
    base = workspace / ".mlpipe" / "runs" / run_id / phase_id
    dirs = [d for d in base.glob("attempt-*") if d.name.split("-", 1)[1].isdigit()] if base.is_dir() else []
    return sorted(dirs, key=lambda d: int(d.name.split("-", 1)[1]))


def _attempt(folder: Path) -> AttemptView:
    result = read_json_object(folder / "result.json") or {}
    gate = read_json_object(folder / "gate.json")
    view = AttemptView(n=int(folder.name.split("-", 1)[1]))
    if result:
        view.agent_status = str(result.get("status", "-"))
        view.agent_s = _number(result.get("duration_s"))
        view.tokens = int(sum(_number(result.get(k)) for k in
                              ("tokens_in", "tokens_out", "cache_read_tokens", "cache_write_tokens")))
        view.cost_usd = _number(result.get("cost_usd"))
    if gate is not None:
        view.gate = "passed" if gate.get("passed") is True else "failed"
        view.gate_s = _number(gate.get("duration_s"))
        view.failing = [str(c.get("id")) for c in _list(gate.get("checks"))
                        if isinstance(c, dict) and c.get("status") in ("failed", "error")]
    return view


def _checks(report: dict[str, Any]) -> list[CheckView]:
    out = []
    for c in _list(report.get("checks")):
        if not isinstance(c, dict):
            continue
        evidence = c.get("evidence")
        evidence = evidence if isinstance(evidence, dict) else {}
        text = json.dumps(evidence, indent=1, default=str, ensure_ascii=False)
        if len(text) > EVIDENCE_CHARS:
            text = text[:EVIDENCE_CHARS] + f"\n... ({len(text) - EVIDENCE_CHARS} more characters)"
        out.append(CheckView(id=str(c.get("id", "?")), name=str(c.get("name") or c.get("id", "?")),
                             status=str(c.get("status", "?")), message=str(c.get("message", "")),
                             duration_s=_number(c.get("duration_s")), evidence=evidence,
                             evidence_json=text))
    return out


def _shown_report(view: PhaseView, records: RunRecords, attempts: list[Path]) -> None:
    """The gate report a phase is shown with, and where it comes from."""
    reports = [(d, r) for d in attempts if (r := read_json_object(d / "gate.json")) is not None]
    if view.status == "passed":
        rec = records.phase(view.id)
        report = rec.get("report") if rec else None
        if isinstance(report, dict):
            view.checks, view.source = _checks(report), "records"
            view.source_note = (f"the gate report {view.id} passed with, from mlpipe's records "
                                f"({records.dir / 'phases' / (view.id + '.json')})")
            return
        passed = [(d, r) for d, r in reports if r.get("passed") is True]
        if passed:
            d, r = passed[-1]
            view.checks, view.source = _checks(r), "workspace"
            view.source_note = (f"mlpipe's records of this phase are not in {records.dir} (set "
                                f"MLPIPE_HOME to where the run was made): shown from the workspace's "
                                f"copy ({d.name}/gate.json), which an agent could have changed")
            return
    if reports:
        d, r = reports[-1]
        view.checks, view.source = _checks(r), "last-attempt"
        view.source_note = (f"{view.id} has not passed ({view.status}): the gate report of its "
                            f"last attempt ({d.name}), from the workspace")
        return
    view.source, view.source_note = "none", f"{view.id} has not passed ({view.status}): no gate report yet"


def gather(workspace: Path, state: RunState, wf: Workflow) -> RunView:
    records = RunRecords(state.run_id)
    names = {p.id: p for p in wf.phases}
    order = [p.id for p in wf.phases] + [r.id for r in state.phases if r.id not in names]
    phases = []
    for phase_id in order:
        rec = state.phase(phase_id)
        ph = names.get(phase_id)
        attempts = _attempt_dirs(workspace, state.run_id, phase_id)
        view = PhaseView(
            id=phase_id, name=ph.name if ph else "(not in this workflow)",
            progress_start=ph.progress_start if ph else 0, progress_end=ph.progress_end if ph else 0,
            status=rec.status, attempts=rec.attempts, agent_s=rec.duration_s,
            tokens_in=rec.tokens_in, tokens_out=rec.tokens_out,
            cache_read_tokens=rec.cache_read_tokens, cache_write_tokens=rec.cache_write_tokens,
            cost_usd=rec.cost_usd, started_at=rec.started_at, finished_at=rec.finished_at,
            reason=rec.reason, history=[_attempt(d) for d in attempts])
        view.gate_s = round(sum(a.gate_s for a in view.history), 3)
        _shown_report(view, records, attempts)
        phases.append(view)
    kinds: dict[str, list[tuple[str, str]]] = {}
    for p in wf.phases:
        gate = wf.gates.get(p.gate)
        for c in gate.checks if gate else []:
            kinds.setdefault(c.kind, []).append((p.id, c.id))
    return RunView(state=state, workspace=str(workspace), records_dir=str(records.dir),
                   records_found=records.exists(), phases=phases, kinds=kinds)
