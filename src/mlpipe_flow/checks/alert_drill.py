"""The alert drill: every alert rule run by `promtool test rules` against series the gate
synthesises at gate time from what the live API exposes.

The gate has scraped the API before and after its own traffic (`monitoring_checks.observe`):
each series' name, type, labels and how much it moved for good requests and for bad ones
(422s, a 404). From that it writes one promtool test group per scenario, on the scrape
interval and the rule evaluation interval of `prometheus.yml`, each series also carrying the
`job`/`instance` labels Prometheus would add, plus `up`:

- healthy: the measured request mix at `healthy_share` of the spec's throughput objective,
  gauges at their live values, for the whole timeline: no alert may fire;
- after a healthy history long enough for every window and offset the rules read, one change
  per stress scenario: the API down (`up` 0, its series stale); no traffic; `traffic_factor`
  times the traffic; errors (`error_share` of the requests 4xx where the bad requests landed,
  as many 5xx on the 5xx series of each status-labelled family); every latency histogram
  observing `latency_factor` times the p95 objective; each other histogram observing above its
  largest and below its smallest bucket; each gauge an alert reads set to each of
  `gauge_values` and to each of `gauge_factors` times each number in those alerts (defaults:
  10x traffic, 25% + 25% errors, twice the objective, 0, 1, -1, +-1e9, twice and half).
A scenario that changes one family asks only the alerts reading it, over a timeline as long as
theirs; the groups run in two promtool processes at once.

Every alert must fire in at least one stress scenario (one that never fires reads something
the API does not emit, has a threshold no traffic reaches, or is not loaded), none in the
healthy one, and the scenarios in `require` must each fire some alert.
"""

from __future__ import annotations

import json
import math
import re
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpipe_flow import proc
from mlpipe_flow.checks.base import pct
from mlpipe_flow.checks.promtext import (
    ERROR_NAME,
    LATENCY_NAME,
    MODEL_NAME,
    Matcher,
    Rule,
    Scrape,
    lookback_s,
    matches,
    promql_metrics,
    selectors,
)

STATUS_CODE = re.compile(r"^[1-5]\d\d$")
STATUS_CLASS = re.compile(r"^[1-5]xx$", re.I)
# the stress the drill applies (PromRulesParams holds them; these are its defaults)
TRAFFIC_FACTOR = 10.0  # the high-volume scenario: this many times the healthy traffic
ERROR_SHARE = 0.25  # the errors scenario: this share of all requests 4xx, as many 5xx
LATENCY_FACTOR = 2.0  # latency histograms observe this many times the p95 objective
GAUGE_VALUES = (0.0, 1.0, -1.0, 1e9, -1e9)  # each gauge an alert reads is set to each of these
GAUGE_FACTORS = (2.0, 0.5)  # ... and to these multiples of each number in that alert


def scenario_kinds(traffic_factor: float = TRAFFIC_FACTOR, error_share: float = ERROR_SHARE,
                   latency_factor: float = LATENCY_FACTOR) -> dict[str, str]:
    """What each scenario kind of `require` does, with the drill's numbers."""
    return {
        "down": "the API is down (up == 0, its series stale)",
        "errors": (f"{pct(2 * error_share)} of the requests fail ({pct(error_share)} 4xx, "
                   f"{pct(error_share)} 5xx)"),
        "latency": f"latency is {latency_factor:g} times the p95 objective",
        "volume": f"traffic stops or grows {traffic_factor:g}-fold",
        "model": "a model metric (confidence, score, drift) moves",
    }


SCENARIO_KINDS = scenario_kinds()


@dataclass
class Observation:
    """What the gate measured on the live API: scrapes before its traffic, after its good
    requests and after its bad ones, and how many of each it sent."""

    before: Scrape
    good: Scrape
    after: Scrape
    n_good: int
    n_bad: int


@dataclass
class Series:
    name: str
    labels: dict[str, str]
    family: str
    ftype: str
    counter: bool  # cumulative (counter, bucket, sum, count) or a gauge
    value: float  # the live value (gauges)
    good: float = 0.0  # moved by the gate's good requests
    bad: float = 0.0  # moved by its bad requests
    template: Series | None = None  # a synthesised 5xx sibling copies this series' traffic
    error: bool = False

    def text(self) -> str:
        if not self.labels:
            return self.name
        inner = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{inner}}}"

    @property
    def le(self) -> float | None:
        v = self.labels.get("le")
        if v is None or not self.name.endswith("_bucket"):
            return None
        try:
            return float(v)
        except ValueError:
            return None


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return format(x, ".12g")


@dataclass
class Timeline:
    interval_s: float  # the scrape interval: one sample per series per interval
    eval_s: float  # the rule evaluation interval
    t0: int  # index of the first stressed sample
    n: int  # index of the last sample

    def seconds(self, j: int) -> float:
        return j * self.interval_s


@dataclass
class Scenario:
    name: str
    kind: str  # healthy | down | errors | volume | latency | model | histogram | gauge
    target: str | None = None  # the one family it changes (None: the whole API)
    rate: dict[int, float] = field(default_factory=dict)  # series index -> increment per second
    values: dict[int, float] = field(default_factory=dict)  # series index -> gauge value
    down: bool = False


def build_series(obs: Observation, families: set[str], job_labels: dict[str, str]) -> list[Series]:
    out: list[Series] = []
    for family in sorted(families):
        ftype = obs.after.family(family)[1] if family not in obs.after.types else obs.after.types[family]
        keys = set(obs.after.series(family)) | set(obs.good.series(family))
        for name, labels in sorted(keys):
            lab = dict(labels)
            for k, v in job_labels.items():
                lab.setdefault(k, v)
            counter = ftype in ("counter", "histogram", "summary") and not (
                ftype == "summary" and name == family)
            b0 = obs.before.samples.get((name, labels), 0.0)
            b1 = obs.good.samples.get((name, labels), b0)
            b2 = obs.after.samples.get((name, labels), b1)
            s = Series(name, lab, family, ftype, counter, b2,
                       good=max(0.0, b1 - b0) if counter else 0.0,
                       bad=max(0.0, b2 - b1) if counter else 0.0)
            s.error = counter and s.good == 0 and (s.bad > 0 or bool(ERROR_NAME.search(family)))
            out.append(s)
        out += _five_xx_siblings([s for s in out if s.family == family])
    return out


def _five_xx_siblings(series: list[Series]) -> list[Series]:
    """For a status-labelled family: in each label combination, the 5xx series (the API's own,
    initialised at start-up, or a synthesised sibling) that carries the combination's server
    errors in the errors scenario, copying the traffic of its busiest status."""
    if not series or not series[0].counter:
        return []
    out: list[Series] = []
    labels = {k for s in series for k in s.labels} - {"le", "job", "instance"}
    for label in sorted(labels):
        values = {s.labels.get(label) for s in series}
        if None in values or not values:
            continue
        if all(STATUS_CODE.match(v or "") for v in values):
            five = "500"
        elif all(STATUS_CLASS.match(v or "") for v in values):
            five = "5xx"
        else:
            continue

        def combo(s: Series, label: str = label) -> tuple[tuple[str, str], ...]:
            return tuple(sorted((k, v) for k, v in s.labels.items() if k not in (label, "le")))

        traffic: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
        for s in series:
            by_value = traffic.setdefault(combo(s), {})
            by_value[s.labels[label]] = by_value.get(s.labels[label], 0.0) + s.good
        for key, by_value in traffic.items():
            busiest = max(by_value, key=lambda v: by_value[v])
            if by_value[busiest] <= 0:
                continue
            existing = sorted(v for v in by_value if v.startswith("5"))
            target = existing[0] if existing else five
            templates = {(s.name, s.labels.get("le")): s for s in series
                         if combo(s) == key and s.labels[label] == busiest}
            for (name, le), t in templates.items():
                own = next((s for s in series if s.name == name and s.labels.get("le") == le
                            and combo(s) == key and s.labels[label] == target), None)
                if own is None:
                    out.append(Series(name, {**t.labels, label: target}, t.family, t.ftype, True,
                                      0.0, template=t, error=True))
                else:
                    own.template, own.error = t, True
        break  # one status label is enough
    return out


def _scenario_healthy(series: list[Series], per_good: float) -> dict[int, float]:
    return {i: s.good * per_good for i, s in enumerate(series) if s.counter and s.template is None}


def scenarios(series: list[Series], gauge_literals: dict[str, set[float]], healthy_rps: float,
              n_good: int, n_bad: int, slo_s: float, *, traffic_factor: float = TRAFFIC_FACTOR,
              error_share: float = ERROR_SHARE, latency_factor: float = LATENCY_FACTOR,
              gauge_values: tuple[float, ...] = GAUGE_VALUES,
              gauge_factors: tuple[float, ...] = GAUGE_FACTORS) -> list[Scenario]:
    """The healthy scenario first, then every stress scenario. `gauge_literals`: for each gauge
    family an alert reads, the numbers in those alerts."""
    per_good = healthy_rps / max(n_good, 1)
    healthy = _scenario_healthy(series, per_good)
    out = [Scenario("healthy", "healthy", rate=dict(healthy)),
           Scenario("down", "down", rate=dict(healthy), down=True),
           Scenario("no-traffic", "volume", rate={i: 0.0 for i in healthy}),
           Scenario(f"traffic-x{traffic_factor:g}", "volume",
                    rate={i: traffic_factor * r for i, r in healthy.items()})]
    # errors: `error_share` of all requests 4xx where the gate's bad requests landed, as many 5xx
    err = dict(healthy)
    # R good + S 4xx + S 5xx requests/s with S = e * (R + 2S): S = R e / (1 - 2e) (R/2 at e = 25%)
    share = healthy_rps * error_share / (1 - 2 * error_share)
    for i, s in enumerate(series):
        if s.template is not None:
            err[i] = s.template.good / max(n_good, 1) * share
        elif s.error:
            err[i] = (s.bad / max(n_bad, 1)) * share if s.bad > 0 else share
    out.append(Scenario("errors", "errors", rate=err))
    # histograms: observations moved above the top bucket / below the lowest / to 2x the SLO
    hist_fams = sorted({s.family for s in series if s.ftype in ("histogram", "summary")})
    for fam in hist_fams:
        members = [i for i, s in enumerate(series) if s.family == fam and s.template is None]
        bounds = sorted({b for i in members if (b := series[i].le) is not None and math.isfinite(b)})
        is_latency = bool(LATENCY_NAME.search(fam))
        unit = 1000.0 if re.search(r"millis|_ms(?:_|$)", fam) else 1.0
        targets: list[tuple[str, str, float]] = []
        if is_latency:
            targets.append((f"latency-{latency_factor:g}x-slo:{fam}", "latency",
                            latency_factor * slo_s * unit))
        else:
            kind = "model" if MODEL_NAME.search(fam) else "histogram"
            top = bounds[-1] if bounds else 1.0
            low = bounds[0] if bounds else 0.0
            targets.append((f"above-buckets:{fam}", kind, 2 * top if top > 0 else top + 1))
            targets.append((f"below-buckets:{fam}", kind, low / 2 if low > 0 else low - 1))
        for name, kind, value in targets:
            rate = dict(healthy)
            for i in members:
                rate[i] = _observe(series, i, value, per_good)
            out.append(Scenario(name, kind, fam, rate=rate))
    # gauges an alert reads: each set to candidate values, one gauge at a time
    gauge_fams = sorted({s.family for s in series if not s.counter})
    for fam in gauge_fams:
        if fam not in gauge_literals:
            continue
        candidates = sorted(set(gauge_values) | {
            x * k for x in gauge_literals[fam] for k in gauge_factors if x != 0 and math.isfinite(x)})
        members = [i for i, s in enumerate(series) if s.family == fam]
        kind = "model" if MODEL_NAME.search(fam) else "gauge"
        for v in candidates:
            out.append(Scenario(f"gauge:{fam}={_num(v)}", kind, fam, rate=dict(healthy),
                                values={i: v for i in members}))
    return out


def _observe(series: list[Series], i: int, value: float, per_good: float) -> float:
    """Per-second increment of histogram/summary sample i when every observation is `value`
    (at the healthy rate of observations of its label combination)."""
    s = series[i]
    count = 0.0
    key = {k: v for k, v in s.labels.items() if k != "le"}
    for o in series:
        if o.family == s.family and o.name.endswith("_count") and o.template is None and o.labels == key:
            count = o.good * per_good
    if s.name.endswith("_count"):
        return count
    if s.name.endswith("_sum"):
        return count * value
    le = s.le
    if le is None:
        return s.good * per_good
    return count if value <= le else 0.0


def series_values(s: Series, i: int, sc: Scenario, healthy: Scenario, tl: Timeline) -> str:
    before = healthy.rate.get(i, 0.0) * tl.interval_s
    after_n = tl.n - tl.t0 + 1  # samples from t0 to n
    if s.counter:
        head = f"0+{_num(before)}x{tl.t0 - 1}"
        if sc.down:
            return f"{head} stale _x{after_n - 1}" if after_n > 1 else f"{head} stale"
        step = sc.rate.get(i, 0.0) * tl.interval_s
        start = before * (tl.t0 - 1) + step
        return f"{head} {_num(start)}+{_num(step)}x{after_n - 1}"
    head = f"{_num(s.value)}+0x{tl.t0 - 1}"
    if sc.down:
        return f"{head} stale _x{after_n - 1}" if after_n > 1 else f"{head} stale"
    v = sc.values.get(i, s.value)
    return f"{head} {_num(v)}+0x{after_n - 1}"


def selectors_per_alert(rules: list[Rule]) -> dict[str, list[tuple[str, list[Matcher]]]]:
    """{alert name: the selectors it reads}, through recording rules."""
    recorded = {r.name: r for r in rules if r.kind == "record"}

    def reads(expr: str, seen: frozenset[str]) -> list[tuple[str, list[Matcher]]]:
        out = []
        for name, matchers in selectors(expr):
            if name in recorded:
                if name not in seen:
                    out += reads(recorded[name].expr, seen | {name})
            else:
                out.append((name, matchers))
        return out

    return {r.name: reads(r.expr, frozenset()) for r in rules if r.kind == "alert"}


def families_per_alert(rules: list[Rule], exposed: set[str]) -> dict[str, set[str]]:
    """{alert name: families of exposed metrics it reads}, through recording rules."""
    recorded = {r.name: r for r in rules if r.kind == "record"}

    def reads(expr: str, seen: frozenset[str]) -> set[str]:
        out = set()
        for name in promql_metrics(expr):
            if name in recorded and name not in seen:
                out |= reads(recorded[name].expr, seen | {name})
            elif name in exposed:
                out.add(name)
        return out

    return {r.name: reads(r.expr, frozenset()) for r in rules if r.kind == "alert"}


def literals(expr: str) -> set[float]:
    """The numbers in an expression (not durations, label values or offsets)."""
    out: set[float] = set()
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\[[^\]]*\]|\boffset\s+\S+', " ", expr)
    for m in re.finditer(r"(?<![a-zA-Z_:0-9.])(\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?![a-zA-Z_:0-9])", text):
        out.add(float(m.group(1)))
    return out


@dataclass
class DrillResult:
    fired: dict[str, dict[str, str]]  # alert -> scenario -> first time it fired there
    scenarios: list[Scenario]
    timeline: Timeline
    reads: dict[str, list[str]]  # alert -> families of the API's metrics it reads
    error: str | None = None


def _timeline(alerts: list[Rule], record_lookback: float, interval_s: float,
              eval_s: float, max_for_s: float) -> tuple[Timeline, float]:
    """A timeline long enough for these alerts: a healthy history covering their longest
    window and offset, then a stress phase covering a window plus their longest `for`.
    Also the time from which the healthy scenario is judged (windows full, `for` elapsed)."""
    lookback = max((lookback_s(r.expr) for r in alerts), default=0.0) + record_lookback
    longest_for = min(max((r.for_s for r in alerts), default=0.0), max_for_s)
    history = max(lookback, 600.0) + 300.0
    stress = lookback + longest_for + 600.0 + 2 * eval_s
    t0 = int(math.ceil(history / interval_s))
    return (Timeline(interval_s, eval_s, t0, t0 + int(math.ceil(stress / interval_s))),
            lookback + longest_for + eval_s)


def run_drill(*, promtool: str, scratch: Path, rule_paths: list[Path], rules: list[Rule],
              obs: Observation, job_labels: dict[str, str], up_jobs: list[dict[str, str]],
              interval_s: float, eval_s: float, healthy_rps: float, slo_s: float,
              timeout_s: float, max_lookback_s: float, max_for_s: float,
              traffic_factor: float = TRAFFIC_FACTOR, error_share: float = ERROR_SHARE,
              latency_factor: float = LATENCY_FACTOR, gauge_values: tuple[float, ...] = GAUGE_VALUES,
              gauge_factors: tuple[float, ...] = GAUGE_FACTORS) -> DrillResult:
    exposed = obs.after.names() | obs.good.names()
    family = {n: obs.after.family(n)[0] for n in exposed}
    alerts = [r for r in rules if r.kind == "alert"]
    reads = {a: {family[n] for n in names}
             for a, names in families_per_alert(rules, exposed).items()}
    used = set().union(*reads.values()) if reads else set()
    record_lookback = max((lookback_s(r.expr) for r in rules if r.kind == "record"), default=0.0)
    evidence_reads = {a: sorted(f) for a, f in reads.items()}
    full, _ = _timeline(alerts, record_lookback, interval_s, eval_s, max_for_s)
    lookback = max((lookback_s(r.expr) for r in alerts), default=0.0) + record_lookback
    if lookback > max_lookback_s:
        return DrillResult({}, [], full, evidence_reads,
                           error=f"the rules look back {lookback / 3600:.1f} h (ranges plus offsets); "
                                 f"the drill simulates at most {max_lookback_s / 3600:.0f} h")
    series = build_series(obs, used, job_labels)
    gauge_literals: dict[str, set[float]] = {}
    for a in alerts:
        for fam in reads[a.name]:
            gauge_literals.setdefault(fam, set()).update(literals(a.expr))
    scs = scenarios(series, gauge_literals, healthy_rps, obs.n_good, obs.n_bad, slo_s,
                    traffic_factor=traffic_factor, error_share=error_share,
                    latency_factor=latency_factor, gauge_values=gauge_values,
                    gauge_factors=gauge_factors)
    healthy = scs[0]
    sels = selectors_per_alert(rules)
    read_by = {a: {i for i, s in enumerate(series)
                   if any(name == s.name and matches(s.labels, m) for name, m in sels[a])}
               for a in sels}
    groups = []
    for sc in scs:
        asked = [a for a in alerts if sc.target is None or sc.target in reads[a.name]]
        if not asked:
            continue
        tl, warm = _timeline(asked, record_lookback, interval_s, eval_s, max_for_s)
        start = warm if sc.kind == "healthy" else tl.seconds(tl.t0)
        needed = set().union(*(read_by[a.name] for a in asked))
        inputs = [{"series": s.text(), "values": series_values(s, i, sc, healthy, tl)}
                  for i, s in enumerate(series) if i in needed]
        for job in up_jobs:
            down = sc.down and job == {k: job_labels.get(k) for k in job}
            inputs.append({"series": Series("up", job, "up", "gauge", False, 1.0).text(),
                           "values": f"1+0x{tl.t0 - 1} {0 if down else 1}+0x{tl.n - tl.t0}"})
        groups.append({"name": sc.name, "interval": f"{_secs(interval_s)}s", "input_series": inputs,
                       "alert_rule_test": [
                           {"eval_time": f"{_secs(t)}s", "alertname": a, "exp_alerts": []}
                           for t in _ticks(start, tl.seconds(tl.n), eval_s, 40)
                           for a in sorted({r.name for r in asked})]})
    header = {"rule_files": [str(p) for p in rule_paths], "evaluation_interval": f"{_secs(eval_s)}s"}
    runs = _promtool_tests(promtool, scratch, header, groups, timeout_s)
    fired: dict[str, dict[str, str]] = {}
    for _, output in runs:
        current = ""
        for line in output.splitlines():
            m = re.match(r"\s*name:\s*(.*?),\s*$", line)
            if m:
                current = m.group(1)
                continue
            m = re.match(r"\s*alertname:\s*(.*?),\s*time:\s*(\S+?),", line)
            if m:
                fired.setdefault(m.group(1), {}).setdefault(current, m.group(2))
    if any(code is None for code, _ in runs):
        return DrillResult(fired, scs, full, evidence_reads,
                           error=f"promtool test rules did not finish within {timeout_s:.0f}s")
    if any(code != 0 for code, _ in runs) and not fired:
        output = next(out for code, out in runs if code != 0)
        tail = [ln.strip() for ln in output.splitlines() if ln.strip()][-5:]
        return DrillResult(fired, scs, full, evidence_reads,
                           error=f"promtool test rules failed: {' | '.join(tail)[:400]}")
    return DrillResult(fired, scs, full, evidence_reads)


def _promtool_tests(promtool: str, scratch: Path, header: dict[str, Any], groups: list[dict[str, Any]],
                    timeout_s: float, workers: int = 2) -> list[tuple[int | None, str]]:
    """Run the test groups split over `workers` promtool processes at once (each group's cost
    is about its number of samples); [(exit status or None on timeout, output)]."""
    buckets: list[list[dict[str, Any]]] = [[] for _ in range(workers)]
    load = [0] * workers
    for g in sorted(groups, key=lambda g: -_cost(g)):
        k = load.index(min(load))
        buckets[k].append(g)
        load[k] += _cost(g)
    with ExitStack() as stack:
        servers = []
        for k, bucket in enumerate(b for b in buckets if b):
            path = scratch / f"alert-drill-{k}.yml"
            path.write_text(json.dumps({**header, "tests": bucket}), encoding="utf-8")
            servers.append(stack.enter_context(proc.start_server(
                [promtool, "test", "rules", str(path)], cwd=scratch,
                log_path=scratch / f"alert-drill-{k}.log", env=proc.scrubbed_env())))
        deadline = time.monotonic() + timeout_s
        while any(s.alive() for s in servers) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [(s.proc.poll(), s.log_path.read_text(encoding="utf-8", errors="replace"))
                for s in servers]


def _cost(group: dict[str, Any]) -> int:
    return sum(len(s["values"]) for s in group["input_series"]) + 50 * len(group["alert_rule_test"])


def _secs(x: float) -> int:
    return max(1, int(round(x)))


def _ticks(start: float, end: float, every: float, most: int) -> list[float]:
    """Evaluation times from start to end on the evaluation grid, at most `most` of them."""
    first = math.ceil(start / every) * every
    last = math.floor(end / every) * every
    if first > last:
        return [last]
    count = int((last - first) // every) + 1
    stride = max(1, math.ceil(count / most))
    return sorted({first + k * every for k in range(0, count, stride)} | {last})
