"""What run memory adds to a phase, with 1,000 past runs in the database.

Fills a fresh database (MLPIPE_HOME in a temporary folder) with 1,000 past runs of 6 phases
each (attempts, artifact hashes, pattern excerpts) through the same API the engine uses, then:

- memory per phase: similar_patterns + record_attempt + record_phase_passed (reading the
  phase's excerpts from a real workspace), median over many phases;
- a phase without memory: one real phase (the fake agent through the command runner, then the
  gate) run by the engine with memory off, median over a few runs;
- the same phase with memory on, for comparison.

Prints the medians and the ratio of memory's time to the phase's. Target: memory adds < 50 ms.
Usage: python bench/memory.py [RUNS]
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
FAKE_AGENT = REPO / "tests" / "fake_agent.py"
WORDS = [
    "churn", "fraud", "demand", "forecast", "price", "credit", "default", "click-through",
    "conversion", "retention", "energy", "load", "sensor", "anomaly", "failure", "maintenance",
    "lifetime", "value", "upsell", "spam", "sentiment", "readmission", "delivery", "time",
    "inventory", "claims", "risk", "concrete", "strength", "yield",
]


def seed_workflow(dest: Path) -> Path:
    """The default phases and prompts with the seed's gates (as the engine tests use)."""
    dest.mkdir(parents=True)
    for name, src in (("phases", REPO / "phases"), ("prompts", REPO / "prompts"),
                      ("gates", REPO / "tests" / "fixtures" / "seed-gates")):
        (dest / name).symlink_to(src)
    return dest


def workspace(dest: Path, workflow: Path) -> Path:
    dest.mkdir(parents=True)
    (dest / "mlpipe.yaml").write_text(f"runner: command\ncommand: '{sys.executable} {FAKE_AGENT} "
                                      f"{{task_file}}'\nworkflow: {workflow}\n")
    return dest


def fill(db: object, wf: object, runs: int) -> None:
    rng = random.Random(7)
    excerpt = "\n".join(f"line {i}: " + " ".join(rng.choices(WORDS, k=8)) for i in range(50))
    for n in range(runs):
        problem = "predict " + " ".join(rng.sample(WORDS, 3)) + f" for business unit {n % 17}"
        run_id = f"past-{n:05d}"
        db.start_run(run_id, problem, f"/srv/ws/{n}", "builtin", None, 0)  # type: ignore[attr-defined]
        for phase in wf.phases:  # type: ignore[attr-defined]
            db.record_attempt({"run_id": run_id, "phase": phase.id, "attempt": 1,  # type: ignore[attr-defined]
                               "started": "2026-01-01T00:00:00+00:00", "runner": "builtin",
                               "prompt_sha256": f"{n:064x}", "tokens_in": 5000, "tokens_out": 900,
                               "cost_usd": 0.05, "duration_s": 30.0, "agent_status": "ok",
                               "gate_passed": 1, "gate_evidence": '[{"id": "x", "status": "passed"}]'})
            arts = {f"{phase.id}/file{i}.py": f"{n * 10 + i:064x}" for i in range(6)}
            pats = [(ex.title, excerpt) for ex in phase.memory]
            db.record_phase_passed(run_id, phase.id, 1, problem, arts, pats)  # type: ignore[attr-defined]
        db.finish_run(run_id, "passed", 100)  # type: ignore[attr-defined]


def time_engine_phase(wf: object, root: Path, memory: bool, n: int, tag: str = "") -> list[float]:
    from mlpipe_flow.config import load_config
    from mlpipe_flow.display import NullDisplay
    from mlpipe_flow.engine import Engine, RunOptions

    times = []
    for i in range(n):
        ws = workspace(root / f"{'mem' if memory else 'nomem'}{tag}-{i}", Path(wf.root))  # type: ignore[attr-defined]
        config = load_config(ws, {"memory": memory})
        opts = RunOptions(problem="predict churn demand for business unit 3", workspace=ws,
                          phase="phase1")
        t = time.perf_counter()
        Engine(wf, config, NullDisplay(), opts).run()  # type: ignore[arg-type]
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        os.environ["MLPIPE_HOME"] = str(root / "home")
        from mlpipe_flow.display import NullDisplay
        from mlpipe_flow.memory import MemoryDB, RunMemory
        from mlpipe_flow.runners import AgentResult
        from mlpipe_flow.workflow import load_workflow

        wf = load_workflow(seed_workflow(root / "wf"))
        db = MemoryDB.open()
        assert db is not None
        t = time.perf_counter()
        fill(db, wf, runs)
        fill_s = time.perf_counter() - t
        size = db.path.stat().st_size + sum(p.stat().st_size for p in db.path.parent.glob("memory.db-*"))
        print(f"filled {runs} past runs x {len(wf.phases)} phases in {fill_s:.1f}s "
              f"({size / 1e6:.1f} MB)")

        # a real workspace holding every phase's outputs, for the excerpts
        first = time_engine_phase(wf, root, memory=False, n=1, tag="-warm")  # warm-up; also checks it runs
        ws = workspace(root / "full", wf.root)
        os.environ.pop("FAKE_AGENT_LOG", None)
        from mlpipe_flow.config import load_config
        from mlpipe_flow.engine import Engine, RunOptions

        Engine(wf, load_config(ws, {"memory": False}), NullDisplay(),
               RunOptions(problem="predict churn", workspace=ws)).run()

        mem = RunMemory(db, NullDisplay())
        result = AgentResult(status="ok", tokens_in=5000, tokens_out=900, cost_usd=0.05, duration_s=30)
        report = SimpleNamespace(passed=True, checks=[SimpleNamespace(
            id="c", status="passed", message="ok", evidence={"measured": 1})])
        prompt = (ws / ".mlpipe").glob("runs/*/phase3/attempt-1/prompt.md").__next__().read_text()
        per_phase = []
        for i in range(60):
            phase = wf.phases[i % len(wf.phases)]
            state = SimpleNamespace(run_id=f"bench-{i // 6}", problem="predict churn demand for "
                                    "business unit 3", runner="command", model=None, progress=0,
                                    status="running")
            if i % 6 == 0:
                mem.start_run(state, ws)
            t = time.perf_counter()
            mem.similar_patterns(state.problem, phase.id, exclude_run=state.run_id)
            mem.record_attempt(state, phase.id, 1, prompt, result, report, ws)
            mem.record_phase_passed(state, phase, 1, ws, {"a.py": "0" * 64, "b.py": "1" * 64})
            per_phase.append(time.perf_counter() - t)
        assert mem.db is not None, "memory failed during the benchmark"
        db.close()

        without = time_engine_phase(wf, root, memory=False, n=5) + first
        with_mem = time_engine_phase(wf, root, memory=True, n=5)

    mem_ms = statistics.median(per_phase) * 1000
    phase_ms = statistics.median(without) * 1000
    with_ms = statistics.median(with_mem) * 1000
    print(f"memory per phase (similar_patterns + record_attempt + record_phase_passed): "
          f"median {mem_ms:.1f} ms, max {max(per_phase) * 1000:.1f} ms over {len(per_phase)} phases "
          f"(target < 50 ms)")
    print(f"one phase without memory (fake agent + gate, engine):  median {phase_ms:.0f} ms")
    print(f"the same phase with memory on (includes opening the db): median {with_ms:.0f} ms")
    print(f"ratio memory / phase: {mem_ms / phase_ms:.4f}")
    if mem_ms >= 50:
        sys.exit(1)


if __name__ == "__main__":
    main()
