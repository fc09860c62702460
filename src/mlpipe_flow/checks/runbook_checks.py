"""The on-call runbook (phase 5): `monitoring-guide.md` has a runbook section with an entry for
every alert rule, by its name, each with substance: words, steps (list items or commands), no
placeholder, not the same text as another entry, and a way to roll back."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.promtext import read_rules, rule_files
from mlpipe_flow.models import CheckResult

PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME|XXX|lorem ipsum|fill (?:this )?in|to be (?:written|defined|"
                         r"determined|added|completed)|coming soon|placeholder)\b", re.I)


class RunbookParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    guide: str = "monitoring-guide.md"
    rules: str = "monitoring/alerts/**/*.y*ml"
    min_words: int = Field(default=30, ge=1, description="words in each alert's entry")
    min_steps: int = Field(default=2, ge=0, description="list items or commands in each entry")

    def describe(self) -> str:
        return (f"`{self.guide}` must have a section whose heading contains \"Runbook\", with an "
                f"entry for every alert in `{self.rules}` (a subsection whose heading names the "
                f"alert, or text naming it): each with at least {self.min_words} words "
                f"({self.min_words // 2} distinct; the alert names do not count) and at least "
                f"{self.min_steps} steps (list items or `commands`), no two entries the same text "
                "with the name changed. The section may hold no placeholder (TODO, TBD, FIXME, "
                "\"to be written\", ...) and must say how to roll back the model (\"roll back\" "
                "or \"rollback\").")


def _sections(text: str) -> list[tuple[int, str, int, int]]:
    """(level, heading, start, end) of each ATX heading's section (outside code fences)."""
    heads = []
    fence = False
    pos = 0
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            heads.append((len(m.group(1)), m.group(2), pos))
        pos += len(line)
    out = []
    for i, (level, title, start) in enumerate(heads):
        end = next((s for lv, _, s in heads[i + 1:] if lv <= level), len(text))
        out.append((level, title, start, end))
    return out


def runbook(ctx: CheckContext, params: RunbookParams) -> CheckResult:
    guide = ctx.workspace / params.guide
    if not guide.is_file():
        return result("failed", f"{params.guide} does not exist")
    text = guide.read_text(encoding="utf-8", errors="replace")
    rule_paths, _ = rule_files(ctx.workspace, params.rules)
    rules, _ = read_rules(ctx.workspace, rule_paths)
    alerts = sorted({r.name for r in rules if r.kind == "alert"})
    if not alerts:
        return result("failed", f"no alert rule in {params.rules} for the runbook to cover")
    sections = _sections(text)
    book = next((s for s in sections if "runbook" in s[1].lower()), None)
    if book is None:
        return result("failed", f"{params.guide} has no runbook section (a heading with 'runbook')")
    level, _, start, end = book
    body = text[start:end]
    ph = PLACEHOLDER.search(body)
    if ph:
        line = body[:ph.start()].count("\n") + 1
        return result("failed", f"the runbook is unfinished: '{ph.group(0)}' at line {line} of its section")
    subs = [(lv, t, s, e) for lv, t, s, e in sections if start < s < end]
    blocks = [(t, s, min(e, end)) for _, t, s, e in subs] or [("runbook", start, end)]
    entries: dict[str, tuple[str, int, int]] = {}
    for a in alerts:
        hit = next((b for b in blocks if a in b[0]), None) or next(
            (b for b in blocks if a in text[b[1]:b[2]]), None)
        if hit is not None:
            entries[a] = hit
    missing = [a for a in alerts if a not in entries]
    ev: dict[str, Any] = {"alerts": alerts, "entries": {a: e[0] for a, e in entries.items()}}
    if missing:
        return result("failed", f"the runbook has no entry for {len(missing)} alert(s): "
                                f"{', '.join(missing[:5])}", **ev)
    thin: list[str] = []
    seen: dict[str, tuple[str, str]] = {}
    copied = ""
    for a, (title, s, e) in entries.items():
        entry = text[s:e]
        plain = entry
        for name in alerts:
            plain = plain.replace(name, " ")
        words = re.findall(r"[A-Za-z][A-Za-z'-]+", plain)
        steps = len(re.findall(r"(?m)^\s*(?:[-*+]|\d+[.)])\s+\S", entry)) + \
            len(re.findall(r"`[^`\n]+`|```", entry))
        ev.setdefault("substance", {})[a] = {"words": len(words), "distinct": len({w.lower() for w in words}),
                                             "steps": steps}
        if len(words) < params.min_words or len({w.lower() for w in words}) < params.min_words // 2 \
                or steps < params.min_steps:
            thin.append(f"{a} ({len(words)} words, {steps} steps)")
        key = " ".join(plain.split("\n", 1)[-1].lower().split())
        if key in seen and seen[key][0] != title and not copied:
            copied = f"runbook entries for {seen[key][1]} and {a} are the same text with the name changed"
        seen.setdefault(key, (title, a))
    if thin:
        return result("failed", f"runbook entries without substance (need >= {params.min_words} words and "
                                f">= {params.min_steps} steps: list items or commands): "
                                f"{', '.join(thin[:4])}", **ev)
    if copied:
        return result("failed", copied, **ev)
    if not re.search(r"roll\s*-?\s*back", body, re.I):
        return result("failed", "the runbook never says how to roll back the model", **ev)
    return result("passed", f"runbook entries with steps for all {len(alerts)} alert(s)", **ev)
