"""Helpers for the built-in agent tests: run phases through the real CLI, build tables."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from conftest import REPO, mlpipe


def run_phases(ws: Path, problem: str, data: str | None, *phases: str,
               extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
    """`mlpipe run PROBLEM --runner builtin --phase P` for each phase; each must pass. The
    run's records go to MLPIPE_HOME `home_of(ws)` unless `env` says otherwise: a later
    `mlpipe gate` on the workspace passes `env=home_of(ws)` to be judged against them."""
    env = env or home_of(ws)
    for i, phase in enumerate(phases):
        args = ["run", problem, "-w", str(ws), "--runner", "builtin", "--phase", phase, *extra]
        if i == 0 and data is not None:
            args += ["--data", data]
        res = mlpipe(*args, timeout=600, env=env)
        assert res.returncode == 0, (phase, res.stdout[-3000:], res.stderr[-2000:])


def home_of(ws: Path) -> dict[str, str]:
    """The MLPIPE_HOME (records, memory) of a workspace built by `run_phases`."""
    return {"MLPIPE_HOME": str(ws.parent / "home")}


def results(ws: Path) -> dict:
    return json.loads((ws / "experiments/results.json").read_text())


def multiclass_csv(path: Path, rows: int = 1500, seed: int = 7) -> Path:
    """Customer segments from spend, visits and channel: three classes, a clear signal."""
    rng = random.Random(seed)
    lines = ["account_id,monthly_spend,visits_per_month,channel,tenure_years,segment"]
    for i in range(rows):
        spend = rng.uniform(5, 300)
        visits = max(0, int(rng.gauss(spend / 25, 2)))
        channel = rng.choice(["web", "store", "phone"])
        tenure = round(rng.uniform(0, 12), 1)
        noisy = spend + rng.gauss(0, 25) + (30 if channel == "store" else 0)
        segment = "bronze" if noisy < 100 else "silver" if noisy < 200 else "gold"
        lines.append(f"A{i:05d},{spend:.2f},{visits},{channel},{tenure},{segment}")
    path.write_text("\n".join(lines) + "\n")
    return path


def workflow_with_load_rate(dest: Path, rate: float) -> Path:
    """The default workflow with phase 4's open-loop load at `rate` req/s.

    The suite runs the gate's own target (1000 req/s, p95 < 100 ms) unless
    MLPIPE_TEST_LOAD_RATE says otherwise, e.g. to see how far a slower machine gets. Every
    other check is the default workflow's own.
    """
    import shutil

    import yaml

    dest.mkdir(parents=True)
    shutil.copytree(REPO / "phases", dest / "phases")
    shutil.copytree(REPO / "prompts", dest / "prompts")
    shutil.copytree(REPO / "gates", dest / "gates")
    gate = yaml.safe_load((dest / "gates" / "phase4.yaml").read_text())
    load = next(c for c in gate["checks"] if c["kind"] == "api_load")
    load["params"]["rate"] = rate
    (dest / "gates" / "phase4.yaml").write_text(yaml.safe_dump(gate, sort_keys=False))
    return dest


PHASES = ("phase1", "phase2", "phase3", "phase4", "phase5", "phase6")


def run_every_phase(ws: Path, problem: str, data: Path, workflow: Path, env: dict[str, str],
                    cpu: Any) -> None:
    """The whole workflow, 0% -> 100%, one `mlpipe run --phase` at a time: phase 4, whose gate
    drives a 1000 req/s load, with the machine to itself (`cpu.alone()`), the others beside
    other tests (`cpu.shared()`)."""
    for i, phase in enumerate(PHASES):
        args = ["run", problem, "-w", str(ws), "--runner", "builtin", "--workflow", str(workflow),
                "--phase", phase, *(["--data", str(data)] if i == 0 else [])]
        with cpu.alone() if phase == "phase4" else cpu.shared():
            res = mlpipe(*args, env=env, timeout=1200)
        assert res.returncode == 0, (phase, res.stdout[-6000:], res.stderr[-3000:])
    state = json.loads((ws / ".mlpipe" / "state.json").read_text())
    assert state["progress"] == 100 and state["status"] == "passed", state
