"""`mlpipe plan` / `run --dry-run`: every phase prompt rendered, tokens and cost estimated,
nothing run and nothing spent.

Input tokens are estimated as characters / 4 of the rendered prompt plus the role prompt
(one pass; an agent that reads many files or takes many turns reads more), output tokens as
the phase's `token_estimate`; both priced with the model's row in `runners.pricing`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpipe_flow.config import Config
from mlpipe_flow.workflow import Workflow


def build_plan(
    wf: Workflow,
    config: Config,
    workspace: Path,
    problem: str,
    data: str | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    from mlpipe_flow.display import NullDisplay
    from mlpipe_flow.engine import Engine, RunOptions
    from mlpipe_flow.runners.pricing import DEFAULT_MODEL, estimate_cost, price_for
    from mlpipe_flow.state import DataRef, RunState, StateStore

    engine = Engine(
        wf, config, NullDisplay(), RunOptions(problem=problem, workspace=workspace, data=data, target=target)
    )
    state = StateStore(engine.ws).load() if engine.ws.is_dir() else None
    if state is None or state.problem != problem:
        state = RunState(
            run_id="(plan)",
            problem=problem,
            target=target,
            runner=config.runner,
            workflow=str(wf.root),
            phases=[],
        )
    if data:
        from mlpipe_flow.data import check_data, is_url, mask_url

        check_data(data)
        state.data = DataRef(
            kind="url" if is_url(data) else "file", source=mask_url(data) if is_url(data) else data
        )
    if target:
        state.target = target
    engine.state = state
    model = config.model or DEFAULT_MODEL
    _, known = price_for(model)
    rows: list[dict[str, Any]] = []
    for phase in wf.phases:
        prompt = engine.render_prompt(phase, None)
        tokens_in = (len(prompt) + len(wf.roles[phase.agent])) // 4
        tokens_out = phase.token_estimate
        rows.append(
            {
                "phase": phase.id,
                "name": phase.name,
                "prompt_chars": len(prompt),
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "cost_usd": round(estimate_cost(model, tokens_in, tokens_out), 6),
                "budget_usd": phase.budget_usd,
            }
        )
    return {
        "model": model,
        "priced_as_known": known,
        "phases": rows,
        "total_tokens_in": sum(r["tokens_in"] for r in rows),
        "total_tokens_out": sum(r["tokens_out"] for r in rows),
        "total_cost_usd": round(sum(r["cost_usd"] for r in rows), 6),
        "budget_usd": config.budget_usd,
    }


def plan_text(plan: dict[str, Any]) -> str:
    note = "" if plan["priced_as_known"] else " (no price for this model: priced as claude-sonnet-4-5)"
    lines = [
        f"plan for model {plan['model']}{note}; nothing is run, nothing spent",
        "estimates: input = prompt characters / 4, output = the phase's token_estimate",
        "",
        f"{'phase':<8} {'name':<24} {'tokens in':>10} {'tokens out':>10} {'est. $':>9}",
    ]
    for r in plan["phases"]:
        lines.append(
            f"{r['phase']:<8} {r['name'][:24]:<24} {r['tokens_in']:>10} {r['tokens_out']:>10} "
            f"{r['cost_usd']:>9.4f}"
        )
    lines.append(
        f"{'total':<8} {'':<24} {plan['total_tokens_in']:>10} {plan['total_tokens_out']:>10} "
        f"{plan['total_cost_usd']:>9.4f}"
    )
    if plan["budget_usd"] is not None:
        lines.append(f"run budget: ${plan['budget_usd']:.2f}")
    return "\n".join(lines)
