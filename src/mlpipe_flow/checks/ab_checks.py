"""The A/B testing framework, drilled on scenarios the gate makes at gate time (a fresh seed):
`assign` must split gate-made keys deterministically at the asked share; `compare` must hold its
false-positive rate on A/A tests and detect a real difference; `decide` must roll back a worse or
more error-prone treatment and promote a better one. The module runs in a child process of the
workspace's interpreter (`ab_probe.py`); every rate is computed here."""

from __future__ import annotations

import json
import math
import secrets
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, pct, result
from mlpipe_flow.models import CheckResult

PROBE = Path(__file__).with_name("ab_probe.py")


class AbDrillParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    module: str = "ab_testing.ab_test"
    keys: int = Field(default=20000, ge=100)
    shares: list[float] = Field(default_factory=lambda: [0.5, 0.2], min_length=1,
                                description="treatment shares assign is tested at")
    max_sigma: float = Field(default=4.0, gt=0, description="assign: allowed deviation of the "
                                                            "treatment share, in standard deviations")
    alpha: float = Field(default=0.05, gt=0, lt=1,
                         description="compare's default: significant == (p_value < alpha)")
    aa_tests: int = Field(default=200, ge=10)
    aa_users: int = Field(default=2000, ge=10, description="users per arm of an A/A test")
    ab_tests: int = Field(default=100, ge=10)
    ab_users: int = Field(default=5000, ge=10, description="users per arm of an A/B test")
    max_false_positive_rate: float = Field(default=0.12, description="alpha 0.05 A/A tests")
    min_power: float = Field(default=0.85, description="true difference of 4 standard errors")
    effect_se: float = Field(default=4.0, gt=0)
    error_tests: int = Field(default=20, ge=1, description="A/A tests with a treatment error rise")
    control_error_rate: float = Field(default=0.01, ge=0, lt=1)
    error_increase: float = Field(default=0.05, gt=0, description="treatment error-rate rise "
                                                                  "that must roll back")
    min_error_rollback: float = Field(default=0.95, gt=0, le=1,
                                      description="share of error rises decide must roll back")

    @model_validator(mode="after")
    def _error_tests_are_aa_tests(self) -> AbDrillParams:
        if self.error_tests > self.aa_tests:
            raise ValueError(f"error_tests ({self.error_tests}) must be at most aa_tests "
                             f"({self.aa_tests}): they reuse A/A tests")
        return self

    def describe(self) -> str:
        shares = " and ".join(f"{s:g}" for s in self.shares)
        worse = self.control_error_rate + self.error_increase
        return (f"the gate imports `{self.module}` in the workspace's interpreter (from the "
                "workspace root) and drills it on data it makes with a fresh seed. "
                f"`assign(user_key, treatment_share=...)` on {self.keys:,} gate-made keys must "
                "return \"control\" or \"treatment\", the same for each key when asked again, "
                f"and put a share of the keys in treatment within {self.max_sigma:g} standard "
                f"deviations of the asked share (at {shares}). `compare(control_successes, "
                "control_total, treatment_successes, treatment_total)`, called without alpha, "
                "must return `p_value` and `significant` (attributes or keys) with `significant` "
                f"equal to `p_value < {self.alpha:g}` every time (a default alpha of "
                f"{self.alpha:g}); of {self.aa_tests} A/A tests "
                f"({self.aa_users:,} users per arm, the same success rate in both) at most "
                f"{pct(self.max_false_positive_rate)} may be significant, and of {self.ab_tests} "
                f"tests ({self.ab_users:,} users per arm, half better, half worse) with a true "
                f"difference of {self.effect_se:g} standard errors at least "
                f"{pct(self.min_power)} must be. `decide(comparison, control_error_rate=..., "
                "treatment_error_rate=...)`, given what compare returned, must return "
                "\"rollback\" for at least "
                f"{pct(self.min_power)} of the worse treatments and \"promote\" for at least "
                f"{pct(self.min_power)} of the better ones, \"rollback\" on at most "
                f"{pct(self.max_false_positive_rate)} of the A/A tests (error rates 0), and "
                f"\"rollback\" on at least {pct(self.min_error_rollback)} of {self.error_tests} "
                f"A/A tests whose error rate is {self.control_error_rate:g} for the control and "
                f"{worse:g} for the treatment (a rise of {self.error_increase:g}).")


def _scenarios(params: AbDrillParams, seed: int) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    keys = [f"user-{rng.integers(1 << 62):x}" for _ in range(params.keys)]
    aa, ab, kinds = [], [], []
    for _ in range(params.aa_tests):
        n, r = params.aa_users, float(rng.uniform(0.05, 0.5))
        aa.append([int(rng.binomial(n, r)), n, int(rng.binomial(n, r)), n])
    for i in range(params.ab_tests):
        n, r = params.ab_users, float(rng.uniform(0.08, 0.3))
        delta = params.effect_se * math.sqrt(2 * r * (1 - r) / n) * (1 if i % 2 else -1)
        ab.append([int(rng.binomial(n, r)), n, int(rng.binomial(n, r + delta)), n])
        kinds.append("better" if delta > 0 else "worse")
    errors = [[*row, params.control_error_rate, params.control_error_rate + params.error_increase]
              for row in aa[:params.error_tests]]
    return {"keys": keys, "aa": aa, "ab": ab, "kinds": kinds, "errors": errors}


def ab_drill(ctx: CheckContext, params: AbDrillParams) -> CheckResult:
    rel = params.module.replace(".", "/") + ".py"
    if not (ctx.workspace / rel).is_file():
        return result("failed", f"{rel} does not exist")
    seed = secrets.randbelow(2**31)
    sc = _scenarios(params, seed)
    shares = params.shares
    request = {"module": params.module, "keys": sc["keys"], "shares": shares,
               "compare": sc["aa"] + sc["ab"],
               "decide": [[*r, 0.0, 0.0] for r in sc["aa"] + sc["ab"]] + sc["errors"]}
    with tempfile.TemporaryDirectory(dir=ctx.scratch) as tmp:
        req, resp = Path(tmp) / "request.json", Path(tmp) / "response.json"
        req.write_text(json.dumps(request), encoding="utf-8")
        env = proc.scrubbed_env(extra={**ctx.env, "PYTHONPATH": str(ctx.workspace),
                                       "PYTHONDONTWRITEBYTECODE": "1"})
        res = proc.run([ctx.python, str(PROBE), str(req), str(resp)], cwd=ctx.workspace, env=env,
                       timeout_s=ctx.timeout_s)
        try:
            out = json.loads(resp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return result("failed", f"running {params.module} failed ({res.describe()}): "
                          f"{' | '.join(res.output.splitlines()[-3:])[:300]}")
    if "error" in out:
        return result("failed", f"{params.module} does not follow the contract (assign, compare, "
                      f"decide): {out['error']}")
    problems = []
    n = len(sc["keys"])
    shares_got = {}
    for share in shares:
        got = out["assign"][str(share)]
        bad = sorted({v for v in got if v not in ("control", "treatment")})
        if bad:
            problems.append(f"assign returned {bad[:3]} (expected control/treatment)")
            break
        p = got.count("treatment") / n
        shares_got[share] = round(p, 4)
        if abs(p - share) > params.max_sigma * math.sqrt(share * (1 - share) / n):
            problems.append(f"assign put {p:.3f} of {n} keys in treatment at share {share}")
    first = out["assign"][str(shares[0])]
    if out["assign_again"] != first:
        same = sum(a == b for a, b in zip(out["assign_again"], first, strict=True))
        problems.append(f"assign is not deterministic: {n - same} of {n} keys changed variant")
    cmp = out["compare"]
    aa, ab = cmp[:len(sc["aa"])], cmp[len(sc["aa"]):]
    fpr = sum(sig for _, sig in aa) / len(aa)
    power = sum(sig for _, sig in ab) / len(ab)
    inconsistent = sum(sig != (p < params.alpha) for p, sig in cmp)
    if fpr > params.max_false_positive_rate:
        problems.append(f"compare called {fpr:.0%} of {len(aa)} A/A tests significant "
                        f"(expected about {params.alpha:.0%}, at most "
                        f"{params.max_false_positive_rate:.0%})")
    if power < params.min_power:
        problems.append(f"compare detected {power:.0%} of {len(ab)} real differences of "
                        f"{params.effect_se:g} standard errors (expected at least "
                        f"{params.min_power:.0%})")
    if inconsistent:
        problems.append(f"significant disagrees with p_value < {params.alpha:g} in "
                        f"{inconsistent} tests")
    dec = out["decide"]
    d_aa, d_ab = dec[:len(sc["aa"])], dec[len(sc["aa"]):len(sc["aa"]) + len(sc["ab"])]
    d_err = dec[len(sc["aa"]) + len(sc["ab"]):]
    rolled_aa = d_aa.count("rollback") / len(d_aa)
    worse = [d for d, k in zip(d_ab, sc["kinds"], strict=True) if k == "worse"]
    better = [d for d, k in zip(d_ab, sc["kinds"], strict=True) if k == "better"]
    rb_worse = worse.count("rollback") / len(worse)
    promoted = better.count("promote") / len(better)
    rb_errors = d_err.count("rollback") / len(d_err)
    if rb_worse < params.min_power:
        problems.append(f"decide rolled back {rb_worse:.0%} of clearly worse treatments")
    if promoted < params.min_power:
        problems.append(f"decide promoted {promoted:.0%} of clearly better treatments")
    if rolled_aa > params.max_false_positive_rate:
        problems.append(f"decide rolled back {rolled_aa:.0%} of A/A tests")
    if rb_errors < params.min_error_rollback:
        problems.append(f"decide rolled back {rb_errors:.0%} of treatments whose error rate "
                        f"rose by {params.error_increase:.0%}")
    ev = {"seed": seed, "keys": n, "treatment_share": shares_got,
          "aa_false_positive_rate": round(fpr, 3), "power": round(power, 3),
          "rollback_when_worse": round(rb_worse, 3), "promote_when_better": round(promoted, 3),
          "rollback_on_error_rise": round(rb_errors, 3), "rollback_on_aa": round(rolled_aa, 3)}
    if problems:
        return result("failed", "; ".join(problems[:4]), **ev, problems=problems)
    return result("passed", f"assign splits {n} gate-made keys deterministically at the asked "
                  f"share; compare: {fpr:.0%} false positives on {len(aa)} A/A tests, power "
                  f"{power:.0%}; decide rolls back worse or error-prone treatments, promotes "
                  f"better ones", **ev)
