"""Monitoring checks: dashboards and alerts use only metrics the live API exposes; Prometheus
config and rules validate (promtool when installed) and their unit tests pass; the drift
detector flags a shift the gate injects and stays quiet on clean data."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.serving import ApiDown, http, running_api, test_records
from mlpipe_flow.models import CheckResult

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan", "le", "atan2", "start", "end"}
SUFFIXES = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"],
            "summary": ["_sum", "_count", "_created"], "gauge": [], "untyped": [], "info": ["_info"]}


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression reads (not functions, keywords, labels or grouping labels)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    s = re.sub(r"\{[^}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        word = m.group(0)
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or (m.start() > 0 and s[m.start() - 1].isdigit()):
            continue
        names.add(word)
    return names


def exposed_metrics(text: str) -> set[str]:
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                base = parts[2]
                names.add(base)
                for suf in SUFFIXES.get(parts[3], []):
                    names.add(base + suf)
                    if base.endswith("_total"):
                        names.add(base[:-6] + suf)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def _exprs(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        out = [v for k, v in obj.items() if k == "expr" and isinstance(v, str)]
        for k, v in obj.items():
            if k != "expr":
                out += _exprs(v)
        return out
    if isinstance(obj, list):
        return [e for item in obj for e in _exprs(item)]
    return []


def used_metrics(ws: Path, dashboards: str, rules: str) -> tuple[dict[str, set[str]], list[str]]:
    import yaml

    used: dict[str, set[str]] = {}
    bad: list[str] = []
    for pattern, loader in ((dashboards, "json"), (rules, "yaml")):
        for f in sorted(ws.glob(pattern)):
            rel = f.relative_to(ws).as_posix()
            if "test" in f.name and loader == "yaml":
                continue
            try:
                text = f.read_text(encoding="utf-8")
                docs = [json.loads(text)] if loader == "json" else list(yaml.safe_load_all(text))
            except (ValueError, yaml.YAMLError) as e:
                bad.append(f"{rel}: {str(e).splitlines()[0]}")
                continue
            for expr in _exprs(docs):
                for name in promql_metrics(expr):
                    used.setdefault(name, set()).add(rel)
    return used, bad


class MetricsExposedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dashboards: str = "monitoring/grafana/**/*.json"
    rules: str = "monitoring/alerts/**/*.y*ml"
    predictions: int = Field(default=5, ge=1)
    ignore: list[str] = Field(default_factory=lambda: ["up"],
                              description="metrics Prometheus itself provides")


def metrics_exposed(ctx: CheckContext, params: MetricsExposedParams) -> CheckResult:
    used, bad = used_metrics(ctx.workspace, params.dashboards, params.rules)
    if bad:
        return result("failed", f"unreadable file(s): {'; '.join(bad[:3])}")
    if not used:
        return result("failed", f"no metric used in {params.dashboards} or {params.rules}")
    try:
        _, records, _ = test_records(ctx, params.predictions)
        with running_api(ctx) as api:
            for rec in records:
                http("POST", f"{api.base}/predict", json.dumps({"records": [rec]}).encode())
            status, body = http("GET", f"{api.base}/metrics")
    except ApiDown as e:
        return result("failed", str(e))
    except (OSError, ValueError, KeyError) as e:
        return result("failed", f"cannot read the test split: {e}")
    if status != 200:
        return result("failed", f"/metrics answered HTTP {status}")
    exposed = exposed_metrics(body.decode("utf-8", errors="replace"))
    missing = {n: sorted(files) for n, files in used.items()
               if n not in exposed and n not in params.ignore}
    ev = {"used": sorted(used), "exposed": sorted(exposed)[:80], "missing": missing}
    if missing:
        return result("failed", f"{len(missing)} metric(s) used but not exposed by /metrics: " +
                      "; ".join(f"{n} (in {', '.join(f)})" for n, f in list(missing.items())[:5]),
                      **ev)
    return result("passed", f"all {len(used)} metric(s) used by dashboards and alerts are exposed",
                  **ev)


class PromRulesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: str = "monitoring/prometheus/prometheus.yml"
    rules: str = "monitoring/alerts/**/*.y*ml"
    require_rule_tests: bool = True


def _balanced(expr: str) -> bool:
    depth = 0
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for ch in re.sub(r'"(?:[^"\\]|\\.)*"', "", expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
        depth = len(stack)
    return depth == 0 and bool(expr.strip())


def _structural(ws: Path, config: Path, rule_files: list[Path]) -> list[str]:
    import yaml

    problems = []
    try:
        cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        return [f"{config.name}: invalid YAML: {str(e).splitlines()[0]}"]
    jobs = (cfg or {}).get("scrape_configs") if isinstance(cfg, dict) else None
    if not jobs or not all(isinstance(j, dict) and j.get("job_name") for j in jobs):
        problems.append(f"{config.name}: scrape_configs missing or a job lacks job_name")
    for f in rule_files:
        rel = f.relative_to(ws).as_posix()
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            problems.append(f"{rel}: invalid YAML: {str(e).splitlines()[0]}")
            continue
        groups = doc.get("groups") if isinstance(doc, dict) else None
        if not groups:
            problems.append(f"{rel}: no groups")
            continue
        for g in groups:
            for r in (g or {}).get("rules") or []:
                if not (r.get("alert") or r.get("record")) or not _balanced(str(r.get("expr", ""))):
                    problems.append(f"{rel}: rule {r.get('alert') or r.get('record')} is invalid")
    return problems


def prometheus_rules(ctx: CheckContext, params: PromRulesParams) -> CheckResult:
    config = ctx.workspace / params.config
    if not config.is_file():
        return result("failed", f"{params.config} does not exist")
    files = sorted(f for f in ctx.workspace.glob(params.rules) if f.is_file())
    tests = [f for f in files if "test" in f.name]
    rules = [f for f in files if f not in tests]
    if not rules:
        return result("failed", f"no rule file matches {params.rules}")
    ev: dict[str, Any] = {"rule_files": [f.relative_to(ctx.workspace).as_posix() for f in rules],
                          "rule_test_files": [f.relative_to(ctx.workspace).as_posix()
                                              for f in tests]}
    if params.require_rule_tests and not tests:
        return result("failed", "no rule unit tests (a *test*.yml file in promtool's format)", **ev)
    promtool = shutil.which("promtool")
    if promtool is None:
        problems = _structural(ctx.workspace, config, rules)
        ev.update(validator="structural parser (promtool not installed)",
                  rule_tests="not run: promtool not installed")
        if problems:
            return result("failed", "; ".join(problems[:5]), **ev)
        return result("passed", f"config and {len(rules)} rule file(s) parse (structural; promtool "
                      "not installed, rule tests not run)", **ev)
    runs = [[promtool, "check", "config", str(config)],
            [promtool, "check", "rules", *map(str, rules)]]
    runs += [[promtool, "test", "rules", str(t)] for t in tests]
    outputs = []
    for argv in runs:
        res = proc.run(argv, cwd=ctx.workspace, timeout_s=60, env=proc.scrubbed_env())
        outputs.append({"command": " ".join(argv[1:3]), "exit": res.returncode})
        if not res.ok:
            tail = [ln for ln in res.output.splitlines() if ln.strip()][-8:]
            return result("failed", f"promtool {' '.join(argv[1:3])} failed: {' | '.join(tail)}",
                          validator="promtool", runs=outputs, **ev)
    return result("passed", f"promtool: config and {len(rules)} rule file(s) valid, "
                  f"{len(tests)} rule test file(s) pass", validator="promtool", runs=outputs, **ev)


class DriftDrillParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    script: str = "monitoring/drift_detection/detect_drift.py"
    shift_std: float = Field(default=1.0, gt=0, description="numeric shift in reference std")
    clean_fraction: float = Field(default=0.5, gt=0, le=1)


def _inject(frame: Any, reference: Any, features: list[str], shift_std: float) -> Any:
    shifted = frame.copy()
    numeric = [c for c in features if reference[c].dtype.kind in "biuf"]
    for c in numeric:
        shifted[c] = shifted[c] + shift_std * float(reference[c].std() or 1.0)
    if not numeric:
        for c in features:
            common = reference[c].value_counts().index[-1]
            idx = shifted.sample(frac=0.6, random_state=0).index
            shifted.loc[idx, c] = common
    return shifted


def drift_drill(ctx: CheckContext, params: DriftDrillParams) -> CheckResult:
    import pandas as pd

    script = ctx.workspace / params.script
    if not script.is_file():
        return result("failed", f"{params.script} does not exist")
    meta = json.loads((ctx.workspace / "artifacts" / "model_meta.json").read_text(encoding="utf-8"))
    features = list(meta["feature_columns"])
    train = pd.read_csv(ctx.workspace / "data" / "splits" / "train.csv")
    test = pd.read_csv(ctx.workspace / "data" / "splits" / "test.csv")
    outcomes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mlpipe-drift-") as tmp:
        cases = {"shifted": _inject(test, train, features, params.shift_std),
                 "clean": test.sample(frac=params.clean_fraction, random_state=1)}
        for name, frame in cases.items():
            data = Path(tmp) / f"{name}.csv"
            report = Path(tmp) / f"{name}.json"
            frame.to_csv(data, index=False)
            argv = [ctx.python, str(script), "--current", str(data), "--report", str(report)]
            res = proc.run(argv, cwd=ctx.workspace, timeout_s=ctx.timeout_s,
                           env=proc.scrubbed_env(extra={"PYTHONPATH": str(ctx.workspace)}))
            try:
                rep = json.loads(report.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                rep = {}
            outcomes[name] = {"exit": res.returncode, "drift_detected": rep.get("drift_detected"),
                              "drifted_features": (rep.get("drifted_features") or [])[:10]}
            if res.returncode not in (0, 1):
                tail = [ln for ln in res.output.splitlines() if ln.strip()][-5:]
                return result("failed", f"the drift detector failed on the {name} sample "
                              f"({res.describe()}): {' | '.join(tail)}", **outcomes)
    shifted, clean = outcomes["shifted"], outcomes["clean"]
    fired = shifted["exit"] == 1 and shifted["drift_detected"] is True
    quiet = clean["exit"] == 0 and clean["drift_detected"] is False
    if not fired:
        return result("failed", f"the drift detector did not flag a {params.shift_std} std shift "
                      f"the gate injected (exit {shifted['exit']}, drift_detected "
                      f"{shifted['drift_detected']})", **outcomes)
    if not quiet:
        return result("failed", f"the drift detector fired on an unshifted test sample (exit "
                      f"{clean['exit']}, drifted {clean['drifted_features']})", **outcomes)
    return result("passed", f"flagged the injected shift ({len(shifted['drifted_features'])} "
                  "feature(s) drifted), quiet on a clean sample", **outcomes)
