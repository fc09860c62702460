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
