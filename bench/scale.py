"""How the offline workflow's cost grows with the data: the churn example's table at 7k, 70k,
700k and 2M rows, each run 0% -> 100% with the built-in agent, and per size the seconds of each
phase (agent + gate, every attempt), the total, the peak memory of the whole process tree, the
seconds per 1,000 rows and how far it got.

    python bench/scale.py [--sizes 7000,70000,700000,2000000] [--keep DIR] [--json FILE]
                          [--to phaseN] [--workflow DIR]

Each size: `examples/churn/generate.py --rows N` writes the table (the example's shape: ids,
categoricals, numbers with blanks, numeric text), then `mlpipe run PROBLEM --data it --runner
builtin --no-memory --json` runs in a fresh workspace; the phases' wall times come from the run's
own JSON events (phase_started -> phase_passed/phase_failed, as they arrive), the agent and gate
seconds of the last attempt from its records. Memory: the summed resident set of mlpipe and every
process under it, sampled every 0.5 s with psutil (the tree's peak; the largest single process's
peak, ru_maxrss of the children, beside it).

Targets (issue 10): 2M rows to 100% in under 15 minutes on a 2-core machine, peak memory under
8 GB, seconds per row at 2M no worse than at 70k. Exit status 0 when every size reached 100%
(or --to's phase) and, where both 70k and 2M ran, the targets hold.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from demo import PROBLEM, last_attempt  # noqa: E402

GENERATE = REPO / "examples" / "churn" / "generate.py"
SIZES = (7_000, 70_000, 700_000, 2_000_000)
TARGET_2M_S = 15 * 60.0
TARGET_RSS_GB = 8.0
PHASES = [f"phase{i}" for i in range(1, 7)]


class TreeMemory:
    """Peak of the summed RSS of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        self.pid, self.every_s = pid, every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        try:
            import psutil
        except ImportError:  # the children's ru_maxrss is printed instead
            return
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every_s)


def make_data(rows: int, folder: Path) -> Path:
    out = folder / f"customers_{rows}.csv"
    if not out.is_file():
        subprocess.run([sys.executable, str(GENERATE), "--rows", str(rows), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
    return out


def run_size(rows: int, data: Path, ws: Path, to: str | None,
             workflow: Path | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "mlpipe_flow", "run", PROBLEM, "--data", str(data),
           "--workspace", str(ws), "--runner", "builtin", "--no-memory", "--fresh", "--json"]
    if workflow:  # e.g. a copy (`mlpipe init DIR`) that edits to the checkout cannot change
        cmd += ["--workflow", str(workflow)]
    started = time.perf_counter()
    phase_start: dict[str, float] = {}
    phase_s: dict[str, float] = {}
    log = (ws.parent / f"run_{rows}.jsonl")
    ws.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    err: list[str] = []
    drain = threading.Thread(target=lambda: err.extend(proc.stderr or []), daemon=True)
    drain.start()
    with TreeMemory(proc.pid) as mem, log.open("w") as out:
        for line in proc.stdout or []:
            out.write(line)
            now = time.perf_counter() - started
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            kind, phase = ev.get("event"), ev.get("phase")
            if kind == "phase_started" and phase:
                phase_start[phase] = now
            elif kind in ("phase_passed", "phase_failed") and phase in phase_start:
                phase_s[phase] = round(now - phase_start[phase], 1)
                print(f"  {rows:>9,} rows: {phase} {kind.split('_')[1]} in {phase_s[phase]:.0f} s",
                      flush=True)
                if to and phase == to:
                    proc.terminate()  # --to: the phases after it are not measured
    proc.wait()
    drain.join(timeout=5)
    total = time.perf_counter() - started
    row: dict[str, Any] = {"rows": rows, "exit": proc.returncode, "total_s": round(total, 1),
                           "phases_s": phase_s, "peak_rss_gb": round(mem.peak / 1e9, 2),
                           "max_child_rss_gb": round(
                               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 2),
                           "s_per_1k_rows": round(total / rows * 1000, 3), "workspace": str(ws)}
    state_file = ws / ".mlpipe" / "state.json"
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        row["progress"] = state["progress"]
        detail: dict[str, Any] = {}
        for rec in state["phases"]:
            attempt = last_attempt(ws, state["run_id"], rec["id"])
            gate_file = attempt / "gate.json" if attempt else None
            gate = json.loads(gate_file.read_text()) if gate_file and gate_file.is_file() else {}
            slow = sorted(((c.get("duration_s") or 0.0, c.get("id")) for c in gate.get("checks", [])),
                          reverse=True)[:3]
            detail[rec["id"]] = {"agent_s": round(rec.get("duration_s") or 0.0, 1),
                                 "gate_s": round(gate.get("duration_s") or 0.0, 1),
                                 "attempts": rec.get("attempts"),
                                 "slowest_checks": {k: round(v, 1) for v, k in slow}}
        row["detail"] = detail
    else:
        row["progress"] = 0
    results = ws / "experiments" / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        row.update(model=r.get("best_model"), selection=r.get("model_selection"),
                   test=r.get("test_score"), baseline=r.get("baseline_test_score"))
    if proc.returncode not in (0, -15) or row["progress"] < 100 and not to:
        last = "".join(err).strip().splitlines()
        row["error"] = last[-1][:300] if last else f"exit {proc.returncode}"
    return row


def show(row: dict[str, Any]) -> str:
    phases = " ".join(f"{row['phases_s'].get(p, float('nan')):6.0f}" for p in PHASES)
    return (f"{row['rows']:>9,} {phases} {row['total_s']:7.0f} {row['peak_rss_gb']:7.2f} "
            f"{row['s_per_1k_rows']:8.3f} {row['progress']:4}%  {row.get('model') or ''}"
            + (f"  [{row['error']}]" if row.get("error") else ""))


HEADER = (f"{'rows':>9s} " + " ".join(f"{'p' + p[-1] + ' s':>6s}" for p in PHASES)
          + f" {'total s':>7s} {'peak GB':>7s} {'s/1k row':>8s} {'got':>5s}  model")


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, where the sizes they compare were run."""
    by = {r["rows"]: r for r in rows}
    out = []
    big = by.get(2_000_000)
    if big:
        out.append(f"2M rows in {big['total_s']:.0f} s (target < {TARGET_2M_S:.0f} s): "
                   f"{'OK' if big['total_s'] < TARGET_2M_S else 'OVER'}")
    peak = max(r["peak_rss_gb"] for r in rows)
    out.append(f"peak memory {peak:.2f} GB (target < {TARGET_RSS_GB:g} GB): "
               f"{'OK' if peak < TARGET_RSS_GB else 'OVER'}")
    if big and 70_000 in by:
        a, b = by[70_000]["s_per_1k_rows"], big["s_per_1k_rows"]
        out.append(f"seconds per 1k rows: {a:.3f} at 70k, {b:.3f} at 2M: "
                   f"{'OK' if b <= a else 'WORSE'}")
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="the offline workflow's cost by table size")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)),
                    help="comma-separated row counts (default: %(default)s)")
    ap.add_argument("--keep", type=Path, help="build data and workspaces here and keep them")
    ap.add_argument("--json", type=Path, help="also write the rows here (JSON)")
    ap.add_argument("--to", choices=PHASES, help="stop each run after this phase")
    ap.add_argument("--workflow", type=Path, help="run this workflow (default: the built-in)")
    args = ap.parse_args(argv)
    try:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        print(f"scale: --sizes {args.sizes!r}: give row counts like 7000,70000", file=sys.stderr)
        return 2
    root = args.keep or Path(tempfile.mkdtemp(prefix="mlpipe-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    print(HEADER, flush=True)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        data = make_data(n, root)
        row = run_size(n, data, root / f"ws_{n}", args.to, args.workflow)
        rows.append(row)
        print(show(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    for line in verdict(rows):
        print(line)
    print(f"(data and workspaces in {root})")
    reached = all(r["progress"] == 100 or (args.to and r["exit"] in (0, -15)) for r in rows)
    targets = all(not line.endswith(("OVER", "WORSE")) for line in verdict(rows))
    return 0 if reached and targets else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
