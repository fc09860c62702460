"""Time phases 1-3 of the built-in agent on the Telco churn data, gates included.

    python bench/phases123.py [--data PATH] [--keep DIR]

Runs `mlpipe run "predict churn" --runner builtin --phase phaseN` for N = 1, 2, 3 in a fresh
workspace (each phase: the agent's work, then its gate) and prints the time of each and the
total. Target: under 60 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REAL_TELCO = REPO.parent / "shared" / "datasets" / "telco_churn.csv"


def telco() -> Path:
    """The real Telco table where it is beside the checkout, else the tests' Telco-shaped one."""
    if REAL_TELCO.is_file():
        return REAL_TELCO
    sys.path.insert(0, str(REPO / "tests"))
    from datagen import data_file

    return data_file("telco_churn.csv")
TARGET_S = 60.0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="time phases 1-3 of the built-in agent")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--problem", default="predict churn")
    ap.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = ap.parse_args(argv)
    args.data = args.data or telco()
    if not args.data.is_file():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    ws = args.keep or Path(tempfile.mkdtemp(prefix="mlpipe-bench-")) / "ws"
    times: dict[str, float] = {}
    for i, phase in enumerate(("phase1", "phase2", "phase3")):
        cmd = [sys.executable, "-m", "mlpipe_flow", "run", args.problem, "-w", str(ws),
               "--runner", "builtin", "--phase", phase]
        if i == 0:
            cmd += ["--data", str(args.data), "--fresh"]
        started = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        times[phase] = time.perf_counter() - started
        if res.returncode != 0:
            print(res.stdout[-2000:], res.stderr[-2000:], sep="\n", file=sys.stderr)
            print(f"{phase} failed (exit {res.returncode})", file=sys.stderr)
            return 1
        print(f"{phase}: {times[phase]:6.1f} s (agent + gate)")
    total = sum(times.values())
    results = json.loads((ws / "experiments/results.json").read_text())
    print(f"total phases 1-3: {total:.1f} s (target < {TARGET_S:.0f} s) "
          f"{'OK' if total < TARGET_S else 'OVER'}")
    print(f"test {results['primary_metric']}: {results['test_score']:.4f} "
          f"(best: {results['best_model']}) vs baseline {results['baseline_test_score']:.4f}")
    print(json.dumps({"phases_s": {k: round(v, 2) for k, v in times.items()},
                      "total_s": round(total, 2), "workspace": str(ws)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
