"""Run the whole offline workflow on every table of the corpus (tests/corpus.py) and print,
per table: how far it got, seconds per phase (agent + gate), the model phase 3 chose, its test
score against the gate's baseline, and the p95 the load check measured at 1000 req/s. A table
the corpus expects to be refused must be refused before anything runs: exit 2, one line.

    python bench/corpus.py [--only NAME ...] [--to phaseN] [--keep DIR] [--json FILE]

Each run: `mlpipe run PROBLEM --data DATA --target T --runner builtin --no-memory` in a fresh
workspace (with --to, one `--phase` run per phase up to it). The PostgreSQL table runs on a
server the bench starts (tests/pg_server.py); without one it is skipped and says why. A whole
pass over the corpus takes about three minutes a table on a 2-core machine.
Exit status 0 when every table did what the corpus expects.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from corpus import CORPUS, Case  # noqa: E402


def last_gate(ws: Path, run_id: str, phase: str) -> dict[str, Any]:
    attempts = sorted((ws / ".mlpipe" / "runs" / run_id / phase).glob("attempt-*"),
                      key=lambda p: int(p.name.split("-")[1]))
    if not attempts or not (attempts[-1] / "gate.json").is_file():
        return {}
    return dict(json.loads((attempts[-1] / "gate.json").read_text()))


def run_case(name: str, case: Case, ws: Path, to: str | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "mlpipe_flow", "run", case.problem, "--data", case.data,
           "--workspace", str(ws), "--runner", "builtin", "--no-memory"]
    if case.target:
        cmd += ["--target", case.target]
    started = time.perf_counter()
    if to is None:
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    else:  # phase by phase up to `to`, the data given once
        for i in range(1, int(to.removeprefix("phase")) + 1):
            phase_cmd = cmd + ["--phase", f"phase{i}"]
            if i > 1:
                at = phase_cmd.index("--data")
                del phase_cmd[at:at + 2]
            res = subprocess.run(phase_cmd, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL)
            if res.returncode != 0:
                break
    row: dict[str, Any] = {"name": name, "expect": case.expect, "exit": res.returncode,
                           "seconds": round(time.perf_counter() - started, 1)}
    if case.expect == "refused":
        lines = res.stderr.strip().splitlines()
        row["refusal"] = lines[0] if lines else ""
        row["ok"] = (res.returncode == 2 and len(lines) == 1 and case.refusal in lines[0]
                     and not (ws / ".mlpipe").exists())
        return row
    state_file = ws / ".mlpipe" / "state.json"
    if not state_file.is_file():
        row.update(ok=False, error=(res.stderr.strip().splitlines() or [""])[-1][:200])
        return row
    state = json.loads(state_file.read_text())
    row["progress"] = state["progress"]
    row["phases"] = {}
    for rec in state["phases"]:
        gate = last_gate(ws, state["run_id"], rec["id"])
        row["phases"][rec["id"]] = {"agent_s": round(rec.get("duration_s") or 0.0, 1),
                                    "gate_s": round(gate.get("duration_s") or 0.0, 1),
                                    "attempts": rec.get("attempts"), "status": rec.get("status")}
        for check in gate.get("checks", []):
            if check.get("id") == "api-load":
                ev = check.get("evidence") or {}
                row["p95_ms"] = ev.get("p95_ms")
    results = ws / "experiments" / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        row.update(model=r.get("best_model"), metric=r.get("primary_metric"),
                   test=r.get("test_score"), baseline=r.get("baseline_test_score"))
    row["ok"] = res.returncode == 0 and (to is not None or state["progress"] == 100)
    if not row["ok"]:
        row["error"] = (res.stdout.strip().splitlines() or [""])[-1][:200]
    return row


def show(row: dict[str, Any]) -> str:
    if row["expect"] == "unavailable":
        return f"{row['name']:24s} skipped: {row['refusal']}"
    if row["expect"] == "refused":
        return (f"{row['name']:24s} refused {'OK ' if row['ok'] else 'BAD'} exit {row['exit']}: "
                f"{row.get('refusal', '')[:90]}")
    phases = " ".join(f"{p[-1]}:{v['agent_s'] + v['gate_s']:.0f}s"
                      for p, v in row.get("phases", {}).items())
    score = (f"{row['metric']} {row['test']:.3f} vs {row['baseline']:.3f}"
             if row.get("test") is not None else "")
    p95 = f"p95 {row['p95_ms']:.1f} ms" if row.get("p95_ms") is not None else ""
    return (f"{row['name']:24s} {row.get('progress', 0):3}% {'OK ' if row['ok'] else 'BAD'} "
            f"{row['seconds']:6.0f}s  {phases}  {row.get('model') or '':24s} {score} {p95}"
            + (f"  [{row['error']}]" if row.get("error") else ""))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="the offline workflow over the corpus")
    ap.add_argument("--only", nargs="*", help="these tables only")
    ap.add_argument("--to", choices=[f"phase{i}" for i in range(1, 7)],
                    help="stop after this phase")
    ap.add_argument("--keep", type=Path, help="build the workspaces in this folder and keep them")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    names = args.only or list(CORPUS)
    unknown = [n for n in names if n not in CORPUS]
    if unknown:
        print(f"corpus: no table {unknown[0]!r}; have: {', '.join(CORPUS)}", file=sys.stderr)
        return 2
    root = args.keep or Path(tempfile.mkdtemp(prefix="mlpipe-corpus-"))
    rows = []
    for name in names:
        folder = root / name
        (folder / "data").mkdir(parents=True, exist_ok=True)
        case = CORPUS[name](folder / "data")
        if case.expect == "unavailable":
            row = {"name": name, "expect": case.expect, "refusal": case.refusal, "ok": None}
        else:
            row = run_case(name, case, folder / "ws", args.to)
        rows.append(row)
        print(show(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    ok = sum(r["ok"] is True for r in rows)
    ran = [r for r in rows if r["ok"] is not None]
    skipped = len(rows) - len(ran)
    print(f"{ok} of {len(ran)} tables did what the corpus expects"
          + (f", {skipped} skipped (no server here)" if skipped else "")
          + f" (workspaces in {root})")
    return 0 if ok == len(ran) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
