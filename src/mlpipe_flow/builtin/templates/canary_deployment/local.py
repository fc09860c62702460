"""A canary on one machine: two API instances and the weighted router in front of them.

    python canary_deployment/local.py [--port 8080] [--stable-model DIR] [--canary-model DIR]

The stable instance serves the previous champion, the canary instance the current one (from
the registry; --stable-model / --canary-model give model folders instead), each started with
MODEL_DIR and MODEL_TRACK (stable | canary: the `track` label the API puts on its metrics).
The router (router.py) listens on --port with a canary weight of 0. It prints the URLs and a
Prometheus scrape config for the two instances as JSON, then runs until Ctrl-C, which stops all
three. In another terminal, with Prometheus scraping them:

    python canary_deployment/canary.py --router http://127.0.0.1:8080 --prometheus URL
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess  # nosec B404 - fixed argv, no shell
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registry_models() -> tuple[Path, Path]:
    """(previous champion, current champion) model folders from the registry."""
    from continuous_training import registry

    champ = registry.champion() or {}
    history = list(champ.get("history") or [])
    if not champ.get("version") or not history:
        raise SystemExit("local: the registry has no previous champion to compare with; give "
                         "--stable-model and --canary-model")
    folder = registry.REGISTRY / "versions"
    return folder / str(history[-1]), folder / str(champ["version"])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"local: {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # nosec B310 - our own instance
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"local: {url} did not answer within {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="two API instances and a weighted router")
    ap.add_argument("--port", type=int, default=8080, help="the router's port")
    ap.add_argument("--stable-model", type=Path)
    ap.add_argument("--canary-model", type=Path)
    args = ap.parse_args(argv)
    if args.stable_model and args.canary_model:
        models = {"stable": args.stable_model, "canary": args.canary_model}
    else:
        stable, canary = registry_models()
        models = {"stable": args.stable_model or stable, "canary": args.canary_model or canary}
    procs: list[subprocess.Popen[bytes]] = []
    ports = {track: free_port() for track in models}
    try:
        for track, model in models.items():
            env = {**os.environ, "MODEL_DIR": str(Path(model).resolve()), "MODEL_TRACK": track}
            procs.append(subprocess.Popen(  # nosec B603
                [sys.executable, "-m", "uvicorn", "deployment.api.main:app", "--host",
                 "127.0.0.1", "--port", str(ports[track]), "--log-level", "warning"],
                cwd=ROOT, env=env))
            wait_ready(f"http://127.0.0.1:{ports[track]}/health", procs[-1])
        procs.append(subprocess.Popen(  # nosec B603
            [sys.executable, str(Path(__file__).with_name("router.py")),
             "--stable", f"http://127.0.0.1:{ports['stable']}",
             "--canary", f"http://127.0.0.1:{ports['canary']}", "--port", str(args.port),
             "--weight", "0"], cwd=ROOT))
        wait_ready(f"http://127.0.0.1:{args.port}/-/canary-weight", procs[-1])
        print(json.dumps({
            "router": f"http://127.0.0.1:{args.port}",
            "instances": {t: f"http://127.0.0.1:{p}" for t, p in ports.items()},
            "models": {t: str(m) for t, m in models.items()},
            "prometheus_scrape_config": {"job_name": "model-api", "static_configs": [
                {"targets": [f"127.0.0.1:{p}" for p in ports.values()]}]}}), flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("local: a process exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
