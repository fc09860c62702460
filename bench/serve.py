"""Serving benchmark: one run, one model, several servers, the same open-loop load.

    python bench/serve.py [--rate 1000] [--duration 10] [--workspace WS] [--baseline REF]

1. naive     - a FastAPI endpoint predicting one row per request (sklearn predict per call)
2. baseline  - with --baseline REF: the API the built-in agent wrote at git revision REF
               (deployment/api/{main,predictor}.py from that commit's templates, same model)
3. generated - the API the built-in agent writes now (deployment/api/main.py, micro-batching)
4. ceiling   - a FastAPI endpoint returning a constant (the HTTP ceiling on this machine)

Each runs as `uvicorn ... --workers 1` on 127.0.0.1; prints achieved rate and p50/p95/p99 per
server, which predictor the API serves with (its /health), and the ratios generated/naive and
generated/ceiling (achieved rate). Targets: >= 10x naive, >= 0.5x the ceiling, and the gate's
own objective: p95 < 100 ms at 1000 req/s. Without --workspace it builds a telco churn workspace
(the test helper's phase-3 model) and runs the built-in phase 4 on it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

NAIVE = '''
import json
from pathlib import Path
import joblib
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

ROOT = Path(__file__).parent
META = json.loads((ROOT / "artifacts" / "model_meta.json").read_text())
MODEL = joblib.load(ROOT / "artifacts" / "model.joblib")
app = FastAPI()


class Req(BaseModel):
    records: list[dict]


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/predict")
def predict(req: Req):
    frame = pd.DataFrame(req.records, columns=META["feature_columns"])
    return {"predictions": MODEL.predict(frame).tolist()}
'''

CEILING = '''
from fastapi import FastAPI
from fastapi.responses import Response

app = FastAPI()


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/predict")
async def predict():
    return Response(b'{"predictions": [0]}', media_type="application/json")
'''


API_TEMPLATES = "src/mlpipe_flow/builtin/templates/deployment/api"


def wait_health(port: int, server, timeout: float = 90) -> dict:  # type: ignore[no-untyped-def,type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise SystemExit(f"server exited: {server.log_tail(5)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return json.loads(r.read())  # type: ignore[no-any-return]
        except OSError:
            time.sleep(0.25)
    raise SystemExit("server did not answer /health")


def baseline_workspace(ws: Path, dest: Path, ref: str) -> Path:
    """`ws` with the API files of git revision `ref` (the same model, data and features)."""
    dest.mkdir()
    for entry in ws.iterdir():
        if entry.name != "deployment":
            (dest / entry.name).symlink_to(entry)
    shutil.copytree(ws / "deployment", dest / "deployment",
                    ignore=shutil.ignore_patterns("__pycache__"))
    api = dest / "deployment" / "api"
    for name in ("main.py", "predictor.py"):
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:{API_TEMPLATES}/{name}"],
                              capture_output=True, text=True, check=True).stdout
        (api / name).write_text(text)
    return dest


def measure(name: str, app: str, cwd: Path, bodies: list[bytes], args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from mlpipe_flow import proc
    from mlpipe_flow.checks.loadgen import run_load

    port = proc.free_port()
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--log-level", "warning"]
    env = proc.scrubbed_env(extra={"PYTHONPATH": str(cwd)})
    with proc.start_server(argv, cwd=cwd, log_path=cwd / f".bench-{name}.log", env=env) as srv:
        health = wait_health(port, srv)
        res = run_load("127.0.0.1", port, "/predict", bodies, rate=args.rate,
                       duration_s=args.duration, warmup_s=args.warmup, connections=128)
    served_by = f"  [{health['predictor']}]" if "predictor" in health else ""
    print(f"{name:10s} achieved {res.achieved_rps:7.1f} req/s (served {res.served_rps:7.1f})  "
          f"p50 {res.p50_ms:8.1f} ms  "
          f"p95 {res.p95_ms:8.1f} ms  p99 {res.p99_ms:8.1f} ms  errors {res.errors}/{res.sent}"
          f"{served_by}", flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--workspace", type=Path)
    ap.add_argument("--baseline", metavar="REF",
                    help="also serve the API of this git revision (e.g. HEAD~1) on the same model")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-") as tmp:
        ws = args.workspace
        if ws is None:
            import ml_workspace

            ws = ml_workspace.built(Path(tmp) / "ws", ["phase4"])
        naive_dir = Path(tmp) / "naive"
        naive_dir.mkdir()
        (naive_dir / "artifacts").symlink_to(ws / "artifacts")
        (naive_dir / "naive_app.py").write_text(NAIVE)
        (naive_dir / "ceiling_app.py").write_text(CEILING)
        import pandas as pd

        meta = json.loads((ws / "artifacts" / "model_meta.json").read_text())
        frame = pd.read_csv(ws / "data" / "splits" / "test.csv").head(500)[meta["feature_columns"]]
        bodies = [json.dumps({"records": [r]}).encode()
                  for r in json.loads(frame.to_json(orient="records"))]
        print(f"open-loop {args.rate:.0f} req/s for {args.duration:.0f} s after "
              f"{args.warmup:.0f} s warm-up, one uvicorn worker each", flush=True)
        naive = measure("naive", "naive_app:app", naive_dir, bodies, args)
        if args.baseline:
            base_ws = baseline_workspace(ws, Path(tmp) / "baseline", args.baseline)
            measure("baseline", "deployment.api.main:app", base_ws, bodies, args)
        gen = measure("generated", "deployment.api.main:app", ws, bodies, args)
        ceil = measure("ceiling", "ceiling_app:app", naive_dir, bodies, args)
    # ratios of the rate each server actually served over the whole run: an overloaded naive
    # server answers nothing inside the measured window once its backlog exceeds the timeout,
    # so its measured-window rate (0) would make the ratio meaningless
    r_naive = gen.served_rps / max(naive.served_rps, 1e-9)
    r_ceil = gen.served_rps / max(ceil.served_rps, 1e-9)
    print(f"generated/naive   served rate x{r_naive:.1f} (target >= 10); p95 naive "
          f"{naive.p95_ms:.0f} ms, generated {gen.p95_ms:.0f} ms")
    print(f"generated/ceiling served rate x{r_ceil:.2f} (target >= 0.5); p95 ceiling "
          f"{ceil.p95_ms:.0f} ms")
    slo = gen.p95_ms < 100 and gen.achieved_rps >= 0.95 * args.rate and gen.errors == 0
    print(f"generated p95 {gen.p95_ms:.1f} ms at {gen.achieved_rps:.0f} req/s: objective "
          f"(p95 < 100 ms, >= 95% of {args.rate:.0f} req/s, no errors) "
          f"{'met' if slo else 'MISSED'}")
    return 0 if r_naive >= 10 and r_ceil >= 0.5 and slo else 1


if __name__ == "__main__":
    sys.exit(main())
