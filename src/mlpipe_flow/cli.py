"""The `mlpipe` command line. Imports nothing heavy at start-up: each command imports what
it needs when it runs (a test checks that --help, phases and gate stay light)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from mlpipe_flow.errors import MlpipeError


class _Group(TyperGroup):
    """Expected errors become one line on stderr and their exit code (2 usage/config, 1 failed
    run); Typer itself maps Ctrl-C to 130. Any other exception is a bug: its traceback shows."""

    def invoke(self, ctx: Any) -> Any:
        # the command's name, taken before click consumes it: an option missing its value is
        # raised with the group's context, and the hint must name the command's own --help
        sub = next(iter(getattr(ctx, "_protected_args", None) or ()), None)
        try:
            return super().invoke(ctx)
        except MlpipeError as e:
            typer.echo(f"mlpipe: error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except TyperException as e:  # (typer's click) a bad flag or value: one line, no usage block
            if getattr(e, "exit_code", None) != 2:
                raise
            ctx_ = getattr(e, "ctx", None)
            where = ctx_.command_path if ctx_ is not None else "mlpipe"
            if (ctx_ is None or ctx_ is ctx) and sub in self.commands:
                where = f"{ctx.command_path} {sub}"
            typer.echo(f"mlpipe: error: {e.format_message()} (see `{where} --help`)", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    name="mlpipe",
    help="Build a production ML pipeline phase by phase; agents do the work, executable "
    "quality gates decide when a phase is done.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

WorkspaceOpt = Annotated[Path, typer.Option("--workspace", "-w", help="Folder the ML project is built in.")]
WorkflowOpt = Annotated[
    Path | None,
    typer.Option("--workflow", help="Workflow folder (phases/, prompts/, gates/); default: built-in."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _setup(workspace: Path, workflow: Path | None, flags: dict[str, Any] | None = None,
           only_gate_of: str | None = None) -> tuple[Any, Any]:
    """The configuration (file < env < flags) and the workflow it names (with `only_gate_of`,
    only that phase's gate has its check params validated)."""
    from mlpipe_flow.config import load_config
    from mlpipe_flow.workflow import load_workflow

    config = load_config(workspace, flags)
    return config, load_workflow(config.workflow_dir(workspace, workflow), only_phase=only_gate_of)


@app.command()
def run(
    problem: Annotated[str, typer.Argument(help='The ML problem, e.g. "predict customer churn".')],
    data: Annotated[str | None, typer.Option(help="A CSV/Parquet file or a database URL.")] = None,
    target: Annotated[str | None, typer.Option(help="The column to predict.")] = None,
    workspace: WorkspaceOpt = Path("."),
    runner: Annotated[str | None, typer.Option(help="builtin, command, claude or anthropic.")] = None,
    phase: Annotated[str | None, typer.Option("--phase", help="Run just this phase (a CI job).")] = None,
    from_phase: Annotated[str | None, typer.Option("--from", help="Re-run this phase and all later.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start a new run; old state kept aside.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Run a phase whose prerequisite failed.")] = False,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts per phase (overrides).", min=1)] = None,
    model: Annotated[str | None, typer.Option(help="Model name for LLM runners.")] = None,
    budget_usd: Annotated[float | None, typer.Option("--budget-usd", min=0.0001,
                                                     help="Cap on what this run may spend, in USD.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (tokens, cost); run nothing.")]
    = False,
    no_memory: Annotated[bool, typer.Option("--no-memory", help="Neither read nor record run memory.")]
    = False,
    json_lines: JsonOpt = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="Also write the gate reports of the "
                                               "phases this run gated as JUnit XML.")] = None,
    workflow: WorkflowOpt = None,
) -> None:
    """Run the workflow: every phase in order, gated; resumes when state exists."""
    from mlpipe_flow.display import make_display
    from mlpipe_flow.engine import Engine, RunOptions

    config, wf = _setup(workspace, workflow, {"runner": runner, "max_attempts": max_attempts, "model": model,
                                              "budget_usd": budget_usd,
                                              "memory": False if no_memory else None})
    if dry_run:
        _print_plan(wf, config, workspace, problem, data, target, json_lines)
        return
    if junit is not None:  # before the run, not after it: a bad path must cost nothing
        from mlpipe_flow.report import check_writable

        check_writable(junit, what="the JUnit report", flag="--junit")
    display = make_display(json_lines)
    opts = RunOptions(problem=problem, workspace=workspace, data=data, target=target, phase=phase,
                      from_phase=from_phase, fresh=fresh, force=force)
    engine = Engine(wf, config, display, opts)
    try:
        engine.run()
    finally:
        display.close()
        if junit is not None and engine.reports:  # whatever the outcome: the CI shows why
            from mlpipe_flow.reports import write_junit

            try:
                write_junit(list(engine.reports.values()), junit)
            except OSError as e:  # the run's own outcome stands; say what was lost
                print(f"mlpipe: warning: could not write {junit}: {e.strerror or e}", file=sys.stderr)


@app.command()
def gate(
    phase: Annotated[str, typer.Argument(help="Phase id, e.g. phase3.")],
    workspace: WorkspaceOpt = Path("."),
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this check (repeatable).")]
    = None,
    json_out: JsonOpt = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="Also write a JUnit XML report.")] = None,
    workflow: WorkflowOpt = None,
) -> None:
    """Re-check one phase's gate against the workspace; exit 0 when it passes, 1 when not."""
    from mlpipe_flow.display import NullDisplay, make_display
    from mlpipe_flow.errors import UsageError
    from mlpipe_flow.gate import run_gate
    from mlpipe_flow.reports import gate_json, write_junit
    from mlpipe_flow.state import StateStore

    ws = workspace.resolve()
    if not ws.is_dir():
        raise UsageError(f"workspace {workspace} does not exist")
    config, wf = _setup(ws, workflow, only_gate_of=phase)
    ph = wf.phase(phase)
    state = StateStore(ws).load()
    if state is None and not any((ws / o.path.rstrip("/")).exists() for o in ph.expected_outputs):
        raise UsageError(f"no mlpipe workspace in {ws}: no .mlpipe/state.json and none of {phase}'s "
                         f"outputs ({', '.join(o.path for o in ph.expected_outputs[:3])}, ...); pass "
                         "the folder a run was made in with -w")
    data: dict[str, Any] = {"target": state.target if state else None}
    if state and state.data:
        data.update(state.data.model_dump())
    display = NullDisplay() if json_out else make_display(bar=False)
    try:
        report = run_gate(ph, wf.gates[ph.gate], ws, only=only, display=display, data=data,
                          python=config.python, run_id=state.run_id if state else None,
                          jobs=config.gate_jobs)
    finally:
        display.close()
    if junit:
        write_junit(report, junit)
    if json_out:
        import json

        print(json.dumps(gate_json(report), indent=2))
    else:
        print(verdict_line(report))
    raise typer.Exit(0 if report.passed else 1)


def verdict_line(report: Any) -> str:
    """The gate's verdict in one closing line: how many checks passed, which did not."""
    n, bad = len(report.checks), report.failures
    if report.passed:
        skipped = sum(c.status == "skipped" for c in report.checks)
        return f"{report.phase} gate passed: {n - skipped} of {n} checks passed" + \
            (f", {skipped} skipped" if skipped else "")
    names = ", ".join(c.id for c in bad[:6]) + (", ..." if len(bad) > 6 else "")
    return f"{report.phase} gate FAILED: {len(bad)} of {n} checks failed or could not measure ({names})"


@app.command()
def phases(json_out: JsonOpt = False, workspace: WorkspaceOpt = Path("."),
           workflow: WorkflowOpt = None) -> None:
    """List the workflow's phases."""
    _, wf = _setup(workspace, workflow)
    rows = [{"id": p.id, "name": p.name, "progress_start": p.progress_start,
             "progress_end": p.progress_end, "agent": p.agent, "gate": p.gate,
             "token_estimate": p.token_estimate, "max_attempts": p.max_attempts} for p in wf.phases]
    if json_out:
        import json

        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['id']:<8} {r['progress_start']:>3}-{r['progress_end']:<3}% {r['name']:<22} "
              f"agent={r['agent']:<25} gate={r['gate']}")


@app.command()
def render(
    phase: Annotated[str, typer.Argument(help="Phase id.")],
    problem: Annotated[str, typer.Argument(help="The ML problem.")],
    data: Annotated[str | None, typer.Option(help="A CSV/Parquet file or a database URL.")] = None,
    target: Annotated[str | None, typer.Option(help="The column to predict.")] = None,
    workspace: WorkspaceOpt = Path("."),
    workflow: WorkflowOpt = None,
) -> None:
    """Print the prompt a phase would send, without running anything."""
    from mlpipe_flow.display import NullDisplay
    from mlpipe_flow.engine import Engine, RunOptions
    from mlpipe_flow.state import DataRef, RunState, StateStore

    ws = workspace.resolve()
    config, wf = _setup(ws, workflow, only_gate_of=phase)
    ph = wf.phase(phase)
    engine = Engine(wf, config, NullDisplay(),
                    RunOptions(problem=problem, workspace=ws, data=data, target=target))
    state = StateStore(ws).load() if ws.is_dir() else None
    if state is None or state.problem != problem:
        state = RunState(run_id="(render)", problem=problem, target=target, runner="-",
                         workflow=str(wf.root), phases=[])
    if data:
        from mlpipe_flow.data import check_data, is_url, mask_url

        check_data(data)
        state.data = DataRef(kind="url" if is_url(data) else "file",
                             source=mask_url(data) if is_url(data) else data)
    if target:
        state.target = target
    engine.state = state
    from mlpipe_flow.memory import open_run_memory

    engine.memory = open_run_memory(config.memory, NullDisplay(), create=False)
    engine.recall_patterns([ph])  # the similar past patterns a run would add
    sys.stdout.write(engine.render_prompt(ph, None))


def _print_plan(wf: Any, config: Any, workspace: Path, problem: str, data: str | None,
                target: str | None, json_out: bool) -> None:
    from mlpipe_flow.planning import build_plan, plan_text

    plan = build_plan(wf, config, workspace, problem, data, target)
    if json_out:
        import json

        print(json.dumps(plan, indent=2))
    else:
        print(plan_text(plan))


@app.command()
def plan(
    problem: Annotated[str, typer.Argument(help="The ML problem.")],
    data: Annotated[str | None, typer.Option(help="A CSV/Parquet file or a database URL.")] = None,
    target: Annotated[str | None, typer.Option(help="The column to predict.")] = None,
    workspace: WorkspaceOpt = Path("."),
    model: Annotated[str | None, typer.Option(help="Model to price the plan for.")] = None,
    budget_usd: Annotated[float | None, typer.Option("--budget-usd", min=0.0001, help="Run budget to show.")]
    = None,
    json_out: JsonOpt = False,
    workflow: WorkflowOpt = None,
) -> None:
    """Render every phase prompt and estimate tokens and cost per phase; spends nothing."""
    config, wf = _setup(workspace, workflow, {"model": model, "budget_usd": budget_usd})
    _print_plan(wf, config, workspace, problem, data, target, json_out)


@app.command()
def status(workspace: WorkspaceOpt = Path("."), json_out: JsonOpt = False,
           workflow: WorkflowOpt = None) -> None:
    """Show the workspace's run: progress, phases, tokens, cost, and where settings came from."""
    from mlpipe_flow.reports import status_json, status_text
    from mlpipe_flow.state import StateStore, as_observed

    ws = workspace.resolve()
    state = StateStore(ws).load() if ws.is_dir() else None
    if state is not None:
        state = as_observed(state, ws)
    config, wf = _setup(ws, workflow)
    if json_out:
        import json

        print(json.dumps(status_json(state, config), indent=2))
        return
    print(status_text(state, config, wf, ws))


@app.command()
def report(
    workspace: WorkspaceOpt = Path("."),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the page here "
                                                "(default: WORKSPACE/.mlpipe/report.html).")] = None,
    workflow: WorkflowOpt = None,
) -> None:
    """Write one self-contained HTML page of the run's evidence: timeline, checks, score vs
    baseline, latency, drift drill, tokens and cost. Reads the records; runs no gate."""
    from mlpipe_flow.report import check_writable, default_output, load_run, write_report

    ws = workspace.resolve()
    state = load_run(ws)
    check_writable((output or default_output(ws)).absolute())  # before any work
    _, wf = _setup(ws, workflow)
    path = write_report(ws, state, wf, output)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB): open {path.as_uri()}")


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Where to write the workflow copy.")]) -> None:
    """Copy the built-in workflow out for editing; use it with --workflow DIR."""
    import shutil

    from mlpipe_flow.errors import UsageError
    from mlpipe_flow.workflow import default_workflow_dir

    src = default_workflow_dir()
    existing = [d for d in ("phases", "prompts", "gates") if (directory / d).exists()]
    if existing:
        raise UsageError(f"{directory} already has {', '.join(existing)}/; choose an empty folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for d in ("phases", "prompts", "gates"):
            shutil.copytree(src / d, directory / d)
    except OSError as e:
        raise UsageError(f"cannot write {directory}: {e.strerror}") from None
    print(f"wrote {directory}/phases, prompts, gates; run with --workflow {directory}")


# -- memory and audit trail (mlpipe_flow.memory, mlpipe_flow.audit) ----------------------------
patterns_app = typer.Typer(cls=_Group, help="Search the pattern excerpts stored from past runs.",
                           no_args_is_help=True, add_completion=False, rich_markup_mode=None)
app.add_typer(patterns_app, name="patterns")


def _print_json(value: Any) -> None:
    import json

    print(json.dumps(value, indent=2, default=str))


@app.command()
def history(json_out: JsonOpt = False,
            limit: Annotated[int, typer.Option(help="Show at most this many runs.", min=1)] = 50) -> None:
    """List past runs recorded in the memory database (newest first)."""
    from mlpipe_flow.audit import history_text, open_for_reading

    db = open_for_reading()
    runs = db.runs(limit) if db else []
    if json_out:
        _print_json(runs)
    else:
        print(history_text(runs))


@app.command()
def show(run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix of one).")],
         json_out: JsonOpt = False) -> None:
    """One past run: its attempts (prompt hash, tokens, cost, gate verdict), artifacts, patterns."""
    from mlpipe_flow.audit import open_for_reading, require_run, run_record, show_text

    db = open_for_reading()
    rec = run_record(db, require_run(db, run_id))  # type: ignore[arg-type]
    if json_out:
        _print_json(rec)
    else:
        print(show_text(rec))


@patterns_app.command("search")
def patterns_search(query: Annotated[str, typer.Argument(help="Words to look for (bm25 ranking).")],
                    json_out: JsonOpt = False,
                    limit: Annotated[int, typer.Option(help="At most this many hits.", min=1)] = 20) -> None:
    """Search stored patterns by problem, phase, title and text."""
    from mlpipe_flow.audit import open_for_reading, patterns_text

    db = open_for_reading()
    hits = db.search_patterns(query, limit) if db else []
    if json_out:
        _print_json(hits)
    else:
        print(patterns_text(hits))


@app.command()
def export(run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix of one).")],
           output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the manifest here; "
                                                       "`-o -` writes it to stdout (default: "
                                                       "./provenance-RUN_ID.json).")] = None,
           force: Annotated[bool, typer.Option("--force", help="Overwrite the default file when it "
                                               "exists.")] = False,
           to_mlflow: Annotated[bool, typer.Option("--mlflow", help="Also log the manifest as an "
                                                   "artifact of a new run in the workspace's MLflow "
                                                   "store (mlflow.db).")] = False) -> None:
    """A provenance manifest of a run: each artifact's hash, the prompt hash and runner that
    produced it, the gate verdict. Written to ./provenance-RUN_ID.json unless -o says where."""
    import json
    import tempfile

    from mlpipe_flow.audit import log_to_mlflow, manifest, open_for_reading, require_run
    from mlpipe_flow.errors import UsageError
    from mlpipe_flow.state import atomic_write

    db = open_for_reading()
    run = require_run(db, run_id)
    assert db is not None
    to_stdout = output == Path("-")
    if output is None:
        output = Path(f"provenance-{run['id']}.json")
        if output.exists() and not force:  # before any work: never clobber a file not named
            raise UsageError(f"{output} already exists; pass --force to overwrite it, or -o FILE "
                             "(-o - for stdout)")
    data = manifest(db, run)
    text = json.dumps(data, indent=2) + "\n"
    if data["changed_since"]:
        typer.echo(f"warning: {len(data['changed_since'])} artifact(s) changed or missing since the "
                   f"run recorded them (e.g. {data['changed_since'][0]}); see current_sha256",
                   err=True)
    if to_stdout:
        sys.stdout.write(text)
    else:
        try:
            atomic_write(output, text)
        except OSError as e:
            raise UsageError(f"cannot write {output}: {e.strerror or e}") from None
        print(f"wrote {output} ({len(data['artifacts'])} artifacts of run {run['id']})")
    if not to_mlflow:
        return
    if to_stdout:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"provenance-{run['id']}.json"
            path.write_text(text, encoding="utf-8")
            note = log_to_mlflow(path, Path(run["workspace"]), run["id"])
    else:
        note = log_to_mlflow(output, Path(run["workspace"]), run["id"])
    typer.echo(note, err=True)


def main() -> None:
    app(prog_name="mlpipe")  # `python -m mlpipe_flow` too: messages name the command users type
