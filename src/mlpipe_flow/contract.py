"""The contract a phase prompt states, taken from the gates themselves: each check's rule (its
params model's `describe()`) and validated params, so the numbers an agent is told are the
numbers the gate uses (tests/test_contract.py renders every phase and compares)."""

from __future__ import annotations

from typing import Any

from mlpipe_flow.checks import rule, validate_params
from mlpipe_flow.models import Phase
from mlpipe_flow.workflow import Workflow


def contract_context(wf: Workflow, phase: Phase) -> dict[str, Any]:
    """Template variables: `checks` (this phase's, in gate order, each with its `rule`), `gate`
    (this phase's params by check id: `gate["beats-baseline"].min_margin`) and `gates` (every
    phase's, by phase id then check id: `gates.phase4["api-load"].p95_ms`) and `serving_budget`
    (the params of the workflow's load check, `api_load`, with the phase that runs it; None in a
    workflow without one), which earlier phases state as a constraint; `default_params(kind)`
    gives a kind's params at their defaults, for a workflow whose gate lacks that check."""
    gates = {p.id: gate_params(wf, p.gate) for p in wf.phases}
    checks = [{"id": c.id, "kind": c.kind, "name": c.name, "rule": rule(c)}
              for c in wf.gates[phase.gate].checks]
    budget = next(({"phase": p.id, "check": c.id, "params": gates[p.id][c.id]}
                   for p in wf.phases for c in wf.gates[p.gate].checks if c.kind == "api_load"),
                  None)
    return {"checks": checks, "rules": {c["id"]: c["rule"] for c in checks},
            "gate": gates[phase.id], "gates": gates, "serving_budget": budget,
            "default_params": default_params}


def default_params(kind: str) -> Any:
    """A check kind's params at their defaults: what a prompt names (a script's path, say) when
    the workflow's gate has no check of that kind (`gate.get("retrain-drill") or
    default_params("retrain_drill")`)."""
    from mlpipe_flow.checks import CHECKS

    return CHECKS[kind].params.model_validate({})


def gate_params(wf: Workflow, gate: str) -> dict[str, Any]:
    path = wf.root / "gates" / f"{gate}.yaml"
    return {c.id: validate_params(path, i, c) for i, c in enumerate(wf.gates[gate].checks)}
