"""`mlpipe report`: one self-contained HTML page of a run's evidence — the timeline of phases
and attempts, every check with its evidence, the model's score against the gate's baseline and
its CV spread, the load test's latency distribution, the drift drill, tokens and cost.

Everything is inline (styles, SVG plots as `data:` URIs): the page makes no request. It is
read from the run's records (gather.py), rendered from `report.html.j2` with autoescaping (check
messages and evidence come from agent-made files), and written atomically. `mlpipe run` writes
it to `.mlpipe/report.html`, which no phase hashes and no gate reads.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

from mlpipe_flow.errors import UsageError
from mlpipe_flow.report.gather import RunView, gather
from mlpipe_flow.state import RunState, StateStore, atomic_write
from mlpipe_flow.workflow import Workflow

TEMPLATE = "report.html.j2"
DEFAULT_NAME = "report.html"


def default_output(workspace: Path) -> Path:
    return workspace / ".mlpipe" / DEFAULT_NAME


def load_run(workspace: Path) -> RunState:
    """The workspace's run state; a one-line error naming the folder when there is none."""
    if not workspace.is_dir():
        what = "is not a folder" if workspace.exists() else "does not exist"
        raise UsageError(f"workspace {workspace} {what}; pass the folder a run was made in with -w")
    state = StateStore(workspace).load()  # a corrupt state is its own one-line error
    if state is None:
        raise UsageError(f"no mlpipe run in {workspace} (no .mlpipe/state.json): pass the folder a "
                         "run was made in with -w, or start one there with `mlpipe run`")
    return state


def check_writable(path: Path, what: str = "the report", flag: str = "-o") -> None:
    """Fail before any work when the file could not be written there."""
    if path.is_dir():
        raise UsageError(f"cannot write {what} to {path}: it is a folder; give a file name "
                         f"with {flag}, e.g. {flag} {'report.html' if flag == '-o' else 'gate.xml'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"cannot write {what} to {path} ({e.strerror or e}); choose another "
                         f"file with {flag}") from None


def _seconds(s: float) -> str:
    if s < 100:
        return f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def render(view: RunView, now: str | None = None) -> str:
    import jinja2

    from mlpipe_flow import __version__
    from mlpipe_flow.report import plots

    note = plots.available()

    failed: list[str] = []

    def plot(name: str, *args: Any) -> str | None:
        """A plot, or None when its evidence (made from agent-written files) cannot be drawn:
        the page keeps its tables and says which plots are missing."""
        if note:
            return None
        try:
            return plots.PLOTS[name](*args)
        except Exception as e:  # noqa: BLE001 - a malformed record must not cost the page
            failed.append(f"{name} ({type(e).__name__}: {str(e)[:120]})")
            return None

    score, cv = view.evidence("model_beats_baseline"), view.evidence("cv_stability")
    load, drill = view.evidence("api_load"), view.evidence("drift_drill")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent)),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["secs"] = _seconds
    phases = view.phases
    context = {
        "v": view, "s": view.state, "phases": phases, "version": __version__,
        "generated": now or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "plots_note": note,
        "totals": {"attempts": sum(len(p.history) for p in phases),
                   "agent_s": sum(p.agent_s for p in phases), "gate_s": sum(p.gate_s for p in phases),
                   "tokens": sum(p.tokens for p in phases), "cost": sum(p.cost_usd for p in phases),
                   "tokens_in": sum(p.tokens_in for p in phases),
                   "tokens_out": sum(p.tokens_out for p in phases),
                   "cache_read": sum(p.cache_read_tokens for p in phases),
                   "cache_write": sum(p.cache_write_tokens for p in phases)},
        "score": score, "cv": cv, "load": load, "drill": drill,
        "plot": {"timeline": plot("timeline", phases), "spend": plot("spend", phases),
                 "score": plot("score", score.check.evidence) if score else None,
                 "cv": plot("cv", cv.check.evidence) if cv else None,
                 "latency": plot("latency", load.check.evidence) if load else None,
                 "drift": plot("drift", drill.check.evidence) if drill else None},
    }
    if failed:
        context["plots_note"] = "could not draw from the recorded evidence: " + "; ".join(failed)
    return env.get_template(TEMPLATE).render(**context)


def write_report(workspace: Path, state: RunState, wf: Workflow, output: Path | None = None) -> Path:
    """Render the run's report and write it atomically; returns where."""
    path = (output or default_output(workspace)).absolute()
    check_writable(path)
    html = render(gather(workspace, state, wf))
    try:
        atomic_write(path, html)
    except OSError as e:
        raise UsageError(f"cannot write the report to {path} ({e.strerror or e}); choose another "
                         "file with -o") from None
    return path
