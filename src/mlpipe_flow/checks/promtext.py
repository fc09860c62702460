"""Reading what the monitoring gate judges: the Prometheus text exposition a live API serves,
the metric names and time windows a PromQL expression uses, Grafana dashboards and rule files.

Parsing only; every verdict is in `monitoring_checks`, `alert_drill` and `drift_drill`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# sample-name suffixes of each metric type (text format 0.0.4 and OpenMetrics)
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"), "gauge": (), "untyped": (), "unknown": (),
            "info": ("_info",), "stateset": (), "gaugehistogram": ("_bucket", "_gsum", "_gcount")}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan", "le", "atan2", "start", "end", "x"}
# series Prometheus makes itself (not the API): a rule or dashboard may read them
PROMETHEUS_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds",
                     "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                     "scrape_series_added"}
# what a metric is about, by its name (dashboard coverage, alert drill scenarios)
LATENCY_NAME = re.compile(r"latency|duration|seconds|millis|_ms(?:_|$)|_time(?:_|$)", re.I)
MODEL_NAME = re.compile(r"drift|confidence|score|accuracy|psi|auc|rmse|mae|f1|precision|recall"
                        r"|probab|prediction", re.I)
ERROR_NAME = re.compile(r"error|fail|exception", re.I)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?\s*')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}

Labels = tuple[tuple[str, str], ...]


# --- the text exposition ----------------------------------------------------------------------
def _unescape(value: str) -> str:
    return value.replace("\\\\", "\0").replace('\\"', '"').replace("\\n", "\n").replace("\0", "\\")


def _number(text: str) -> float:
    t = text.strip()
    if t in ("+Inf", "Inf"):
        return math.inf
    if t == "-Inf":
        return -math.inf
    return float(t)  # "NaN" parses too


@dataclass
class Scrape:
    """One /metrics answer: declared types and every sample (name, sorted labels) -> value."""

    types: dict[str, str] = field(default_factory=dict)
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def family(self, sample_name: str) -> tuple[str, str]:
        """(family, type) a sample name belongs to; ("", "untyped") when nothing declares it."""
        if sample_name in self.types:
            return sample_name, self.types[sample_name]
        for suffix in ("_total", "_bucket", "_sum", "_count", "_created", "_info", "_gsum", "_gcount"):
            base = sample_name[: -len(suffix)]
            if sample_name.endswith(suffix) and base in self.types \
                    and suffix in SUFFIXES.get(self.types[base], ()):
                return base, self.types[base]
        return sample_name, "untyped"

    def names(self) -> set[str]:
        """Sample names with at least one sample (a `# TYPE` line alone is not a sample)."""
        return {name for name, _ in self.samples}

    def series(self, family: str) -> dict[tuple[str, Labels], float]:
        """Every sample of one family (all its suffixes), `_created` left out."""
        return {k: v for k, v in self.samples.items()
                if self.family(k[0])[0] == family and not k[0].endswith("_created")}

    def count(self, family: str) -> float:
        """What counts the family's updates: the sum of its counter or `_count` samples."""
        kind = self.types.get(family, "untyped")
        names = {"counter": {family, family + "_total"}, "histogram": {family + "_count"},
                 "summary": {family + "_count"}}.get(kind, set())
        return sum(v for (n, _), v in self.samples.items() if n in names and math.isfinite(v))


def parse_exposition(text: str) -> Scrape:
    scrape = Scrape()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                scrape.types[parts[2]] = parts[3].lower()
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{(?:[^}\"]|\"(?:[^\"\\]|\\.)*\")*\})?\s*(\S+)",
                     line)
        if not m:
            continue
        labels: Labels = ()
        if m.group(2):
            labels = tuple(sorted((k, _unescape(v)) for k, v in _LABEL.findall(m.group(2)[1:-1])))
        try:
            scrape.samples[(m.group(1), labels)] = _number(m.group(3))
        except ValueError:
            continue
    return scrape


# --- PromQL -----------------------------------------------------------------------------------
def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression reads (not functions, keywords, labels or grouping labels)."""
    names = set(re.findall(r'__name__\s*=\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', expr))
    s = _STRING.sub("", expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"#[^\n]*", " ", s)
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        word = m.group(0)
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue  # 1e9, 5m, 0x1f
        names.add(word)
    return names


Matcher = tuple[str, str, str]  # (label, op, value)
_SELECTOR_BODY = r'\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\}'
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def selectors(expr: str) -> list[tuple[str, list[Matcher]]]:
    """(metric name, label matchers) of every selector of a named metric in the expression."""
    out: list[tuple[str, list[Matcher]]] = []
    for name in promql_metrics(expr):
        pattern = re.compile(r"(?<![a-zA-Z0-9_:])" + re.escape(name) + r"(?![a-zA-Z0-9_:])\s*(?:"
                             + _SELECTOR_BODY + ")?")
        for m in pattern.finditer(expr):
            body = m.group(1) or ""
            out.append((name, [(k, op, _unescape(v)) for k, op, v in _MATCHER.findall(body)]))
    return out


def matches(labels: dict[str, str], matchers: list[Matcher]) -> bool:
    """Whether a series' labels satisfy the matchers (regexes anchored, as in PromQL)."""
    for label, op, value in matchers:
        have = labels.get(label, "")
        if op in ("=", "!="):
            ok = have == value
        else:
            try:
                ok = re.fullmatch(value, have) is not None
            except re.error:
                ok = True  # RE2 syntax Python lacks: keep the series
                if op == "!~":
                    ok = False
        if ok != (op in ("=", "=~")):
            return False
    return True


def duration_s(text: str) -> float:
    return sum(float(n) * UNIT_S[u] for n, u in _DURATION_PART.findall(text))


def lookback_s(expr: str) -> float:
    """How far back in time the expression reads: its longest range (or subquery range) plus
    its longest offset."""
    s = _STRING.sub("", expr)
    ranges = [duration_s(m.group(1)) for m in re.finditer(r"\[\s*([0-9smhdwy.]+)\s*(?::[^\]]*)?\]", s)]
    offsets = [abs(duration_s(m.group(1))) for m in re.finditer(r"\boffset\s+(-?[0-9smhdwy.]+)", s)]
    return max(ranges, default=0.0) + max(offsets, default=0.0)


def grafana_to_promql(expr: str) -> str:
    """A Grafana query as plain PromQL: its interval macros become durations, template
    variables a placeholder value."""
    s = re.sub(r"\$\{?__(rate_interval|interval|range)\}?(?!_)", "5m", expr)
    s = re.sub(r"\$\{?__(interval_ms|range_ms|range_s)\}?", "300", s)
    out, i = [], 0
    var = re.compile(r"\$\{[^}]+\}|\$[a-zA-Z_][a-zA-Z0-9_]*|\[\[[^\]]+\]\]")
    for m in var.finditer(s):
        before = s[:m.start()]
        in_string = before.count('"') % 2 == 1
        in_range = before.rfind("[") > before.rfind("]")
        out.append(s[i:m.start()])
        out.append(".*" if in_string else ("5m" if in_range else "x"))
        i = m.end()
    out.append(s[i:])
    return "".join(out)


# --- files the gate reads -----------------------------------------------------------------------
def load_yaml_docs(path: Path) -> list[Any]:
    import yaml

    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def rule_files(ws: Path, pattern: str) -> tuple[list[Path], list[Path]]:
    """(rule files, promtool test files) under the pattern: a file whose top level has
    `tests:` (or a name with 'test') is a test file."""
    rules: list[Path] = []
    tests: list[Path] = []
    for f in sorted(p for p in ws.glob(pattern) if p.is_file()):
        try:
            docs = load_yaml_docs(f)
        except Exception:  # noqa: BLE001 - an unreadable file is a rule file promtool rejects
            docs = []
        is_test = any(isinstance(d, dict) and "tests" in d for d in docs) or (
            "test" in f.name.lower() and not any(isinstance(d, dict) and "groups" in d for d in docs))
        (tests if is_test else rules).append(f)
    return rules, tests


@dataclass
class Rule:
    file: str
    group: str
    name: str  # the alert name or the recorded series
    expr: str
    kind: str  # "alert" | "record"
    for_s: float = 0.0
    labels: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    interval_s: float | None = None


def read_rules(ws: Path, files: list[Path]) -> tuple[list[Rule], list[str]]:
    """Every rule in the files, and the problems that stop reading them."""
    rules: list[Rule] = []
    problems: list[str] = []
    for f in files:
        rel = f.relative_to(ws).as_posix()
        try:
            docs = load_yaml_docs(f)
        except Exception as e:  # noqa: BLE001 - YAML errors of any kind
            problems.append(f"{rel}: invalid YAML: {str(e).splitlines()[0]}")
            continue
        for doc in docs:
            groups = doc.get("groups") if isinstance(doc, dict) else None
            if not isinstance(groups, list) or not groups:
                problems.append(f"{rel}: no rule groups")
                continue
            for g in groups:
                if not isinstance(g, dict):
                    continue
                interval = duration_s(str(g["interval"])) if g.get("interval") else None
                for r in g.get("rules") or []:
                    if not isinstance(r, dict):
                        continue
                    kind = "alert" if r.get("alert") else "record"
                    rules.append(Rule(rel, str(g.get("name", "")), str(r.get("alert") or r.get("record")),
                                      str(r.get("expr", "")), kind,
                                      duration_s(str(r.get("for", "0s"))),
                                      dict(r.get("labels") or {}), dict(r.get("annotations") or {}),
                                      interval))
    return rules, problems


def dashboard_files(ws: Path, pattern: str) -> list[Path]:
    return sorted(p for p in ws.glob(pattern) if p.is_file())


def dashboard_model(doc: Any) -> dict[str, Any] | None:
    """The dashboard model of a file: plain, or wrapped as the HTTP API posts it."""
    if isinstance(doc, dict) and isinstance(doc.get("dashboard"), dict):
        doc = doc["dashboard"]
    return doc if isinstance(doc, dict) else None


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row: top-level, inside collapsed rows, or in old-style rows."""
    out: list[dict[str, Any]] = []

    def walk(items: Any) -> None:
        for p in items if isinstance(items, list) else []:
            if not isinstance(p, dict):
                continue
            if p.get("type") == "row":
                walk(p.get("panels"))
            else:
                out.append(p)
                walk(p.get("panels"))

    walk(model.get("panels"))
    for row in model.get("rows") or []:
        if isinstance(row, dict):
            walk(row.get("panels"))
    return out


def panel_exprs(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel.get("targets") or []
            if isinstance(t, dict) and isinstance(t.get("expr"), str) and t["expr"].strip()
            and not t.get("hide")]


def dashboard_exprs(ws: Path, pattern: str) -> tuple[dict[str, list[str]], list[str]]:
    """{file: [PromQL of every panel target]}, and the files that do not parse."""
    out: dict[str, list[str]] = {}
    bad: list[str] = []
    for f in dashboard_files(ws, pattern):
        rel = f.relative_to(ws).as_posix()
        try:
            model = dashboard_model(json.loads(f.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as e:
            bad.append(f"{rel}: {str(e).splitlines()[0]}")
            continue
        if model is None:
            bad.append(f"{rel}: not a dashboard object")
            continue
        out[rel] = [grafana_to_promql(e) for p in panels(model) for e in panel_exprs(p)]
    return out, bad


def promtool_error(output: str) -> str:
    """promtool's complaint without its progress lines, each line once."""
    lines: list[str] = []
    for ln in output.splitlines():
        ln = ln.strip()
        if ln and not ln.startswith(("Checking ", "SUCCESS", "Unit Testing")) and ln != "FAILED:" \
                and ln not in lines:
            lines.append(ln)
    return " | ".join(lines)[:500] or "no output"
