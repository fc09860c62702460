"""Canary rollout of a newly promoted model version: 5% -> 25% -> 50% -> 100% of traffic, with
automatic rollback when the canary degrades or cannot be observed.

    python canary_deployment/canary.py [--prometheus URL] [--soak-s 600]
        [--router http://127.0.0.1:8080 | --ingress model-api-canary --namespace production]

Run it after `continuous_training/retrain.py` promoted a version: the canary instances serve the
new champion, the stable ones the previous one. What moves the traffic:

- --router URL (or CANARY_ROUTER_URL): the weighted router of `router.py` in front of two running
  API instances (`local.py` starts the pair and the router on one machine);
- --ingress NAME (or CANARY_INGRESS): the ingress-nginx canary annotation, through kubectl
  (canary-ingress.yaml);
- neither: no traffic moves. The script says so on stderr and in its result (`"router":
  "none"`), and judges the two tracks as they are.

Options default to the environment (PROMETHEUS_URL, CANARY_ROUTER_URL, CANARY_INGRESS,
CANARY_NAMESPACE, CANARY_SOAK_S), which is how the Airflow DAG configures it. Prometheus tells
the tracks apart by the `track` label every API instance puts on its series (its MODEL_TRACK
environment variable: stable | canary). At each step the weight is set and read back, the step
soaks --soak-s seconds (0: judge at once), then each track's /predict error rate (5xx share) and
p95 latency over the last 5 minutes are read:

- degraded: the canary's error rate exceeds the stable one by more than --max-error-increase,
  or its p95 exceeds --max-p95-ratio times the stable p95 and by more than --min-p95-increase-s;
- no data: a track without /predict traffic, a query with no result, or a Prometheus that does
  not answer is NOT healthy; neither is a weight that could not be set.

Either one sets the weight to 0 and runs `rollback/rollback.py` (the previous champion is served
again at the API's next start), and the script exits 1 (2 when the rollback itself failed).
Every step healthy: the new version stays, exit 0. Each outcome is appended to
registry/decisions.jsonl and printed as JSON (the last line of the output).
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # nosec B310 - configured URL
            data = json.load(resp)["data"]["result"]
    except (OSError, ValueError, KeyError) as e:
        raise NoData(f"Prometheus at {prometheus} did not answer {expr!r}: {e}") from None
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
        try:
            set_weight(weight)
        except (OSError, ValueError, subprocess.CalledProcessError) as e:
            _best_effort_zero(set_weight)
            return {"result": "rolled_back", "at_weight": weight,
                    "reason": f"could not set the canary weight to {weight}%: {e}"}
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


def _best_effort_zero(set_weight: Callable[[int], None]) -> None:
    try:
        set_weight(0)
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        print(f"canary: could not set the weight back to 0: {e}", file=sys.stderr)


def router_weight(router: str) -> Callable[[int], None]:
    """Set the weight on router.py's admin route and check it took."""
    def set_weight(weight: int) -> None:
        req = urllib.request.Request(f"{router.rstrip('/')}/-/canary-weight", method="PUT",
                                     data=json.dumps({"weight": weight}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # nosec B310 - configured URL
            got = json.load(resp).get("weight")
        if got != weight:
            raise ValueError(f"the router at {router} reports weight {got}, not {weight}")
    return set_weight


def ingress_weight(ingress: str, namespace: str) -> Callable[[int], None]:
    def set_weight(weight: int) -> None:
        subprocess.run(["kubectl", "annotate", "ingress", ingress, "-n", namespace,  # nosec B603 B607
                        f"nginx.ingress.kubernetes.io/canary-weight={weight}", "--overwrite"],
                       check=True)
    return set_weight


def no_router(weight: int) -> None:
    print(f"canary: no --router or --ingress: the {weight}% weight is not applied; judging the "
          "tracks as they are", file=sys.stderr, flush=True)


def roll_back() -> bool:
    res = subprocess.run([sys.executable, str(ROOT / "rollback" / "rollback.py")],  # nosec B603
                         check=False)
    return res.returncode == 0


def last_canary_decision() -> dict[str, object] | None:
    """The newest canary outcome in registry/decisions.jsonl (None when there is none)."""
    try:
        lines = (registry.REGISTRY / "decisions.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and str(rec.get("decision", "")).startswith("canary_"):
            return rec
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="canary rollout with automatic rollback")
    env = os.environ.get
    ap.add_argument("--prometheus", default=env("PROMETHEUS_URL", "http://prometheus:9090"))
    ap.add_argument("--soak-s", type=float, default=float(env("CANARY_SOAK_S", "600")),
                    help="seconds each step soaks before it is judged")
    ap.add_argument("--max-error-increase", type=float, default=0.01)
    ap.add_argument("--max-p95-ratio", type=float, default=1.5)
    ap.add_argument("--min-p95-increase-s", type=float, default=0.025)
    ap.add_argument("--router", default=env("CANARY_ROUTER_URL"),
                    help="base URL of router.py in front of the stable and canary instances")
    ap.add_argument("--ingress", default=env("CANARY_INGRESS"),
                    help="the canary Ingress whose weight annotation is set")
    ap.add_argument("--namespace", default=env("CANARY_NAMESPACE", "production"))
    args = ap.parse_args(argv)
    if args.router and args.ingress:
        ap.error("give --router or --ingress, not both")
    if args.router:
        set_weight, router = router_weight(args.router), f"router {args.router}"
    elif args.ingress:
        set_weight, router = ingress_weight(args.ingress, args.namespace), \
            f"ingress {args.namespace}/{args.ingress}"
    else:
        set_weight, router = no_router, "none"
    version = (registry.champion() or {}).get("version")
    last = last_canary_decision()
    if last and last.get("result") == "rolled_back" and last.get("restored") == version:
        # a retry (or a rerun) after this script rolled back: the restored champion is not a
        # new version to roll out, and rolling back again would go one more version back
        print(json.dumps({"result": "rolled_back", "version": last.get("version"),
                          "restored": version, "reason": "already rolled back; nothing new to "
                          "roll out (promote a version first)"}))
        return 1
    outcome = rollout(set_weight, lambda track: health(args.prometheus, track), args.soak_s,
                      args.max_error_increase, args.max_p95_ratio, args.min_p95_increase_s)
    outcome.update(version=version, router=router)
    if outcome["result"] == "rolled_back":
        outcome["rollback_ok"] = roll_back()
        outcome["restored"] = (registry.champion() or {}).get("version")
    registry.record_decision({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "decision": f"canary_{outcome['result']}", **outcome})
    print(json.dumps(outcome))
    if outcome["result"] == "promoted":
        return 0
    return 1 if outcome.get("rollback_ok") else 2


if __name__ == "__main__":
    sys.exit(main())
