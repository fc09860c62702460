"""The drift drill: the gate shifts one feature at a time in samples of held-out rows it draws
at gate time, and asks the workspace's detector about each.

Samples are drawn without replacement from the valid and test splits (rows the reference, the
train split, does not hold), n = min(max_rows, pool_share of them), feature columns only. For
several features chosen at random (numeric and categorical), one sample each with that feature
shifted (defaults in brackets):

- numeric: + delta standard deviations (train std), delta = max(shift_std, numeric_se * se)
  capped at max_shift_std, se = sqrt(1/n_reference + 1/n): the shift a two-sample test at these
  sizes detects with high power even after a Bonferroni correction over 30 features [0.5, 10, 1];
- categorical: a share s = max(share, categorical_se * se) (at most max_share) of the rows moved
  to another category seen in train (not the most frequent one) [20%, 3, 50%].

Each shifted sample must be flagged (`drift_detected` true) with the shifted feature named in
the result's `features`; at most max(min_extra, max_extra_share of the features) other features
may be flagged [1, 10%].
Several clean samples must not be flagged. The function `detect_drift(reference, current)`
runs in one child process of the workspace's interpreter for every sample (`drift_probe.py`),
then the command line runs once on a shifted and once on a clean sample: exit 1 and 0, its JSON
naming the same feature.
"""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, pct, result
from mlpipe_flow.checks.drift_probe import flags
from mlpipe_flow.models import CheckResult

PROBE = Path(__file__).with_name("drift_probe.py")


class DriftDrillParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    script: str = "monitoring/drift_detection/detect_drift.py"
    shift_std: float = Field(default=0.5, gt=0, description="smallest numeric shift, in train std")
    numeric_se: float = Field(default=10, ge=0, description="numeric shift floor, in standard "
                              "errors of the two-sample mean difference (in train std)")
    max_shift_std: float = Field(default=1.0, gt=0)
    share: float = Field(default=0.2, gt=0, le=0.5, description="smallest share of rows moved")
    categorical_se: float = Field(default=3, ge=0, description="share floor, in standard errors")
    max_share: float = Field(default=0.5, gt=0, le=1, description="largest share of rows moved")
    numeric_features: int = Field(default=3, ge=0)
    min_numeric_values: int = Field(default=5, ge=2, description="distinct values of a numeric "
                                    "feature the drill may shift")
    categorical_features: int = Field(default=2, ge=0)
    max_categories: int = Field(default=100, ge=2, description="categories of a categorical "
                                "feature the drill may shift")
    max_extra_share: float = Field(default=0.1, ge=0, le=1, description="other features a "
                                   "shifted sample may flag, as a share of the features")
    min_extra: int = Field(default=1, ge=0, description="other features a shifted sample may "
                           "flag however few the features")
    clean_samples: int = Field(default=3, ge=1)
    max_rows: int = Field(default=2000, ge=50)
    pool_share: float = Field(default=0.8, gt=0, le=1,
                              description="rows per sample, as a share of the held-out rows")
    seed: int | None = Field(default=None, description="fixed seed (tests); default: fresh per run")

    def describe(self) -> str:
        return (f"the gate imports `{self.script}` in a child process of the workspace's "
                "interpreter and calls `detect_drift(reference, current)` with the train split "
                "(`data/splits/train.csv`, which must be the one phase 2 passed with) as "
                f"`reference` and, as `current`, samples of n = min({self.max_rows:,}, "
                f"{pct(self.pool_share)} of the valid+test rows) held-out rows (the feature "
                "columns of `artifacts/model_meta.json` only) that it draws at gate time. For "
                f"{self.numeric_features} numeric features (with {self.min_numeric_values}+ "
                f"distinct values) and {self.categorical_features} categorical ones (at most "
                f"{self.max_categories} categories) picked at random, it shifts one feature per "
                f"sample: a numeric one by max({self.shift_std:g}, {self.numeric_se:g}·se) "
                f"training standard deviations, at most {self.max_shift_std:g} "
                "(se = sqrt(1/n_train + 1/n)); a categorical one by moving "
                f"max({pct(self.share)}, {self.categorical_se:g}·se), at most "
                f"{pct(self.max_share)}, of the rows to another category seen in training (not "
                "the most frequent). Each shifted sample must give `drift_detected` true with "
                "`\"drift\": true` in `features[<that feature>]` (or the feature listed in "
                f"`drifted_features`) and at most max({self.min_extra}, "
                f"{pct(self.max_extra_share)} of the features) other features flagged; each of "
                f"{self.clean_samples} clean samples must give `drift_detected` false. Then "
                f"`python {self.script} --reference data/splits/train.csv --current FILE.csv` "
                "runs once on a shifted sample (exit 1, its JSON naming the feature) and once on "
                "a clean one (exit 0, `drift_detected` false).")


def _json_tail(text: str) -> dict[str, Any] | None:
    """The last JSON object the command printed (one line, or the whole output)."""
    for candidate in [text, *reversed(text.splitlines())]:
        start = candidate.find("{")
        if start < 0:
            continue
        try:
            got = json.loads(candidate[start:])
        except ValueError:
            continue
        if isinstance(got, dict):
            return got
    return None


def _plan(train: Any, pool: Any, features: list[str], params: DriftDrillParams,
          rng: Any) -> tuple[list[dict[str, Any]], int, float]:
    """The shifted samples to make: [{feature, kind, ...}], the sample size and se."""
    n = max(1, min(params.max_rows, int(params.pool_share * len(pool))))
    se = math.sqrt(1 / max(len(train), 1) + 1 / n)
    numeric, categorical = [], []
    for c in features:
        col = train[c]
        if col.dtype.kind in "biuf":
            if col.nunique() >= params.min_numeric_values and float(col.std() or 0) > 0:
                numeric.append(c)
        elif 2 <= col.nunique() <= params.max_categories:
            categorical.append(c)
    picks: list[dict[str, Any]] = []
    delta = min(params.max_shift_std, max(params.shift_std, params.numeric_se * se))
    for c in rng.permutation(numeric)[: params.numeric_features]:
        picks.append({"feature": str(c), "kind": "numeric", "shift_std": round(delta, 3),
                      "shift": float(delta * train[c].std())})
    share = min(params.max_share, max(params.share, params.categorical_se * se))
    for c in rng.permutation(categorical)[: params.categorical_features]:
        counts = train[c].dropna().astype(str).value_counts()
        others = [str(v) for v in counts.index[1:]]
        picks.append({"feature": str(c), "kind": "categorical", "share": round(share, 3),
                      "to": str(rng.choice(others))})
    return picks, n, se


def _shifted(sample: Any, pick: dict[str, Any], rng: Any) -> Any:
    import pandas as pd

    out = sample.copy()
    c = pick["feature"]
    if pick["kind"] == "numeric":
        out[c] = pd.to_numeric(out[c], errors="coerce") + pick["shift"]
        return out
    values = out[c].astype(object)
    movable = values.index[values.notna() & (values.astype(str) != pick["to"])]
    k = min(len(movable), int(round(pick["share"] * len(out))))
    moved = rng.choice(movable.to_numpy(), size=k, replace=False)
    values.loc[moved] = pick["to"]
    out[c] = values
    return out


def _cli_outcome(run: dict[str, Any]) -> dict[str, Any]:
    got = _json_tail(run.get("stdout", "")) or {}
    tail = [ln for ln in str(run.get("stdout", "")).splitlines() if ln.strip()][-3:]
    return {"exit": run.get("exit"), "drift_detected": got.get("drift_detected"),
            "flagged": sorted(n for n, f in flags(got).items() if f)[:10],
            "output": " | ".join(tail)[:300] if not got else ""}


def drift_drill(ctx: CheckContext, params: DriftDrillParams) -> CheckResult:
    import numpy as np
    import pandas as pd

    script = ctx.workspace / params.script
    if not script.is_file():
        return result("failed", f"{params.script} does not exist")
    changed = _splits_changed(ctx)
    if changed is not None:
        return changed
    try:
        meta = json.loads((ctx.workspace / "artifacts" / "model_meta.json").read_text(encoding="utf-8"))
        features = [str(c) for c in meta["feature_columns"]]
        splits = ctx.workspace / "data" / "splits"
        train = pd.read_csv(splits / "train.csv")
        pool = pd.concat([pd.read_csv(splits / f"{s}.csv") for s in ("valid", "test")
                          if (splits / f"{s}.csv").is_file()], ignore_index=True)
    except (OSError, ValueError, KeyError) as e:
        return result("error", f"cannot read the model's features or the splits: {e}")
    missing = [c for c in features if c not in train.columns or c not in pool.columns]
    if missing or pool.empty:
        return result("error", f"the splits lack feature column(s) {missing[:5]} or held-out rows")
    seed = params.seed if params.seed is not None else secrets.randbits(32)
    rng = np.random.default_rng(seed)
    picks, n, se = _plan(train, pool, features, params, rng)
    if not picks:
        return result("error", "no feature the drill can shift (numeric with "
                               f"{params.min_numeric_values}+ values or categorical with 2-"
                               f"{params.max_categories} categories)")
    folder = Path(ctx.scratch or ctx.workspace) / f"drift-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[dict[str, Any]] = []
    for pick in picks:
        rows = pool.sample(n=n, random_state=int(rng.integers(2**31)))[features]
        cases.append({**pick, "frame": _shifted(rows.reset_index(drop=True), pick, rng)})
    for k in range(params.clean_samples):
        rows = pool.sample(n=n, random_state=int(rng.integers(2**31)))[features]
        cases.append({"feature": None, "kind": "clean", "sample": k + 1,
                      "frame": rows.reset_index(drop=True)})
    order = rng.permutation(len(cases))
    for pos, idx in enumerate(order):
        path = folder / f"current-{pos:02d}.csv"
        cases[idx]["frame"].to_csv(path, index=False)
        cases[idx]["path"] = path
    reference = splits / "train.csv"
    request, response = folder / "request.json", folder / "response.json"
    shifted = next(c for c in cases if c["kind"] != "clean")
    clean = next(c for c in cases if c["kind"] == "clean")
    request.write_text(json.dumps({"module": str(script), "reference": str(reference),
                                   "samples": [str(c["path"]) for c in cases],
                                   "cli": [str(shifted["path"]), str(clean["path"])]}),
                       encoding="utf-8")
    res = proc.run([ctx.python, str(PROBE), str(request), str(response)], cwd=ctx.workspace,
                   timeout_s=max(30.0, ctx.timeout_s / 2),
                   env=proc.scrubbed_env(extra={**ctx.env, "PYTHONPATH": str(ctx.workspace),
                                                "PYTHONDONTWRITEBYTECODE": "1"}))
    try:
        got = json.loads(response.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = [ln for ln in res.output.splitlines() if ln.strip()][-3:]
        return result("failed", f"the drift detector could not be run ({res.describe()}): "
                                f"{' | '.join(tail)[:300]}")
    if "error" in got:
        return result("failed", f"detect_drift(reference, current) in {params.script} failed: "
                                f"{got['error']}", trace=got.get("trace", "")[-600:])
    ev: dict[str, Any] = {"seed": seed, "rows_per_sample": n, "reference_rows": len(train),
                          "se": round(se, 4), "samples": []}
    problems: list[str] = []
    allowed_extra = max(params.min_extra, int(params.max_extra_share * len(features)))
    for case, out in zip(cases, got["results"], strict=False):
        desc = _describe(case)
        row = {"sample": desc, **{k: v for k, v in out.items() if k != "flags"},
               "flagged": sorted(f for f, v in out.get("flags", {}).items() if v)[:10]}
        ev["samples"].append(row)
        if "error" in out:
            problems.append(f"detect_drift raised on {desc}: {out['error']}")
            continue
        flagged = set(row["flagged"])
        if case["kind"] == "clean":
            if out["drift_detected"] is not False:
                problems.append(f"fired on clean held-out sample {case['sample']} (drift_detected "
                                f"{out.get('raw')}, flagged {sorted(flagged)[:5]})")
        elif out["drift_detected"] is not True:
            problems.append(f"did not flag {desc} (drift_detected {out.get('raw')})")
        elif case["feature"] not in flagged:
            problems.append(f"flagged drift on {desc} but did not name '{case['feature']}' "
                            f"(named {sorted(flagged)[:5]})")
        elif len(flagged - {case["feature"]}) > allowed_extra:
            problems.append(f"on {desc} also flagged {len(flagged) - 1} unshifted features "
                            f"({sorted(flagged - {case['feature']})[:5]})")
    if problems:
        problems.sort(key=lambda p: not p.startswith("fired on clean"))
        return result("failed", f"{len(problems)} of {len(cases)} samples judged wrong: "
                                f"{problems[0]}" + (f"; {problems[1]}" if len(problems) > 1 else ""),
                      problems=problems, **ev)
    # the command line: once on a shifted sample (exit 1, naming the feature), once on a clean one
    runs = [*(got.get("cli") or []), {}, {}]
    cli_shift, cli_clean = _cli_outcome(runs[0]), _cli_outcome(runs[1])
    ev["cli"] = {"shifted": {"sample": _describe(shifted), **cli_shift}, "clean": cli_clean}
    if cli_shift["exit"] != 1 or cli_shift["drift_detected"] is not True \
            or shifted["feature"] not in cli_shift["flagged"]:
        return result("failed", f"the command line on {_describe(shifted)} exited "
                                f"{cli_shift['exit']} with drift_detected {cli_shift['drift_detected']} "
                                f"naming {cli_shift['flagged'][:5]} (expected exit 1 naming "
                                f"'{shifted['feature']}') {cli_shift['output']}".rstrip(), **ev)
    if cli_clean["exit"] != 0 or cli_clean["drift_detected"] is not False:
        return result("failed", f"the command line on a clean sample exited {cli_clean['exit']} "
                                f"with drift_detected {cli_clean['drift_detected']} (expected exit 0, "
                                f"false) {cli_clean['output']}".rstrip(), **ev)
    kinds = sorted({c["kind"] for c in cases if c["kind"] != "clean"})
    return result("passed", f"flagged and named each of {len(picks)} single-feature shifts "
                            f"({', '.join(_describe(c) for c in cases if c['kind'] != 'clean')}); "
                            f"quiet on {params.clean_samples} clean samples of {n} rows; "
                            f"kinds: {', '.join(kinds)}", **ev)


def _splits_changed(ctx: CheckContext) -> CheckResult | None:
    """The drill draws from the splits phase 2 passed with: a split edited since is refused."""
    from mlpipe_flow.state import file_sha256

    records = ctx.records()
    if records is None:
        return None
    if not records.exists():
        return result("error", records.missing())
    for name in ("train", "valid", "test"):
        rel = f"data/splits/{name}.csv"
        recorded = records.recorded_hash(rel)
        path = ctx.workspace / rel
        if recorded is not None and path.is_file() and file_sha256(path) != recorded:
            return result("failed", f"{rel} changed since the phase that made it passed: the drill "
                                    "draws its reference and clean samples from the recorded splits")
    return None


def _describe(case: dict[str, Any]) -> str:
    if case["kind"] == "numeric":
        return f"'{case['feature']}' shifted by {case['shift_std']} std"
    if case["kind"] == "categorical":
        return f"'{case['feature']}' with {case['share']:.0%} of rows moved to '{case['to']}'"
    return f"clean sample {case['sample']}"
