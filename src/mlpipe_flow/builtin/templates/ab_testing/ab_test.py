"""A/B testing for model versions.

- assign(user_key): a stable split by a SHA-256 hash of the user key (the same user always
  sees the same variant, across processes and restarts).
- compare(...): a two-proportion z-test on a success metric (e.g. correct predictions, or
  retained customers) per variant.
- decide(...): the rollback rule: roll the treatment back when it is significantly worse, or
  when its error rate exceeds the control's by more than `max_error_increase`.

Usage:  python ab_testing/ab_test.py --control-successes 480 --control-total 1000 \
            --treatment-successes 520 --treatment-total 1000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from dataclasses import asdict, dataclass


def assign(user_key: str, treatment_share: float = 0.5, salt: str = "model-ab") -> str:
    digest = hashlib.sha256(f"{salt}:{user_key}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    return "treatment" if bucket < treatment_share else "control"


@dataclass
class Comparison:
    control_rate: float
    treatment_rate: float
    lift: float
    z: float
    p_value: float
    significant: bool


def compare(c_success: int, c_total: int, t_success: int, t_total: int,
            alpha: float = 0.05) -> Comparison:
    if min(c_total, t_total) <= 0:
        raise ValueError("both variants need at least one observation")
    pc, pt = c_success / c_total, t_success / t_total
    pooled = (c_success + t_success) / (c_total + t_total)
    se = math.sqrt(max(pooled * (1 - pooled) * (1 / c_total + 1 / t_total), 1e-12))
    z = (pt - pc) / se
    p = math.erfc(abs(z) / math.sqrt(2))
    return Comparison(pc, pt, pt - pc, z, p, p < alpha)


def decide(cmp: Comparison, control_error_rate: float = 0.0, treatment_error_rate: float = 0.0,
           max_error_increase: float = 0.01) -> str:
    """'rollback' | 'promote' | 'continue'."""
    if treatment_error_rate - control_error_rate > max_error_increase:
        return "rollback"
    if cmp.significant and cmp.lift < 0:
        return "rollback"
    if cmp.significant and cmp.lift > 0:
        return "promote"
    return "continue"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("control-successes", "control-total", "treatment-successes", "treatment-total"):
        ap.add_argument(f"--{name}", type=int, required=True)
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args(argv)
    cmp = compare(args.control_successes, args.control_total, args.treatment_successes,
                  args.treatment_total, args.alpha)
    print(json.dumps({**asdict(cmp), "decision": decide(cmp)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
