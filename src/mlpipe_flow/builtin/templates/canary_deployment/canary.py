"""Canary rollout of a new model version: 5% -> 25% -> 50% -> 100% of traffic, with automatic
rollback when the canary degrades.

    python canary_deployment/canary.py --prometheus http://prometheus:9090 [--dry-run]

At each step the canary's traffic weight is set (`set_weight`, e.g. an Istio VirtualService or
an ingress canary annotation), the step soaks for --soak-s, then the canary's error rate and p95
latency are read from Prometheus and compared with the stable version's. Degradation (error
rate above the stable one by more than --max-error-increase, or p95 above --max-p95-ratio times
the stable p95) rolls back: weight 0 and `rollback/rollback.py`.
"""

from __future__ import annotations

import argparse
import json
import subprocess  # nosec B404 - fixed argv, no shell
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

STEPS = (5, 25, 50, 100)
ROOT = Path(__file__).resolve().parents[1]


def query(prometheus: str, expr: str) -> float:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:  # nosec B310 - configured URL
        data = json.load(resp)["data"]["result"]
    return float(data[0]["value"][1]) if data else 0.0


def health(prometheus: str, track: str) -> dict[str, float]:
    sel = f'track="{track}"'
    errors = query(prometheus, f'sum(rate(mlpipe_requests_total{{{sel},status=~"5.."}}[5m])) / '
                               f'clamp_min(sum(rate(mlpipe_requests_total{{{sel}}}[5m])), 1e-9)')
    p95 = query(prometheus, "histogram_quantile(0.95, sum by (le) (rate("
                            f"mlpipe_request_latency_seconds_bucket{{{sel}}}[5m])))")
    return {"error_rate": errors, "p95_s": p95}


def degraded(canary: dict[str, float], stable: dict[str, float], max_error_increase: float,
             max_p95_ratio: float) -> str | None:
    if canary["error_rate"] - stable["error_rate"] > max_error_increase:
        return f"error rate {canary['error_rate']:.3%} vs stable {stable['error_rate']:.3%}"
    if stable["p95_s"] > 0 and canary["p95_s"] > max_p95_ratio * stable["p95_s"]:
        return f"p95 {canary['p95_s'] * 1000:.0f} ms vs stable {stable['p95_s'] * 1000:.0f} ms"
    return None


def rollout(set_weight: Callable[[int], None], observe: Callable[[str], dict[str, float]],
            soak_s: float, max_error_increase: float = 0.01,
            max_p95_ratio: float = 1.5) -> dict[str, object]:
    for weight in STEPS:
        set_weight(weight)
        time.sleep(soak_s)
        why = degraded(observe("canary"), observe("stable"), max_error_increase, max_p95_ratio)
        if why:
            set_weight(0)
            subprocess.run([sys.executable, str(ROOT / "rollback" / "rollback.py")],  # nosec B603
                           check=False)
            return {"result": "rolled_back", "at_weight": weight, "reason": why}
    return {"result": "promoted", "at_weight": 100}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="canary rollout with automatic rollback")
    ap.add_argument("--prometheus", default="http://prometheus:9090")
    ap.add_argument("--soak-s", type=float, default=600)
    ap.add_argument("--dry-run", action="store_true", help="print the steps, query nothing")
    args = ap.parse_args(argv)
    if args.dry_run:
        print(json.dumps({"steps": STEPS, "soak_s": args.soak_s}))
        return 0
    outcome = rollout(lambda w: print(json.dumps({"canary_weight": w}), flush=True),
                      lambda track: health(args.prometheus, track), args.soak_s)
    print(json.dumps(outcome))
    return 0 if outcome["result"] == "promoted" else 1


if __name__ == "__main__":
    sys.exit(main())
