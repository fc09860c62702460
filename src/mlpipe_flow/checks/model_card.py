"""The model card: its sections must say something (`model_card_sections`), and every number it
states about the model must be one the gate measured itself (`model_card_claims`).

Sections: each required heading is present; its text is not filler — no TODO/TBD/lorem/
placeholder markers, at least `min_words` words, not the same sentence as another section,
not a few words repeated; Metrics names the primary metric; Fairness names the spec's group
columns.

Claims: in the Metrics and Fairness sections (and any section about performance or results)
every decimal number and percentage, elsewhere every such number on a line that names a
metric, is a claim. A claim must match a value of the gate's own measurement of the saved model
(model_measure.py) within the reported-score tolerance plus the rounding of the stated digits:
the test score of the metric it names (every metric the gate computes: metrics.applicable), the
gate's baseline, its cross-validation (or the CV numbers of experiments/results.json, which
the cv-stability and mlflow-runs checks hold to the gate's CV and the MLflow runs), the margin
over the baseline, per-group values, and the gate's and spec's thresholds. Words on the line
narrow what it may match: 'test', 'baseline', 'CV'/'fold', 'margin', a group's row. For every
group column of the spec the card holds a table with a row per group (levels with at least
MIN_GROUP_ROWS test rows) stating the primary metric the gate measures on that group; a
fairness audit or parity claimed without such a table is a false claim.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.model_checks import cv_claim_problems
from mlpipe_flow.checks.model_measure import (
    ScoreInputs,
    measure,
    score_tolerance,
    tolerance_rule,
    unit,
)
from mlpipe_flow.models import CheckResult
from mlpipe_flow.spec import margin

SECTIONS = ["Intended use", "Data", "Metrics", "Limitations", "Fairness"]
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
FILLER = re.compile(r"\b(TODO|TBD|TBA|FIXME|XXX+|lorem|ipsum|placeholder|coming soon|"
                    r"to be (?:added|written|determined|completed|filled(?: in)?|done|decided|"
                    r"defined|confirmed|updated)|fill (?:in|me)|insert \w+ here|"
                    r"add (?:details|content|text) here|not yet (?:written|documented))\b",
                    re.IGNORECASE)
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+")
SYNONYMS: dict[str, list[str]] = {
    "roc_auc": ["roc_auc", "roc auc", "roc-auc", "auc", "auroc", "auc-roc", "auc roc",
                "area under the roc curve", "area under the curve"],
    "average_precision": ["average_precision", "average precision", "pr auc", "pr-auc", "auprc",
                          "auc-pr"],
    "log_loss": ["log_loss", "log loss", "logloss", "log-loss", "cross-entropy",
                 "cross entropy"],
    "brier": ["brier", "brier score"],
    "accuracy": ["accuracy"],
    "balanced_accuracy": ["balanced_accuracy", "balanced accuracy"],
    "f1_macro": ["f1_macro", "macro f1", "macro-f1", "f1 macro", "f1-macro", "macro-averaged f1",
                 "macro averaged f1"],
    "f1": ["f1", "f1-score", "f1 score", "f-score", "f score"],
    "precision": ["precision"],
    "recall": ["recall", "sensitivity", "true positive rate"],
    "rmse": ["rmse", "root mean squared error", "root mean square error",
             "root-mean-square error"],
    "mae": ["mae", "mean absolute error"],
    "r2": ["r2", "r²", "r^2", "r-squared", "r squared", "coefficient of determination"],
    "mape": ["mape", "mean absolute percentage error"],
}
_ALTS = sorted(((s, m) for m, ss in SYNONYMS.items() for s in ss), key=lambda t: -len(t[0]))
METRIC_RE = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(re.escape(s) for s, _ in _ALTS)
                       + r")(?![A-Za-z0-9_])", re.IGNORECASE)
_BY_NAME = {s.lower(): m for s, m in _ALTS}
NUMBER = re.compile(r"(?<![\w.])(-?(?:\d+(?:\.\d*)?|\.\d+)[eE][+-]?\d+|\d+(?:\.\d+)?\s?%|-?\d*\.\d+)"
                    r"(?![\w.%]*\d)(?![A-Za-z])")  # 1.6e+05 too: a claim in any notation
TAGS = {
    "test": re.compile(r"\btest|hold-?out|held-?out", re.I),
    "baseline": re.compile(r"baseline|dummy|majority|prior|mean predictor", re.I),
    "cv": re.compile(r"\bcv\b|cross[- ]?validat|\bfolds?\b", re.I),
    "margin": re.compile(r"margin|improve|gini|\blift|better than|headroom|reduction", re.I),
}
CLAIM_SECTIONS = re.compile(r"metric|fairness|performance|evaluation|result|bias|group", re.I)
_NONE = r"(?:significant |material |measurable |notable |meaningful |evidence of |signs of )?"
_GAPS = r"(?:bias|biases|disparit(?:y|ies)|differences?|gaps?|unfairness)"
AUDIT = re.compile(  # claims that a fairness evaluation was done and came out clean
    r"\baudited\b|\baudit (?:showed|shows|found|finds|revealed|confirmed)\b|"
    rf"\b(?:found|finds|showed|shows|revealed|detected|observed|confirmed) no {_NONE}{_GAPS}|"
    rf"\bno {_NONE}{_GAPS} (?:was|were|is|are|has been|have been) (?:found|detected|observed|"
    r"present|identified)|\bperforms? (?:equally|consistently|similarly) (?:well )?(?:across|for)|"
    r"\b(?:fair|unbiased) (?:across|for all)\b|\bparity (?:was|is|has been) (?:achieved|met|"
    r"confirmed|verified)", re.I)
MIN_GROUP_ROWS = 10


class ModelCardParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    glob: str = "model_cards/*.md"
    sections: list[str] = Field(default_factory=lambda: list(SECTIONS))
    min_words: int = Field(default=20, ge=0, description="words of text each section needs")

    def describe(self) -> str:
        return (f"a model card `{self.glob}` has a heading for each of "
                + ", ".join(self.sections) + f", each with at least {self.min_words} words of its "
                "own: no TODO/TBD/lorem/placeholder text, no sentence repeated across sections, "
                "not a few words repeated; Metrics names the spec's primary metric and Fairness "
                "names each of the spec's `group_columns`.")


@dataclass
class Part:
    level: int  # heading level (0: the text before the first heading)
    title: str  # lower case
    path: str  # the titles of its enclosing headings and its own, joined
    lines: list[str] = field(default_factory=list)


@dataclass
class Card:
    rel: str
    parts: list[Part] = field(default_factory=list)

    @property
    def sections(self) -> dict[str, list[str]]:
        """heading (lower case) -> its own lines (not its subsections')."""
        out: dict[str, list[str]] = {}
        for part in self.parts:
            out.setdefault(part.title, []).extend(part.lines)
        return out

    def body(self, want: str) -> list[str]:
        """The lines of the sections whose heading names `want`, subsections included."""
        out: list[str] = []
        inside: int | None = None
        for part in self.parts:
            if inside is not None and part.level <= inside:
                inside = None
            if inside is None and part.level and want.lower() in part.title:
                inside = part.level
            if inside is not None:
                out += ([f"### {part.title}"] if part.level > inside else []) + part.lines
        return out


def read_card(path: Path, ws: Path) -> Card:
    card = Card(path.relative_to(ws).as_posix())
    stack: list[tuple[int, str]] = []
    part = Part(0, "(preamble)", "(preamble)")
    card.parts.append(part)
    fenced = False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        m = HEADING.match(line) if not fenced else None
        if m:
            level = len(line) - len(line.lstrip("#"))
            title = m.group(1).strip().lower()
            stack = [(lv, t) for lv, t in stack if lv < level] + [(level, title)]
            part = Part(level, title, " / ".join(t for _, t in stack))
            card.parts.append(part)
        elif not fenced:
            part.lines.append(line.replace("`", "").replace("**", ""))
    return card


def metrics_named(text: str) -> set[str]:
    return {_BY_NAME[m.group(1).lower()] for m in METRIC_RE.finditer(text)}


def _sentences(lines: list[str]) -> list[str]:
    text = " ".join(ln for ln in lines if not ln.strip().startswith("|"))
    out = []
    for s in re.split(r"(?<=[.!?])\s+|\n", text):
        words = [w.lower() for w in WORD.findall(s)]
        if len(words) >= 6:
            out.append(" ".join(words))
    return out


def model_card_sections(ctx: CheckContext, params: ModelCardParams) -> CheckResult:
    cards = sorted(ctx.workspace.glob(params.glob))
    if not cards:
        return result("failed", f"no model card matches {params.glob}")
    spec = ctx.spec() or {}
    best: dict[str, Any] = {}
    for path in cards:
        card = read_card(path, ctx.workspace)
        problems = _section_problems(card, params, spec)
        if not problems:
            return result("passed", f"{card.rel} has all {len(params.sections)} sections, each "
                          "with its own text", card=card.rel, sections=params.sections)
        if not best or len(problems) < len(best["problems"]):
            best = {"card": card.rel, "problems": problems}
    return result("failed", f"{best['card']}: {'; '.join(best['problems'][:4])} (expected: "
                  f"{', '.join(params.sections)}, each with real content)", **best)


def _section_problems(card: Card, params: ModelCardParams, spec: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for want in params.sections:
        if not any(want.lower() in h for h in card.sections):
            problems.append(f"missing section {want!r}")
            continue
        lines = card.body(want)
        text = "\n".join(lines)
        words = WORD.findall(text)
        marker = FILLER.search(text)
        if marker:
            problems.append(f"section {want!r} is filler ({marker.group(0)!r})")
        elif len(words) < params.min_words:
            problems.append(f"section {want!r} has {len(words)} words, expected at least "
                            f"{params.min_words}")
        elif len(words) >= 30 and len({w.lower() for w in words}) < 0.3 * len(words):
            problems.append(f"section {want!r} repeats itself ({len({w.lower() for w in words})} "
                            f"distinct words of {len(words)})")
        for sentence in _sentences(lines):
            other = seen.get(sentence)
            if other is not None and other != want:
                problems.append(f"sections {other!r} and {want!r} repeat the same sentence "
                                f"({sentence[:60]!r}): boilerplate, not content")
                break
            seen[sentence] = want
        if want.lower() == "metrics" and spec.get("primary_metric") and \
                spec["primary_metric"] not in metrics_named(text):
            problems.append(f"section 'Metrics' does not name the primary metric "
                            f"{spec['primary_metric']}")
        if want.lower() == "fairness":
            absent = [g for g in spec.get("group_columns") or [] if not _mentions(text, g)]
            if absent:
                problems.append(f"section 'Fairness' does not name the group column(s) {absent} "
                                "of ml-spec.yaml")
    return problems


def _mentions(text: str, name: str) -> bool:
    low = text.lower()
    return name.lower() in low or name.lower().replace("_", " ") in low


# -- claims ----------------------------------------------------------------------------
@dataclass
class Known:
    value: float
    metric: str | None  # None: not tied to one metric (shares, thresholds)
    tag: str  # test | baseline | cv | results | margin | group:<col>=<level> | share | threshold
    tol: float


class CardClaimsParams(ScoreInputs):
    glob: str = "model_cards/*.md"
    results: str = "experiments/results.json"
    tolerance: float = Field(default=0.01, ge=0, description="as reported-score")
    min_margin: float = Field(default=0.10, description="the beats-baseline threshold")
    max_std: float = Field(default=0.05, description="the cv-stability threshold")

    def describe(self) -> str:
        return ("every decimal number or percentage in the Metrics and Fairness sections (and any "
                "section about performance or results), and any such number on a line that names "
                "a metric, is a claim checked against the gate's own measurement of the saved "
                f"model, within {tolerance_rule(self.tolerance)} plus the rounding of the digits you "
                "state: the test score of the metric the line names (every metric the gate "
                "computes: classification roc_auc, average_precision, log_loss, brier, accuracy, "
                "balanced_accuracy, f1_macro, f1, precision, recall — of the positive class, macro "
                "averages for multiclass; regression rmse, mae, r2, mape), the gate's baseline "
                "(and the other usual dummy), the margin, the cross-validation mean and std (yours "
                "from the results file when they agree with the gate's), per-group values, and the "
                f"thresholds (the spec's `metric_threshold`, the margin {self.min_margin:.0%}, the "
                f"CV std {self.max_std:g}, the tolerance {self.tolerance:g}). Words on the line "
                "narrow what a number may match ('test', 'baseline', 'CV'/'fold', 'margin', a "
                "group's row). For each `group_columns` entry of the spec the card holds a table "
                "naming the column in its header or the line above, one row per group (its value "
                f"in the first cell; groups with at least {MIN_GROUP_ROWS} test rows) with the "
                "primary metric on that group's test rows. A fairness audit, parity or \"no bias\" "
                "claimed without such a table fails.")


def model_card_claims(ctx: CheckContext, params: CardClaimsParams) -> CheckResult:
    cards = sorted(ctx.workspace.glob(params.glob))
    if not cards:
        return result("failed", f"no model card matches {params.glob}")
    s = measure(ctx, params)
    if "error" in s:
        return result(s.get("status", "failed"),
                      f"cannot score {params.model} on {params.test}: {s['error']}")
    spec = ctx.spec() or {}
    known = _known(ctx, params, s, spec)
    worst: dict[str, Any] = {}
    for path in cards:
        card = read_card(path, ctx.workspace)
        checked, problems = _claims(card, s, spec, known)
        problems += _group_tables(card, s, spec, known)
        if not problems:
            return result("passed", f"{card.rel}: {checked} stated number(s) match the gate's "
                          f"measurement; per-group tables for {list(s.get('groups') or {})}",
                          card=card.rel, claims=checked, groups=_group_summary(s))
        if not worst or len(problems) < len(worst["problems"]):
            worst = {"card": card.rel, "problems": problems, "groups": _group_summary(s),
                     "test_metrics": s["test_metrics"]}
    return result("failed", f"{worst['card']}: " + "; ".join(worst["problems"][:3]) + (
        f" (+{len(worst['problems']) - 3} more)" if len(worst["problems"]) > 3 else ""), **worst)


def _group_summary(s: dict[str, Any]) -> dict[str, Any]:
    metric = s["metric"]
    return {g: {lvl: (v["rows"], v["metrics"].get(metric)) for lvl, v in t.items()}
            for g, t in (s.get("groups") or {}).items() if "error" not in t}


def _known(ctx: CheckContext, params: CardClaimsParams, s: dict[str, Any],
           spec: dict[str, Any]) -> list[Known]:
    metric, u = s["metric"], unit(s["metric"], s["scale"])
    k: list[Known] = []
    for name, v in (s.get("test_metrics") or {}).items():
        if v is not None:
            k.append(Known(v, name, "test", score_tolerance(v, params.tolerance)))
    for key in ("baseline_metrics", "baseline_alternatives"):
        for name, v in (s.get(key) or {}).items():
            if v is not None:
                k.append(Known(v, name, "baseline", score_tolerance(v, params.tolerance)))
    k.append(Known(margin(metric, s["score"], s["baseline"]), None, "margin", 0.01))
    cv = s.get("cv") or {}
    if "mean" in cv:
        k.append(Known(cv["mean"], metric, "cv", 0.02 * u + 3 * cv["sd_fold"] / 5 ** 0.5))
        k.append(Known(cv["std"], metric, "cv", max(0.01 * u, cv["std"] * 0.5)))
    try:
        res = json.loads(ctx.path(params.results).read_text(encoding="utf-8"))
        models = res["models"]
        best = models[res["best_model"]]
        vetted = "mean" in cv and not cv_claim_problems(
            s, "results", float(best["cv_mean"]), float(best["cv_std"]),
            len(best.get("cv_scores") or []) or 5, best.get("cv_rows"))
    except (OSError, ValueError, KeyError, TypeError):
        models, vetted = {}, False
    if vetted:  # results.json's CV table agrees with the gate: the card may restate it
        for entry in models.values():
            for key in ("cv_mean", "cv_std"):
                v = entry.get(key) if isinstance(entry, dict) else None
                if isinstance(v, (int, float)):
                    k.append(Known(float(v), metric, "cv", 1e-6 * max(1.0, abs(v))))
    for col, table in (s.get("groups") or {}).items():
        if "error" in table:
            continue
        for level, g in table.items():
            tag = f"group:{col}={level}"
            k.append(Known(g["share"], None, tag, 0.002))
            for name, v in g["metrics"].items():
                if v is not None:
                    k.append(Known(v, name, tag, score_tolerance(v, params.tolerance)))
    for v in (params.min_margin, params.max_std, params.tolerance, spec.get("metric_threshold"),
              *((spec.get("splits") or {}).values())):
        if isinstance(v, (int, float)):
            k.append(Known(float(v), None, "threshold", 1e-9))
    return k


def _parse_number(token: str) -> tuple[float, float]:
    """(value as a fraction, half a unit of its last stated digit)."""
    t = token.replace(" ", "")
    pct = t.endswith("%")
    t = t.rstrip("%")
    mantissa, _, exponent = t.lower().partition("e")
    digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
    v, r = float(t), 0.5 * 10.0 ** (int(exponent or 0) - digits)
    return (v / 100, r / 100) if pct else (v, r)


def _matches(token: str, known: list[Known], allowed_metrics: set[str],
             tags: set[str]) -> bool:
    value, rounding = _parse_number(token)
    tags = tags or UNTAGGED
    for kv in known:
        if allowed_metrics and kv.metric is not None and kv.metric not in allowed_metrics:
            continue
        if tags and kv.tag not in tags and kv.tag != "threshold":
            continue
        if abs(value - kv.value) <= kv.tol + rounding:
            return True
    return False


def _line_tags(text: str) -> set[str]:
    return {t for t, rx in TAGS.items() if rx.search(text)}


UNTAGGED = {"test", "cv", "margin"}  # what a number on a line with no context word may be


def _groups_named(text: str, s: dict[str, Any]) -> set[str]:
    """Groups a prose line names: a level as a word ('east', 'Female'), or col=level."""
    out = set()
    low = text.lower()
    for col, table in (s.get("groups") or {}).items():
        if "error" in table:
            continue
        for level in table:
            lv = level.lower()
            named = re.search(rf"{re.escape(col.lower())}\s*(?:=|:|is)?\s*{re.escape(lv)}\b",
                              low)
            if not named and len(lv) >= 2 and not lv.replace(".", "").isdigit():
                named = re.search(rf"(?<![\w-]){re.escape(lv)}(?![\w-])", low)
            if named:
                out.add(f"group:{col}={level}")
    return out


def _claims(card: Card, s: dict[str, Any], spec: dict[str, Any],
            known: list[Known]) -> tuple[int, list[str]]:
    primary = s["metric"]
    measurable = set(s.get("test_metrics") or {})
    checked, problems = 0, []
    for part in card.parts:
        heading, lines = part.title, part.lines
        claim_section = bool(CLAIM_SECTIONS.search(part.path))
        section_metrics = metrics_named(part.path + " " + " ".join(
            ln for ln in lines if not ln.strip().startswith("|"))) or {primary}
        header: list[str] = []
        for i, line in enumerate(lines):
            is_row = line.strip().startswith("|")
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if is_row else [line]
            if is_row and (i == 0 or not lines[i - 1].strip().startswith("|")):
                header = cells
                continue
            if is_row and all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
                continue
            row_metrics = metrics_named(line)
            row_tags = _line_tags(line) | (_line_tags(" ".join(header)) if is_row else set())
            groups = _group_tags(cells, s) if is_row else _groups_named(line, s)
            if is_row and groups:
                row_tags = groups
            elif groups:
                row_tags |= groups
            # the cell naming the row's group is its label, not a claim (sex = 2, age band 0.05)
            labels = {j for j, c in enumerate(cells[:2]) if is_row and groups and
                      any(_is_level(c, *t[len("group:"):].split("=", 1)) for t in groups)}
            for j, cell in enumerate(cells):
                if j in labels:
                    continue
                col_head = header[j] if is_row and j < len(header) else ""
                names = metrics_named(col_head) or row_metrics
                if not claim_section and not names:
                    continue
                for m in NUMBER.finditer(cell):
                    token = m.group(1)
                    before = cell[max(0, m.start() - 12):m.start()].lower()
                    if re.search(r"p ?[<=]|seed|version|python|v$", before):
                        continue
                    unknown = names - measurable
                    if unknown and not names & measurable:
                        problems.append(f"{heading!r}: {token} for "
                                        f"{', '.join(sorted(unknown))}, a metric the gate does "
                                        f"not measure for this model (it measures "
                                        f"{', '.join(sorted(measurable))})")
                        continue
                    checked += 1
                    allowed = (names & measurable) or section_metrics
                    tags = _line_tags(col_head) | row_tags if is_row else row_tags
                    if not _matches(token, known, allowed, tags):
                        problems.append(_mismatch(heading, line, token, allowed, tags, s))
    text = "\n".join(card.body("fairness"))
    audit = AUDIT.search(text)
    if audit and not [g for g, t in (s.get("groups") or {}).items() if "error" not in t]:
        problems.append(f"'Fairness' claims {audit.group(0)!r} but the spec names no group "
                        "column the gate could measure per group: a fairness audit is claimed, "
                        "none was done")
    return checked, problems


def _mismatch(heading: str, line: str, token: str, allowed: set[str], tags: set[str],
              s: dict[str, Any]) -> str:
    vals = []
    for m in sorted(allowed):
        if "test" in tags or not tags:
            v = (s.get("test_metrics") or {}).get(m)
            if v is not None:
                vals.append(f"test {m} {v:.4f}")
        if "baseline" in tags:
            v = (s.get("baseline_metrics") or {}).get(m)
            if v is not None:
                vals.append(f"baseline {m} {v:.4f}")
    for tag in sorted(t for t in tags if t.startswith("group:")):
        col, level = tag[len("group:"):].split("=", 1)
        g = ((s.get("groups") or {}).get(col) or {}).get(level) or {}
        vals += [f"{m} {v:.4f} on {col}={level}" for m, v in (g.get("metrics") or {}).items()
                 if m in allowed and v is not None]
    if "cv" in tags and "mean" in (s.get("cv") or {}):
        vals.append(f"CV mean {s['cv']['mean']:.4f}, std {s['cv']['std']:.4f}")
    shown = line.strip()[:90]
    return (f"{heading!r} states {token} ({shown!r}) but the gate measured "
            f"{'; '.join(vals[:3]) or 'no such value'}")


def _group_tags(cells: list[str], s: dict[str, Any]) -> set[str]:
    """The groups a table row is about (its first cells name a level of a group column)."""
    return {f"group:{col}={level}" for col, t in (s.get("groups") or {}).items()
            if "error" not in t for level in t if any(_is_level(c, col, level)
                                                       for c in cells[:2])}


def _group_tables(card: Card, s: dict[str, Any], spec: dict[str, Any],
                  known: list[Known]) -> list[str]:
    """Every group column of the spec has a table with a row per level stating the primary
    metric the gate measured on that group of the test split."""
    metric = s["metric"]
    problems = []
    for col, table in (s.get("groups") or {}).items():
        if "error" in table:
            problems.append(f"group column {col}: {table['error']}")
            continue
        rows = _table_rows_for(card, col)
        if rows is None:
            problems.append(f"no per-group table for {col!r} (ml-spec.yaml group_columns): the "
                            f"gate measured {metric} by {col} on the test split: "
                            + ", ".join(f"{lvl} {g['metrics'].get(metric) or float('nan'):.4f}"
                                        for lvl, g in list(table.items())[:6]))
            continue
        for level, g in table.items():
            want = g["metrics"].get(metric)
            if g["rows"] < MIN_GROUP_ROWS or want is None:
                continue
            row = next((r for r in rows if any(_is_level(c, col, level) for c in r[:2])), None)
            if row is None:
                problems.append(f"the {col!r} table has no row for {col}={level} "
                                f"({g['rows']} test rows, measured {metric} {want:.4f})")
                continue
            tag = f"group:{col}={level}"
            mine = [kv for kv in known if kv.tag == tag and kv.metric == metric]
            if not any(_matches(t.group(1), mine, {metric}, {tag})
                       for c in row for t in NUMBER.finditer(c)):
                problems.append(f"the {col!r} table's row {level!r} does not state the "
                                f"measured {metric} {want:.4f} of that group")
    return problems


def _is_level(cell: str, col: str, level: str) -> bool:
    c = cell.strip().lower()
    lv = level.lower()
    return c == lv or c in (f"{col.lower()}={lv}", f"{col.lower()} = {lv}",
                            f"{col.lower()}: {lv}") or c.startswith(lv + " (")


def _table_rows_for(card: Card, col: str) -> list[list[str]] | None:
    """Body rows of the first table whose header, or the heading/line just above it, names
    the column."""
    for part in card.parts:
        heading, lines = part.path, part.lines
        for i, line in enumerate(lines):
            if not line.strip().startswith("|") or (i and lines[i - 1].strip().startswith("|")):
                continue
            above = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
            if not (_mentions(line, col) or _mentions(above, col) or _mentions(heading, col)):
                continue
            rows = []
            for ln in lines[i + 1:]:
                if not ln.strip().startswith("|"):
                    break
                cells = [c.strip() for c in ln.strip().strip("|").split("|")]
                if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
                    continue
                rows.append(cells)
            return rows
    return None
