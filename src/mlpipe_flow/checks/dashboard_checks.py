"""Grafana dashboards (phase 5): valid JSON dashboards with panels, each panel a PromQL query
promtool accepts, the panels together covering request rate, latency, errors and the model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.promtext import (
    ERROR_NAME,
    LATENCY_NAME,
    MODEL_NAME,
    dashboard_files,
    dashboard_model,
    grafana_to_promql,
    panel_exprs,
    panels,
    promql_metrics,
    promtool_error,
)
from mlpipe_flow.models import CheckResult

DASHBOARD_KEYS = {"panels", "rows", "schemaVersion"}
QUERYLESS = {"text", "news", "dashlist", "alertlist", "annolist", "welcome", "gettingstarted", "row"}
ERROR_MATCHER = re.compile(r'(?:status|code|outcome|result)\w*\s*(?:(?:=~|=)\s*"[^"]*(?:[45]|err|fail)'
                           r'|(?:!=|!~)\s*")', re.I)


# what makes a query cover each topic (`_topics`), as the rule states it
TOPICS = {
    "requests": "request rate (`rate`, `irate` or `increase` of a `_total` or `_count` series)",
    "latency": ("latency (a `_bucket`, `_sum` or `_count` series of a metric named with latency, "
                "duration, seconds, millis, _ms or _time)"),
    "errors": ("errors (a status/code/outcome/result label matcher selecting 4xx/5xx, err or fail, "
               "or a negative one, or a metric named with error, fail or exception)"),
    "model": ("the model (a metric named with prediction, confidence, score, accuracy, probab, "
              "drift, psi, auc, rmse, mae, f1, precision or recall)"),
}


class DashboardParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dashboards: str = "monitoring/grafana/**/*.json"
    require: list[str] = Field(default_factory=lambda: ["requests", "latency", "errors", "model"])

    def describe(self) -> str:
        need = "; ".join(TOPICS.get(t, t) for t in self.require)
        return (f"every JSON file matching `{self.dashboards}` must parse; those that are Grafana "
                "dashboards (an object, or one wrapped in `{\"dashboard\": ...}`, with "
                "`panels`, `rows` or `schemaVersion`) must have panels, and every panel but "
                "text-like and row panels a PromQL query in `targets[].expr`. `promtool` "
                "(required) must accept every query, with Grafana's `$__rate_interval`-style "
                "macros and `$variables` replaced by plain values. Together the panels must "
                f"cover: {need}.")


def _topics(expr: str) -> set[str]:
    names = promql_metrics(expr)
    out = set()
    if re.search(r"\b(rate|irate|increase)\s*\(", expr) and any(
            n.endswith(("_total", "_count")) for n in names):
        out.add("requests")
    if any(LATENCY_NAME.search(n) and n.endswith(("_bucket", "_sum", "_count")) for n in names):
        out.add("latency")
    if ERROR_MATCHER.search(expr) or any(ERROR_NAME.search(n) for n in names):
        out.add("errors")
    if any(MODEL_NAME.search(n) for n in names):
        out.add("model")
    return out


def grafana_dashboards(ctx: CheckContext, params: DashboardParams) -> CheckResult:
    files = dashboard_files(ctx.workspace, params.dashboards)
    if not files:
        return result("failed", f"no dashboard matches {params.dashboards}")
    queries: list[tuple[str, str, str]] = []  # (file, panel title, PromQL)
    counts: dict[str, int] = {}
    skipped: list[str] = []
    topics: dict[str, str] = {}
    for f in files:
        rel = f.relative_to(ctx.workspace).as_posix()
        try:
            model = dashboard_model(json.loads(f.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as e:
            return result("failed", f"{rel} is not valid JSON: {str(e).splitlines()[0]}")
        if model is None or not DASHBOARD_KEYS & set(model):
            skipped.append(rel)  # a datasource or provisioning file, not a dashboard
            continue
        items = panels(model)
        counts[rel] = len(items)
        if not items:
            return result("failed", f"dashboard {rel} has no panels", panels=counts)
        for p in items:
            title = str(p.get("title") or f"panel {p.get('id', '?')}")
            exprs = panel_exprs(p)
            if not exprs and p.get("type") not in QUERYLESS:
                return result("failed", f"panel '{title}' in {rel} has no query (targets[].expr)",
                              panels=counts)
            for expr in exprs:
                q = grafana_to_promql(expr)
                queries.append((rel, title, q))
                for t in _topics(q):
                    topics.setdefault(t, f"{title} ({rel})")
    ev: dict[str, Any] = {"panels": counts, "queries": len(queries), "covered": topics,
                          "not_dashboards": skipped}
    if not counts:
        return result("failed", f"no Grafana dashboard (a JSON object with panels) in {params.dashboards}",
                      **ev)
    if not queries:
        return result("failed", "no panel holds a PromQL query", **ev)
    promtool = shutil.which("promtool")
    if promtool is None:
        return result("error", "promtool is not installed: dashboard queries cannot be validated", **ev)
    import yaml

    scratch = Path(ctx.scratch or ctx.workspace / ".mlpipe")
    rules_file = scratch / "dashboard-queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": [
        {"record": f"mlpipe_gate_dashboard_query_{i}", "expr": q} for i, (_, _, q) in enumerate(queries)
    ]}]}), encoding="utf-8")
    res = proc.run([promtool, "check", "rules", rules_file.name], cwd=scratch, timeout_s=60,
                   env=proc.scrubbed_env())
    if not res.ok:
        m = re.search(r"rule (\d+)", res.output)
        idx = int(m.group(1)) - 1 if m else -1
        where = (f"panel '{queries[idx][1]}' in {queries[idx][0]}: {queries[idx][2][:120]}"
                 if 0 <= idx < len(queries) else "a panel")
        return result("failed", f"invalid PromQL in {where} ({promtool_error(res.output)[-200:]})", **ev)
    uncovered = [t for t in params.require if t not in topics]
    if uncovered:
        return result("failed", f"the dashboards have no panel for {', '.join(uncovered)} (need request "
                                "rate, latency, errors and the model: predictions, confidence or drift)",
                      **ev)
    return result("passed", f"{sum(counts.values())} panel(s) in {len(files)} dashboard(s); "
                            f"{len(queries)} PromQL queries valid (promtool); cover "
                            f"{', '.join(sorted(topics))}", **ev)
