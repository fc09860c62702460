"""Where library code reports what happens: one `emit(kind, **fields)` call per event.

The only module that imports rich. Three renderings: a rich progress bar in a terminal,
plain lines when stdout is not a terminal, JSON lines with --json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Protocol, TextIO

WIDTH = 79
STATUS_WORD = {"passed": "Passed", "failed": "Failed", "error": "Error", "skipped": "Skipped"}


class Display(Protocol):
    def emit(self, kind: str, **fields: Any) -> None: ...

    def close(self) -> None: ...


class NullDisplay:
    def emit(self, kind: str, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


class RecordingDisplay(NullDisplay):
    """Keeps every event; for tests and for callers that want the events as values."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))


class JsonDisplay(NullDisplay):
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, kind: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": kind, **fields}, default=str) + "\n")
        self.stream.flush()


def check_line(name: str, status: str, width: int = WIDTH) -> str:
    word = STATUS_WORD.get(status, status)
    dots = "." * max(3, width - len(name) - len(word))
    return f"{name}{dots}{word}"


def _fmt_evidence(evidence: dict[str, Any]) -> list[str]:
    out = []
    for key, value in evidence.items():
        if key == "output_tail" and isinstance(value, list):
            out.append(f"  {key}:")
            out.extend(f"    {ln}" for ln in value[-10:])
        else:
            text = json.dumps(value, default=str) if not isinstance(value, str) else value
            out.append(f"  {key}: {text[:300]}")
    return out


def render_lines(kind: str, f: dict[str, Any]) -> list[str]:
    """Plain-text rendering of one event (shared by the plain and rich displays)."""
    if kind == "run_started":
        verb = "resuming" if f.get("resumed") else "starting"
        return [f"mlpipe: {verb} run {f['run_id']} ({f['runner']}) in {f['workspace']}",
                f"ML problem: {f['problem']}"]
    if kind == "data_staged":
        return [f"data: {f['source']} -> {f['dest']}"]
    if kind == "patterns":
        return [f"memory: {len(f['items'])} similar past pattern(s): "
                + "; ".join(i["title"] for i in f["items"][:5])] if f.get("items") else []
    if kind == "phase_started":
        return ["", f"== {f['phase']}: {f['name']} ({f['progress_start']}-{f['progress_end']}%)"]
    if kind == "phase_skipped":
        return [f"== {f['phase']}: skipped ({f['reason']})"]
    if kind == "attempt_started":
        what = "repair attempt" if f.get("repair") else "attempt"
        return [f"-> {what} {f['attempt']}/{f['max_attempts']}: dispatching to {f['runner']}"]
    if kind == "agent_finished":
        cost = f" ${f['cost_usd']:.4f}" if f.get("cost_usd") else ""
        toks = (f", {f['tokens_in']}+{f['tokens_out']} tokens" if f.get("tokens_in") or
                f.get("tokens_out") else "")
        return [f"   agent: {f['status']} in {f['duration_s']:.1f}s{toks}{cost}"
                + (f" - {f['message']}" if f.get("message") and f["status"] != "ok" else "")]
    if kind == "check":
        lines = [check_line(f.get("name") or f["id"], f["status"])]
        if f["status"] in ("passed", "skipped") and f.get("message"):
            lines.append(f"  ({f['message']})")  # what was measured, not just the verdict
        if f["status"] in ("failed", "error"):
            lines += [f"- check: {f['id']}", f"- {f['message']}"] + _fmt_evidence(f.get("evidence", {}))
        return lines
    if kind == "gate_finished":
        return [f"   {f['success']}"] if f.get("passed") and f.get("success") else []
    if kind == "phase_passed":
        return [f"== {f['phase']} passed: progress {f['progress']}%"]
    if kind == "phase_failed":
        return [f"== {f['phase']} failed: {f['reason']}"]
    if kind == "warning":
        return [f"warning: {f['message']}"]
    if kind == "run_finished":
        report = ["", f"Report: {Path(f['report']).as_uri()}"] if f.get("report") else []
        return ["", *f.get("summary", "").rstrip().splitlines(), *report]
    return []


class PlainDisplay(NullDisplay):
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, kind: str, **fields: Any) -> None:
        for line in render_lines(kind, fields):
            self.stream.write(line + "\n")
        self.stream.flush()


class RichDisplay(NullDisplay):
    """A progress bar that moves only when a gate passes, with check lines printed above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.console = Console()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed:>3.0f}%"), console=self.console)
        self.task = self.progress.add_task("mlpipe", total=100)
        self.progress.start()

    def emit(self, kind: str, **fields: Any) -> None:
        from rich.markup import escape

        colour = {"Passed": "green", "Failed": "red", "Error": "red", "Skipped": "yellow"}
        for line in render_lines(kind, fields):
            word = next((w for w in colour if kind == "check" and line.endswith(w)), None)
            if word:
                line = escape(line[: -len(word)]) + f"[{colour[word]}]{word}[/]"
            else:
                line = escape(line)
            self.progress.console.print(line, highlight=False)
        if kind == "phase_started":
            self.progress.update(self.task, description=f"{fields['phase']}: {fields['name']}")
        if kind in ("phase_passed", "phase_skipped", "run_started"):
            self.progress.update(self.task, completed=fields.get("progress", 0))

    def close(self) -> None:
        self.progress.stop()


def make_display(json_lines: bool = False, stream: TextIO | None = None) -> Display:
    stream = stream or sys.stdout
    if json_lines:
        return JsonDisplay(stream)
    if stream.isatty():
        return RichDisplay()
    return PlainDisplay(stream)
