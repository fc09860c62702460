"""`mlpipe plan` / `run --dry-run`: every phase prompt rendered, tokens and cost estimated,
nothing run and nothing spent.

Each phase is estimated on one of two stated bases:
- **past runs**: when memory holds past runs of the same phase (same phase id, any problem)
  whose runner recorded usage, the median of what the phase took per run (all its attempts:
  turns, input, output, cache reads and writes), repriced for the plan's model; the range is
  their cheapest and dearest run.
- **one turn**: otherwise, input = the rendered prompt plus the role prompt at characters / 4,
  output = the phase's `token_estimate`, one turn. A multi-turn agent costs more; the range's
  top re-reads the prompt, uncached, on each of the phase's `max_turns` turns.
Both are priced with the model's row in `runners.pricing`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from statistics import median
from typing import Any

from mlpipe_flow.config import Config
from mlpipe_flow.workflow import Phase, Workflow

HISTORY_RUNS = 20  # the most recent past runs of a phase an estimate is taken from


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
    from mlpipe_flow.runners.pricing import DEFAULT_MODEL, price_for
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
    history, memory_note = past_usage(config.memory, [p.id for p in wf.phases])
    rows: list[dict[str, Any]] = []
    for phase in wf.phases:
        prompt = engine.render_prompt(phase, None)
        tokens_in = (len(prompt) + len(wf.roles[phase.agent])) // 4
        past = history.get(phase.id, [])
        estimate = from_history(phase, past, model) if past else one_turn(phase, tokens_in, model)
        rows.append({"phase": phase.id, "name": phase.name, "prompt_chars": len(prompt), **estimate,
                     "budget_usd": phase.budget_usd})
    return {
        "model": model,
        "priced_as_known": known,
        "memory": memory_note,
        "phases": rows,
        "total_tokens_in": sum(r["tokens_in"] for r in rows),
        "total_tokens_out": sum(r["tokens_out"] for r in rows),
        "total_cost_usd": round(sum(r["cost_usd"] for r in rows), 6),
        "total_cost_usd_range": [round(sum(r["cost_usd_range"][i] for r in rows), 6) for i in (0, 1)],
        "budget_usd": config.budget_usd,
    }


def past_usage(enabled: bool, phase_ids: list[str]) -> tuple[dict[str, list[dict[str, Any]]], str | None]:
    """Each phase's usage in its recent past runs, and a note when memory could not be read."""
    from mlpipe_flow.errors import StateError
    from mlpipe_flow.memory import MemoryDB

    if not enabled:
        return {}, "memory is off: no past runs read"
    try:
        db = MemoryDB.open(create=False)
    except StateError as e:
        return {}, f"past runs not read ({e})"
    if db is None:
        return {}, None
    try:
        return {pid: db.phase_usage(pid, HISTORY_RUNS) for pid in phase_ids}, None
    except Exception as e:  # sqlite3.Error: a plan is still worth printing without history
        return {}, f"past runs not read ({type(e).__name__}: {e})"
    finally:
        db.close()


def from_history(phase: Phase, past: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The median of the phase's past runs, repriced for `model`; the range is min-max."""
    from mlpipe_flow.runners.pricing import usage_cost

    costs = [usage_cost(model, {"input_tokens": r["tokens_in"], "output_tokens": r["tokens_out"],
                                "cache_creation_input_tokens": r["cache_write_tokens"],
                                "cache_read_input_tokens": r["cache_read_tokens"]}) for r in past]

    def mid(key: str) -> int:
        return round(median(r[key] for r in past))

    n = len(past)
    return {
        "turns": mid("turns") or None,  # None: the runner did not report turns
        "tokens_in": mid("tokens_in"), "tokens_out": mid("tokens_out"),
        "cache_read_tokens": mid("cache_read_tokens"), "cache_write_tokens": mid("cache_write_tokens"),
        "cost_usd": round(median(costs), 6), "cost_usd_range": [round(min(costs), 6), round(max(costs), 6)],
        "basis": {"kind": "past-runs", "runs": n, "run_ids": [r["run_id"] for r in past],
                  "runners": sorted({r["runner"] or "-" for r in past}),
                  "attempts": round(median(r["attempts"] for r in past), 1),
                  "text": f"from {n} past run{'s' if n != 1 else ''} of {phase.id} (median)"},
    }


def one_turn(phase: Phase, tokens_in: int, model: str) -> dict[str, Any]:
    """One pass over the prompt; the top of the range re-reads it on every allowed turn."""
    from mlpipe_flow.runners.pricing import estimate_cost

    tokens_out = phase.token_estimate
    low = estimate_cost(model, tokens_in, tokens_out)
    high = estimate_cost(model, tokens_in * phase.max_turns, tokens_out)
    return {
        "turns": 1, "tokens_in": tokens_in, "tokens_out": tokens_out,
        "cache_read_tokens": 0, "cache_write_tokens": 0,
        "cost_usd": round(low, 6), "cost_usd_range": [round(low, 6), round(high, 6)],
        "basis": {"kind": "one-turn", "turns_assumed": 1, "max_turns": phase.max_turns,
                  "text": f"1 turn assumed ({phase.max_turns} turns: up to {high / low:.0f}x)"
                  if low else "1 turn assumed"},
    }


def plan_text(plan: dict[str, Any]) -> str:
    note = "" if plan["priced_as_known"] else " (no price for this model: priced as claude-sonnet-4-5)"
    lines = [
        f"plan for model {plan['model']}{note}; nothing is run, nothing spent",
        "",
        f"{'phase':<8} {'name':<22} {'turns':>5} {'tokens in':>10} {'tokens out':>10} {'cache read':>10} "
        f"{'est. $':>8}  {'range $':<15}  basis",
    ]

    def money(lo_hi: list[float]) -> str:
        return f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}"

    for r in plan["phases"]:
        turns = "-" if r["turns"] is None else str(r["turns"])
        lines.append(
            f"{r['phase']:<8} {r['name'][:22]:<22} {turns:>5} {r['tokens_in']:>10,} {r['tokens_out']:>10,} "
            f"{r['cache_read_tokens']:>10,} {r['cost_usd']:>8.4f}  {money(r['cost_usd_range']):<15}  "
            f"{r['basis']['text']}"
        )
    lines.append(
        f"{'total':<8} {'':<22} {'':>5} {plan['total_tokens_in']:>10,} {plan['total_tokens_out']:>10,} "
        f"{'':>10} {plan['total_cost_usd']:>8.4f}  {money(plan['total_cost_usd_range'])}"
    )
    kinds = {r["basis"]["kind"] for r in plan["phases"]}
    notes = []
    if "past-runs" in kinds:
        notes.append("past runs: the median of what the phase took per past run in memory (all its "
                     f"attempts, as the runner reported them), priced for {plan['model']}; the range "
                     "is the cheapest and the dearest run")
    if "one-turn" in kinds:
        notes.append("1 turn assumed: input = prompt characters / 4, output = the phase's token_estimate. "
                     "A multi-turn agent re-reads its context every turn: the range's top re-reads the "
                     "prompt, uncached, on each of the phase's max_turns turns (tool output not counted)")
    if plan.get("memory"):
        notes.append(plan["memory"])
    lines.append("")
    lines += [line for n in notes for line in textwrap.wrap(n, 100, subsequent_indent="  ")]
    if plan["budget_usd"] is not None:
        lines.append(f"run budget: ${plan['budget_usd']:.2f}")
    return "\n".join(lines)
