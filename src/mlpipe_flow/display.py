"""Where library code reports what happens: one `emit(kind, **fields)` call per event.

The only module that imports rich. Three renderings: a rich progress bar in a terminal,
plain lines when stdout is not a terminal, JSON lines with --json. A check that runs long
is never silent: in a terminal a status line under the bar names each running check with
its seconds so far; in plain lines a check's start is a line, and while checks run a
"still running" line follows whenever nothing was written for `every_s` seconds.

Events come from one thread at a time (the gate hands its workers' `check_started` to the
thread that runs the gate); the plain display's own timer shares its stream under a lock.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol, TextIO

WIDTH = 79
STILL_RUNNING_EVERY_S = 15.0
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


class RunningChecks:
    """The checks of the gate under way that started and have not finished, with when."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def update(self, kind: str, fields: dict[str, Any]) -> None:
        if kind == "check_started":
            self.started[fields["id"]] = time.monotonic()
        elif kind == "check":
            self.started.pop(fields["id"], None)
        elif kind in ("gate_started", "gate_finished"):
            self.started.clear()

    def describe(self) -> str:
        """`api-load (12 s), drift-drill (3 s)`: the longest-running first."""
        now = time.monotonic()
        return ", ".join(f"{cid} ({now - t:.0f} s)"
                         for cid, t in sorted(self.started.items(), key=lambda kv: kv[1]))


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
    if kind == "patterns":  # one item per phase and title (memory.pattern_summary); all listed
        items = f.get("items") or []
        if not items:
            return []
        runs = {r for i in items for r in i.get("run_ids", [i.get("run_id")])}
        listed = "; ".join(f"{i['phase']} {i['title']}"
                           + (f" (x{i['excerpts']})" if i.get("excerpts", 1) > 1 else "")
                           for i in items)
        return [f"memory: {sum(i.get('excerpts', 1) for i in items)} excerpt(s) from {len(runs)} "
                f"similar past run(s): {listed}"]
    if kind == "phase_started":
        return ["", f"== {f['phase']}: {f['name']} ({f['progress_start']}-{f['progress_end']}%)"]
    if kind == "phase_rechecking":
        return ["", f"== {f['phase']}: {f['name']} ({f['progress_start']}-{f['progress_end']}%): "
                "passed before; checking its gate again"]
    if kind == "phase_continuing":
        return ["", f"== {f['phase']}: {f['name']}: its own gate"]
    if kind == "phase_skipped":
        return [f"== {f['phase']}: skipped ({f['reason']}): progress {f['progress']}%"]
    if kind == "attempt_started":
        what = "repair attempt" if f.get("repair") else "attempt"
        return [f"-> {what} {f['attempt']}/{f['max_attempts']}: dispatching to {f['runner']}"]
    if kind == "agent_finished":
        cost = f" ${f['cost_usd']:.4f}" if f.get("cost_usd") else ""
        toks = (f", {f['tokens_in']}+{f['tokens_out']} tokens" if f.get("tokens_in") or
                f.get("tokens_out") else "")
        return [f"   agent: {f['status']} in {f['duration_s']:.1f}s{toks}{cost}"
                + (f" - {f['message']}" if f.get("message") and f["status"] != "ok" else "")]
    if kind == "check_started":
        return [f"   running: {f['id']}"]
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
    def __init__(self, stream: TextIO | None = None, every_s: float = STILL_RUNNING_EVERY_S) -> None:
        self.stream = stream or sys.stdout
        self.every_s = every_s
        self.running = RunningChecks()
        self.lock = threading.Lock()
        self.last_write = time.monotonic()
        self.stopped = threading.Event()
        self.timer: threading.Thread | None = None

    def emit(self, kind: str, **fields: Any) -> None:
        with self.lock:
            self.running.update(kind, fields)
            self.write(render_lines(kind, fields))
            if self.running.started and self.timer is None:
                self.timer = threading.Thread(target=self.still_running, name="mlpipe-still-running",
                                              daemon=True)
                self.timer.start()

    def write(self, lines: list[str]) -> None:
        for line in lines:
            self.stream.write(line + "\n")
        self.stream.flush()
        if lines:
            self.last_write = time.monotonic()

    def still_running(self) -> None:
        """While checks run, a line whenever the log has not moved for `every_s` seconds."""
        while not self.stopped.wait(min(1.0, self.every_s / 4)):
            with self.lock:
                if self.running.started and time.monotonic() - self.last_write >= self.every_s:
                    self.write([f"   still running: {self.running.describe()}"])

    def close(self) -> None:
        self.stopped.set()
        if self.timer is not None:
            self.timer.join()


class RunningLine:
    """The live status line: `running api-load (12 s), drift-drill (3 s)…`, redrawn with the
    seconds counting at every refresh; nothing at all while no check runs."""

    def __init__(self, running: RunningChecks) -> None:
        self.running = running

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        if not self.running.started:
            return Group()
        return Text(f"running {self.running.describe()}…", style="cyan")


class RichDisplay(NullDisplay):
    """A progress bar that moves only when a gate passes (`bar=False`: none, for `mlpipe
    gate`), the running checks under it, and the check lines printed above."""

    def __init__(self, bar: bool = True) -> None:
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn

        self.console = Console()
        self.running = RunningChecks()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed:>3.0f}%"), console=self.console)
        self.task = self.progress.add_task("mlpipe", total=100)
        shown = [self.progress] if bar else []
        self.live = Live(Group(*shown, RunningLine(self.running)), console=self.console,
                         refresh_per_second=4)
        self.live.start()

    def emit(self, kind: str, **fields: Any) -> None:
        from rich.markup import escape

        self.running.update(kind, fields)
        colour = {"Passed": "green", "Failed": "red", "Error": "red", "Skipped": "yellow"}
        lines = [] if kind == "check_started" else render_lines(kind, fields)  # on the status line
        for line in lines:
            word = next((w for w in colour if kind == "check" and line.endswith(w)), None)
            if word:
                line = escape(line[: -len(word)]) + f"[{colour[word]}]{word}[/]"
            else:
                line = escape(line)
            self.console.print(line, highlight=False)
        if kind in ("phase_started", "phase_rechecking", "phase_continuing"):
            self.progress.update(self.task, description=f"{fields['phase']}: {fields['name']}")
        if kind in ("phase_started", "phase_passed", "phase_skipped", "run_started") and \
                "progress" in fields:
            self.progress.update(self.task, completed=fields["progress"])
        if kind in ("check_started", "check"):
            self.live.refresh()

    def close(self) -> None:
        self.live.stop()


def make_display(json_lines: bool = False, stream: TextIO | None = None, bar: bool = True) -> Display:
    stream = stream or sys.stdout
    if json_lines:
        return JsonDisplay(stream)
    if stream.isatty():
        return RichDisplay(bar=bar)
    return PlainDisplay(stream)
