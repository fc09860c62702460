"""`mlpipe plan` / `run --dry-run` estimate without spending; budget caps per run and phase."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO, mlpipe
from mlpipe_flow.config import load_config
from mlpipe_flow.display import NullDisplay
from mlpipe_flow.engine import Engine, RunOptions
from mlpipe_flow.runners.pricing import estimate_cost
from mlpipe_flow.workflow import load_workflow


def test_plan_prints_tokens_and_cost_per_phase_and_spends_nothing(tmp_path: Path, csv_file: Path) -> None:
    ws = tmp_path / "ws"
    res = mlpipe(
        "plan",
        "predict churn",
        "--data",
        str(csv_file),
        "-w",
        str(ws),
        "--json",
        "--model",
        "claude-opus-4-1",
    )
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert [r["phase"] for r in plan["phases"]] == [f"phase{i}" for i in range(1, 7)]
    p1 = plan["phases"][0]
    prompt = mlpipe("render", "phase1", "predict churn", "--data", str(csv_file), "-w", str(ws)).stdout
    role = (REPO / "prompts" / "roles" / "ml-engineer.md").read_text()
    assert p1["tokens_in"] == (len(prompt) + len(role)) // 4
    assert p1["cost_usd"] == round(estimate_cost("claude-opus-4-1", p1["tokens_in"], p1["tokens_out"]), 6)
    assert plan["total_cost_usd"] == round(sum(r["cost_usd"] for r in plan["phases"]), 6) > 0
    assert not ws.exists()

    res = mlpipe(
        "run",
        "predict churn",
        "--data",
        str(csv_file),
        "-w",
        str(ws),
        "--dry-run",
        "--runner",
        "anthropic",
        "--budget-usd",
        "3",
    )
    assert res.returncode == 0, res.stderr
    assert "phase6" in res.stdout and "total" in res.stdout and "run budget: $3.00" in res.stdout
    assert not ws.exists()


def test_unknown_model_is_priced_as_default_and_says_so(tmp_path: Path) -> None:
    res = mlpipe("plan", "predict churn", "-w", str(tmp_path), "--model", "my-own-model")
    assert res.returncode == 0, res.stderr
    assert "no price for this model: priced as claude-sonnet-4-5" in res.stdout


def test_budget_left_takes_the_tighter_cap(tmp_path: Path) -> None:
    wf = load_workflow(None)
    phase = wf.phase("phase1").model_copy(update={"budget_usd": 1.0})
    config = load_config(tmp_path, {"budget_usd": 5.0}, environ={})
    engine = Engine(wf, config, NullDisplay(), RunOptions(problem="p", workspace=tmp_path))
    assert engine.budget_left(phase, 0.25) == (0.75, "the phase1 budget of $1.00")
    engine.spent_usd = 4.5
    assert engine.budget_left(phase, 0.25) == (0.5, "the run budget of $5.00")
    engine.spent_usd = 6.0
    assert engine.budget_left(phase, 0.0)[0] == 0.0
    none = Engine(
        wf, load_config(tmp_path, {}, environ={}), NullDisplay(), RunOptions(problem="p", workspace=tmp_path)
    )
    assert none.budget_left(wf.phase("phase1"), 0.0) == (None, "")


def test_plan_estimates_a_phase_from_its_past_runs_in_memory(tmp_path: Path) -> None:
    """Past runs of phase3 (any problem) recorded their usage: the plan takes the median of what
    the phase took per run (all its attempts) and says so; a run whose runner reported no usage
    (the built-in agent) is left out; phases with no history say they assume one turn."""
    from mlpipe_flow.memory import MemoryDB
    from mlpipe_flow.runners.pricing import usage_cost

    db = MemoryDB.open()
    assert db is not None
    usage = {"r1": [(10, 1000, 500, 20_000)], "r2": [(12, 2000, 700, 30_000), (8, 1000, 300, 10_000)],
             "r3": [(30, 4000, 900, 90_000)], "builtin": [(0, 0, 0, 0)]}
    for run_id, attempts in usage.items():
        db.start_run(run_id, f"problem {run_id}", "/ws", "claude", "claude-sonnet-4-5", 0)
        for n, (turns, tin, tout, cache) in enumerate(attempts, 1):
            db.record_attempt({"run_id": run_id, "phase": "phase3", "attempt": n, "started": f"t{n}",
                               "prompt_sha256": "0" * 64, "turns": turns, "tokens_in": tin,
                               "tokens_out": tout, "cache_read_tokens": cache,
                               "cache_write_tokens": 100 if tin else 0,
                               "cost_usd": 0.5, "runner": "claude"})
    db.close()
    res = mlpipe("plan", "predict churn", "-w", str(tmp_path / "ws"), "--json", "--model", "claude-haiku-4-5")
    assert res.returncode == 0, res.stderr
    rows = {r["phase"]: r for r in json.loads(res.stdout)["phases"]}
    p3 = rows["phase3"]
    # per run: r1 (10, 1000, 500, 20k), r2 (20, 3000, 1000, 40k), r3 (30, 4000, 900, 90k)
    got = (p3["turns"], p3["tokens_in"], p3["tokens_out"], p3["cache_read_tokens"])
    assert got == (20, 3000, 900, 40_000)
    costs = sorted(usage_cost("claude-haiku-4-5", {"input_tokens": i, "output_tokens": o,
                                                   "cache_read_input_tokens": c,
                                                   "cache_creation_input_tokens": w})
                   for i, o, c, w in ((1000, 500, 20_000, 100), (3000, 1000, 40_000, 200),
                                      (4000, 900, 90_000, 100)))
    assert p3["cost_usd"] == round(costs[1], 6)
    assert p3["cost_usd_range"] == [round(costs[0], 6), round(costs[2], 6)]
    assert p3["basis"]["kind"] == "past-runs" and p3["basis"]["runs"] == 3
    assert sorted(p3["basis"]["run_ids"]) == ["r1", "r2", "r3"]
    p1 = rows["phase1"]
    assert p1["basis"] == {"kind": "one-turn", "turns_assumed": 1, "max_turns": 40,
                           "text": p1["basis"]["text"]} and p1["turns"] == 1
    assert p1["cost_usd_range"][0] == p1["cost_usd"] < p1["cost_usd_range"][1]

    res = mlpipe("plan", "predict churn", "-w", str(tmp_path / "ws"))
    assert res.returncode == 0, res.stderr
    line3 = next(line for line in res.stdout.splitlines() if line.startswith("phase3"))
    assert line3.endswith("from 3 past runs of phase3 (median)") and " 20 " in line3, line3
    line1 = next(line for line in res.stdout.splitlines() if line.startswith("phase1"))
    assert "1 turn assumed (40 turns: up to" in line1
    assert "past runs: the median of what the phase took" in res.stdout
    assert "1 turn assumed: input = prompt characters / 4" in res.stdout
