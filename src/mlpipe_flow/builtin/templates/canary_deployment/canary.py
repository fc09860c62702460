"""Canary rollout of a newly promoted model version: 5% -> 25% -> 50% -> 100% of traffic, with
automatic rollback when the canary degrades or cannot be observed.

    python canary_deployment/canary.py --prometheus http://prometheus:9090 [--soak-s 600]
        [--ingress model-api-canary --namespace production]

Run it after `continuous_training/retrain.py` promoted a version: the canary pods serve the new
champion, the stable pods the previous one. Prometheus tells them apart by the `track` label
its scrape config copies from the pods' `track` label (`canary_deployment/prometheus-scrape.yml`).
At each step the canary's traffic weight is set (with --ingress: the ingress-nginx canary
annotation, through kubectl), the step soaks --soak-s seconds (0: judge at once), then each
track's /predict error rate (5xx share) and p95 latency over the last 5 minutes are read:

- degraded: the canary's error rate exceeds the stable one by more than --max-error-increase,
  or its p95 exceeds --max-p95-ratio times the stable p95 and by more than --min-p95-increase-s;
- no data: a track without /predict traffic, or a query with no result, is NOT healthy.

Either one sets the weight to 0 and runs `rollback/rollback.py` (the previous champion is served
again at the API's next start), and the script exits 1 (2 when the rollback itself failed).
Every step healthy: the new version stays, exit 0. Each outcome is appended to
registry/decisions.jsonl.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess  # nosec B404 - fixed argv, no shell
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

STEPS = (5, 25, 50, 100)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from continuous_training import registry  # noqa: E402

REQUESTS = 'mlpipe_requests_total{{track="{track}",endpoint="/predict"{extra}}}'
LATENCY = 'mlpipe_request_latency_seconds_bucket{{track="{track}",endpoint="/predict"}}'


class NoData(Exception):
    """Prometheus has nothing to judge a track by."""


def query(prometheus: str, expr: str) -> float:
    """One instant value; NoData when the result is empty or not a number."""
    url = f"{prometheus.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:  # nosec B310 - configured URL
        data = json.load(resp)["data"]["result"]
    if not data:
        raise NoData(expr)
    value = float(data[0]["value"][1])
    if math.isnan(value):
        raise NoData(expr)
    return value


def health(prometheus: str, track: str, window: str = "5m") -> dict[str, float]:
    total = f"sum(rate({REQUESTS.format(track=track, extra='')}[{window}]))"
    if query(prometheus, total) <= 0:
        raise NoData(f"no /predict requests on track {track}")
    errors = REQUESTS.format(track=track, extra=',status=~"5.."')
    error_rate = query(prometheus, f"(sum(rate({errors}[{window}])) or vector(0)) / {total}")
    p95 = query(prometheus, "histogram_quantile(0.95, sum by (le) "
                            f"(rate({LATENCY.format(track=track)}[{window}])))")
    return {"error_rate": error_rate, "p95_s": p95}


def degraded(canary: dict[str, float], stable: dict[str, float], max_error_increase: float,
             max_p95_ratio: float, min_p95_increase_s: float) -> str | None:
    if canary["error_rate"] - stable["error_rate"] > max_error_increase:
        return f"error rate {canary['error_rate']:.2%} vs stable {stable['error_rate']:.2%}"
    if (canary["p95_s"] > max_p95_ratio * stable["p95_s"]
            and canary["p95_s"] - stable["p95_s"] > min_p95_increase_s):
        return f"p95 {canary['p95_s'] * 1000:.0f} ms vs stable {stable['p95_s'] * 1000:.0f} ms"
    return None


def rollout(set_weight: Callable[[int], None], observe: Callable[[str], dict[str, float]],
            soak_s: float, max_error_increase: float = 0.01, max_p95_ratio: float = 1.5,
            min_p95_increase_s: float = 0.025) -> dict[str, object]:
    for weight in STEPS:
        set_weight(weight)
        time.sleep(soak_s)
        try:
            canary, stable = observe("canary"), observe("stable")
        except NoData as e:
            why: str | None = f"no data: {e}"
        else:
            why = degraded(canary, stable, max_error_increase, max_p95_ratio, min_p95_increase_s)
        if why:
            set_weight(0)
            return {"result": "rolled_back", "at_weight": weight, "reason": why}
    return {"result": "promoted", "at_weight": 100}


def ingress_weight(ingress: str, namespace: str) -> Callable[[int], None]:
    def set_weight(weight: int) -> None:
        subprocess.run(["kubectl", "annotate", "ingress", ingress, "-n", namespace,  # nosec B603 B607
                        f"nginx.ingress.kubernetes.io/canary-weight={weight}", "--overwrite"],
                       check=True)
    return set_weight


def log_weight(weight: int) -> None:
    print(json.dumps({"canary_weight": weight, "router": "none (no --ingress given)"}),
          flush=True)


def roll_back() -> bool:
    res = subprocess.run([sys.executable, str(ROOT / "rollback" / "rollback.py")],  # nosec B603
                         check=False)
    return res.returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="canary rollout with automatic rollback")
    ap.add_argument("--prometheus", default="http://prometheus:9090")
    ap.add_argument("--soak-s", type=float, default=600)
    ap.add_argument("--max-error-increase", type=float, default=0.01)
    ap.add_argument("--max-p95-ratio", type=float, default=1.5)
    ap.add_argument("--min-p95-increase-s", type=float, default=0.025)
    ap.add_argument("--ingress", help="the canary Ingress whose weight annotation is set")
    ap.add_argument("--namespace", default="production")
    args = ap.parse_args(argv)
    set_weight = ingress_weight(args.ingress, args.namespace) if args.ingress else log_weight
    version = (registry.champion() or {}).get("version")
    outcome = rollout(set_weight, lambda track: health(args.prometheus, track), args.soak_s,
                      args.max_error_increase, args.max_p95_ratio, args.min_p95_increase_s)
    outcome["version"] = version
    if outcome["result"] == "rolled_back":
        outcome["rollback_ok"] = roll_back()
    registry.record_decision({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "decision": f"canary_{outcome['result']}", **outcome})
    print(json.dumps(outcome))
    if outcome["result"] == "promoted":
        return 0
    return 1 if outcome.get("rollback_ok") else 2


if __name__ == "__main__":
    sys.exit(main())
