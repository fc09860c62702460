"""The engine: one loop over phases — render, dispatch, gate, record, advance.

Read `Engine.run` top to bottom; everything else (runners, checks, display, state) hangs
off it behind small interfaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpipe_flow import data as data_mod
from mlpipe_flow import preflight
from mlpipe_flow import records as records_mod
from mlpipe_flow.config import CONFIG_FILE, Config
from mlpipe_flow.contract import contract_context
from mlpipe_flow.display import Display
from mlpipe_flow.errors import MlpipeError, RunFailed, StateError, UsageError
from mlpipe_flow.gate import run_gate
from mlpipe_flow.integrity import Guard, tamper_report
from mlpipe_flow.memory import NullMemory, open_run_memory, pattern_summary
from mlpipe_flow.models import CheckResult, GateReport, Phase
from mlpipe_flow.records import RunRecords
from mlpipe_flow.runners import AgentResult, AgentTask, Runner, make_runner
from mlpipe_flow.state import (
    DataRef,
    PhaseRecord,
    RunState,
    StateStore,
    atomic_write,
    hash_outputs,
    new_run_id,
    now,
    run_in_progress,
    workspace_lock,
)
from mlpipe_flow.templating import render
from mlpipe_flow.toolbox import importable
from mlpipe_flow.workflow import Workflow, workflow_ref

REPAIR_TEMPLATE = "repair.j2"
SUMMARY_TEMPLATE = "summary.j2"


@dataclass
class RunOptions:
    problem: str
    workspace: Path
    data: str | None = None
    target: str | None = None
    phase: str | None = None  # run just this phase
    from_phase: str | None = None  # re-run this phase and every later one
    fresh: bool = False
    force: bool = False  # run a phase whose prerequisites have not passed


def ensure_writable(workspace: Path) -> None:
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / ".mlpipe").mkdir(exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=workspace / ".mlpipe", prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"workspace {workspace} cannot be written ({e.strerror}); "
                         "choose another --workspace") from None


class Engine:
    def __init__(self, workflow: Workflow, config: Config, display: Display, opts: RunOptions) -> None:
        self.wf = workflow
        self.config = config
        self.display = display
        self.opts = opts
        self.ws = opts.workspace.resolve()
        self.store = StateStore(self.ws)
        self.state: RunState | None = None
        self.runner: Runner | None = None
        self.spent_usd = 0.0  # what this invocation has spent, against --budget-usd
        self.memory: NullMemory = NullMemory()
        self.patterns: dict[str, list[dict[str, Any]]] = {}  # phase id -> similar past patterns
        self.recorded = False  # this run is in memory: its end must be too
        self.reports: dict[str, GateReport] = {}  # phase id -> its last gate report in this run

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> RunState:
        # checked before anything is created, staged or recorded (preflight.py)
        preflight.check_problem(self.opts.problem)
        if run_in_progress(self.ws):  # at once, not after the checks below (the lock decides)
            raise StateError(f"workspace {self.ws} is in use by another mlpipe run; wait for it "
                             "to finish, or stop it (Ctrl-C) and run again to resume")
        preflight.check_python(self.config)
        self.settle_data()
        if self.opts.data and not data_mod.is_url(self.opts.data):
            preflight.check_table(self.opts.data, self.opts.target,
                                  preflight.completeness_rule(self.wf))
        selected = self.select_phases()
        self.runner = make_runner(self.config.runner, self.config)
        self.state = self.load_or_create_state()  # in memory only: a resume is checked here
        for phase in selected:  # a bad template fails here, before anything is spent
            self.render_prompt(phase, None)
        ensure_writable(self.ws)
        records_mod.ensure_root()  # the evidence gates judge against must be keepable
        self.memory = open_run_memory(self.config.memory, self.display)
        with workspace_lock(self.ws), self.remembered():
            state = self.state = self.load_or_create_state()
            d = state.data
            if not self.opts.data and d and d.kind == "file" and d.staged and \
                    data_mod.staged_copy(self.ws, d) is None:
                raise data_mod.missing_staged(self.ws, d)
            self.check_prerequisites(selected)
            self.recall_patterns(selected)
            self.display.emit("run_started", run_id=state.run_id, problem=state.problem,
                              workspace=str(self.ws), runner=self.config.runner,
                              resumed=any(p.attempts for p in state.phases), progress=state.progress,
                              phases=[p.id for p in selected])
            self.memory.start_run(state, self.ws)
            self.recorded = True
            self.display.emit("patterns", items=pattern_summary(self.patterns))
            if self.opts.data:
                state.data = data_mod.stage(self.ws, self.opts.data)
                self.record_raw(state.data)
                self.display.emit("data_staged", source=state.data.source,
                                  dest=state.data.staged or "(database URL)")
            if self.opts.fresh and self.store.exists():
                self.store.set_aside()
            state.status = "running"
            self.store.save(state)
            explicit = self.opts.phase is not None or self.opts.from_phase is not None
            try:
                for phase in selected:
                    rec = state.phase(phase.id)
                    if rec.status == "passed" and not explicit and self.still_passes(phase, rec):
                        self.advance()
                        self.display.emit("phase_skipped", phase=phase.id, reason="passed, outputs "
                                          "unchanged, gate still passes", progress=state.progress)
                        continue
                    self.invalidate_later(phase)
                    if not self.run_phase(phase, rec):
                        state.status = "failed"
                        self.store.save(state)
                        self.finish()
                        raise RunFailed(f"{phase.id} ({phase.name}) did not pass its gate: "
                                        f"{rec.reason}")
            except RunFailed:
                raise
            except MlpipeError:  # the runner cannot go on: the run is over, not "running"
                state.status = "failed"
                self.store.save(state)
                raise
            except KeyboardInterrupt:
                for rec in state.phases:
                    if rec.status == "running":
                        rec.status, rec.reason = "interrupted", "interrupted (Ctrl-C)"
                state.status = "interrupted"
                self.store.save(state)
                raise
            done = all(state.phase(p.id).status == "passed" for p in self.wf.phases)
            state.status = "passed" if done else "incomplete"
            self.store.save(state)
            self.finish()
            return state

    def run_phase(self, phase: Phase, rec: PhaseRecord) -> bool:
        assert self.state is not None and self.runner is not None
        max_attempts = self.config.max_attempts or phase.max_attempts
        # a phase resumed after its budget ran out keeps what it spent: the cap is per phase
        phase_spent = rec.cost_usd if rec.status == "budget" else 0.0
        rec.status, rec.attempts, rec.reason, rec.failing_checks = "running", 0, "", []
        rec.started_at, rec.finished_at = now(), None
        self.store.save(self.state)
        self.display.emit("phase_started", phase=phase.id, name=phase.name,
                          progress_start=phase.progress_start, progress_end=phase.progress_end,
                          max_attempts=max_attempts, progress=self.state.progress)
        report: GateReport | None = None
        previous: list[tuple[str, str, str]] | None = None
        earlier = self.earlier_outputs(phase)  # what this phase's attempts may not change unjudged
        for attempt in range(1, max_attempts + 1):
            cap, cap_reason = self.budget_left(phase, phase_spent)
            if cap is not None and cap <= 0:
                rec.status = "budget"
                rec.reason = f"budget: {cap_reason} is spent; raise it and run again to resume"
                break
            prompt = self.render_prompt(phase, report, attempt, max_attempts)
            run_dir = self.next_run_dir(phase.id)
            (run_dir / "prompt.md").write_text(prompt, encoding="utf-8")
            task = self.make_task(phase, prompt, run_dir, attempt, repair=report is not None)
            task.budget_usd = cap
            self.display.emit("attempt_started", phase=phase.id, attempt=attempt,
                              max_attempts=max_attempts, repair=report is not None,
                              runner=self.runner.name, run_dir=str(run_dir))
            self.store.save(self.state)
            guard = Guard.take(self.guarded_paths())
            try:
                result = self.runner.run(task, self.display)
            except MlpipeError as e:  # the runner cannot go on (bad data, missing CLI, ...)
                rec.status, rec.reason, rec.finished_at = "failed", str(e), now()
                self.store.save(self.state)
                raise
            tampered = guard.changed()
            lost = guard.restore(tampered) if tampered else []
            self.account(rec, result, run_dir)
            phase_spent += result.cost_usd
            self.spent_usd += result.cost_usd
            rec.attempts = attempt
            self.store.save(self.state)
            if tampered:  # the attempt fails whatever its files would have made of the gate
                report = self.reports[phase.id] = tamper_report(
                    phase.id, phase.gate, [self.shown(p) for p in tampered],
                    [self.shown(p) for p in lost])
                self.display.emit("check", phase=phase.id, **report.checks[0].model_dump())
            else:  # earlier phases' outputs it changed are judged again first (their gates)
                report = self.recheck_earlier(phase, earlier) or self.run_gate(phase)
            atomic_write(run_dir / "gate.json", report.model_dump_json(indent=2))
            run_attempt = int(run_dir.name.rsplit("-", 1)[1])  # attempt-N, unique within the run
            self.memory.record_attempt(self.state, phase.id, run_attempt, prompt, result, report, run_dir)
            if report.passed:
                rec.status = "passed"
                self.record_pass(phase, rec, report, self.hash_outputs(phase))
                self.memory.record_phase_passed(self.state, phase, run_attempt, self.ws, rec.output_hashes)
                self.advance()
                self.store.save(self.state)
                self.display.emit("phase_passed", phase=phase.id, progress=self.state.progress,
                                  attempts=attempt)
                return True
            rec.failing_checks = [c.id for c in report.failures]
            rec.reason = "; ".join(f"{c.id}: {c.message}" for c in report.failures)[:500]
            if result.status == "budget":
                rec.status = "budget"
                rec.reason = (f"budget: the agent stopped at {cap_reason} (${cap or 0:.4f} left): "
                              f"{result.message}; raise it and run again to resume")[:600]
                break
            if previous is not None and report.signature() == previous:
                rec.status = "stalled"
                rec.reason = f"stalled: the same checks failed with the same evidence twice ({rec.reason})"
                break
            previous = report.signature()
            self.store.save(self.state)
        else:
            rec.status = "failed"
            rec.reason = f"failed after {max_attempts} attempt(s): {rec.reason}"
        rec.finished_at = now()
        self.store.save(self.state)
        self.display.emit("phase_failed", phase=phase.id, reason=rec.reason,
                          failing=rec.failing_checks)
        return False

    def settle_data(self) -> None:
        """--data must name a file that exists, except when a resumed run already staged a file
        of that name: a workspace moved to a machine without the original keeps its staged copy."""
        value = self.opts.data
        if not value:
            return
        if data_mod.is_url(value):
            self.opts.data = preflight.settle_url(value, self.config.python, self.opts.target)
            return
        if self.opts.fresh or Path(value).expanduser().exists():
            data_mod.check_data(value)
            return
        state = self.store.load()
        staged = data_mod.staged_copy(self.ws, state.data if state else None, value)
        if staged is None:
            data_mod.check_data(value)  # says: no such file
            return
        self.display.emit("warning", message=f"--data {value}: no such file here; using the copy "
                          f"the run staged, {staged.relative_to(self.ws).as_posix()}")
        self.opts.data = None

    def record_raw(self, ref: DataRef) -> None:
        """What the run's data was when staged, in mlpipe's records (a database: its rows)."""
        record: dict[str, Any] = ref.model_dump()
        if ref.kind == "url":
            url = data_mod.data_url(self.ws) or ""
            previous = self.records.raw() or {}
            if previous.get("source") == ref.source and self.records.snapshot.is_file():
                return  # the rows were copied when the run started; keep that copy
            why = data_mod.snapshot_url(url, self.records.snapshot, self.config.python)
            record["snapshot"] = None if why else self.records.snapshot.name
            if why:
                record["snapshot_error"] = why
                self.display.emit("warning", message=f"could not copy the database rows into "
                                  f"mlpipe's records ({why}); gates that compare the splits with "
                                  "the raw data will say they could not measure")
        self.records.save_raw(record)

    def run_gate(self, phase: Phase) -> GateReport:
        assert self.state is not None
        report = self.reports[phase.id] = run_gate(
            phase, self.wf.gates[phase.gate], self.ws, display=self.display, data=self.gate_data(),
            python=self.config.python, run_id=self.state.run_id, jobs=self.config.gate_jobs)
        return report

    # -- what an agent may not touch ----------------------------------------------------
    @property
    def records(self) -> RunRecords:
        assert self.state is not None
        return RunRecords(self.state.run_id)

    def guarded_paths(self) -> list[Path]:
        """mlpipe.yaml, the workflow's phases/prompts/gates, and mlpipe's own records."""
        return [self.ws / CONFIG_FILE, *(self.wf.root / d for d in ("phases", "prompts", "gates")),
                self.store.path, self.ws / data_mod.URL_FILE, self.records.dir]

    def shown(self, path: Path) -> str:
        """How a guarded file is named in messages: workspace-relative where it can be."""
        return path.relative_to(self.ws).as_posix() if path.is_relative_to(self.ws) else str(path)

    def budget_left(self, phase: Phase, phase_spent: float) -> tuple[float | None, str]:
        """Dollars the next attempt may spend (None: no cap) and which cap binds."""
        caps: list[tuple[float, str]] = []
        if phase.budget_usd is not None:
            caps.append((phase.budget_usd - phase_spent, f"the {phase.id} budget of ${phase.budget_usd:.2f}"))
        if self.config.budget_usd is not None:
            caps.append((self.config.budget_usd - self.spent_usd,
                         f"the run budget of ${self.config.budget_usd:.2f}"))
        if not caps:
            return None, ""
        left, why = min(caps)
        return max(0.0, round(left, 6)), why

    # -- selection and prerequisites --------------------------------------------------
    def select_phases(self) -> list[Phase]:
        if self.opts.phase and self.opts.from_phase:
            raise UsageError("give either --phase or --from, not both")
        if self.opts.phase:
            return [self.wf.phase(self.opts.phase)]
        if self.opts.from_phase:
            return self.wf.phases[self.wf.index(self.opts.from_phase):]
        return list(self.wf.phases)

    def check_prerequisites(self, selected: list[Phase]) -> None:
        assert self.state is not None
        if self.opts.force or not selected:
            return
        first = selected[0]
        names = {p.id for p in selected}
        for req in self.wf.requirements(first):
            status = self.state.phase(req).status
            if req not in names and status != "passed":
                raise UsageError(f"{first.id} needs {req} to pass first ({req} is {status}); "
                                 f"run `mlpipe run` without --phase/--from, or pass --force")

    def still_passes(self, phase: Phase, rec: PhaseRecord) -> bool:
        if self.hash_outputs(phase) != rec.output_hashes:
            self.display.emit("warning", message=f"{phase.id}: outputs changed since it passed; "
                              "running it again")
            return False
        self.display.emit("phase_rechecking", phase=phase.id, name=phase.name,
                          progress_start=phase.progress_start, progress_end=phase.progress_end)
        report = self.run_gate(phase)  # its check lines under the phase's header, not above it
        if not report.passed:
            self.display.emit("warning", message=f"{phase.id}: its gate no longer passes; "
                              "running it again")
        return report.passed

    def record_pass(self, phase: Phase, rec: PhaseRecord, report: GateReport,
                    hashes: dict[str, str]) -> None:
        """A gate passed on these outputs: the state and mlpipe's records hold them."""
        rec.finished_at, rec.output_hashes = now(), hashes
        self.records.save_phase(phase.id, {"passed_at": rec.finished_at, "output_hashes": hashes,
                                           "report": report.model_dump()})

    def earlier_outputs(self, phase: Phase) -> dict[str, dict[str, str]]:
        """The output hashes of the phases before `phase` that have passed, as they stand."""
        assert self.state is not None
        return {p.id: self.hash_outputs(p) for p in self.wf.phases[:self.wf.index(phase.id)]
                if self.state.phase(p.id).status == "passed"}

    def recheck_earlier(self, phase: Phase, before: dict[str, dict[str, str]]) -> GateReport | None:
        """An attempt that changed the outputs of a phase that passed before it (a deployment
        repair that retrains the model, say) has that phase's gate run again on them before its
        own: what a later gate compares with (the model phase 3 passed with) is then what was
        judged. `before`: those outputs' hashes when the phase started (a change made between
        runs is the resume's to find), updated here once a gate has judged them again. None when
        this phase's attempts changed none or every changed phase still passes (its record now
        holds the new outputs); otherwise a failed report for this attempt naming what failed."""
        assert self.state is not None
        failed: list[CheckResult] = []
        rechecked = False
        for earlier in map(self.wf.phase, list(before)):  # passed when this phase started
            was, now_hashes = before[earlier.id], self.hash_outputs(earlier)
            if now_hashes == was:
                continue
            changed = sorted(k for k in now_hashes.keys() | was.keys()
                             if now_hashes.get(k) != was.get(k))
            self.display.emit("warning", message=f"{phase.id}'s attempt changed {earlier.id}'s "
                              f"outputs ({', '.join(changed[:5])}"
                              + (f" +{len(changed) - 5} more" if len(changed) > 5 else "")
                              + f"): {earlier.id}'s gate judges them again")
            self.display.emit("phase_rechecking", phase=earlier.id, name=earlier.name,
                              progress_start=earlier.progress_start,
                              progress_end=earlier.progress_end)
            report, rechecked = self.run_gate(earlier), True
            if report.passed:
                before[earlier.id] = now_hashes
                self.record_pass(earlier, self.state.phase(earlier.id), report, now_hashes)
                self.store.save(self.state)
                continue
            failed.append(CheckResult(
                id=f"{earlier.id}-gate", name=f"{earlier.id}'s gate passes on the outputs this "
                f"attempt changed", status="failed",
                message=f"this attempt changed {earlier.id}'s outputs ({', '.join(changed[:5])}) "
                f"and {earlier.id}'s gate no longer passes: "
                + "; ".join(f"{c.id}: {c.message}" for c in report.failures)[:600],
                evidence={"changed": changed,
                          "failures": [c.model_dump() for c in report.failures]}))
        if rechecked:  # the check lines that follow are this phase's again
            self.display.emit("phase_continuing", phase=phase.id, name=phase.name)
        if not failed:
            return None
        return GateReport(phase=phase.id, gate=phase.gate, passed=False, checks=failed)

    # -- memory -----------------------------------------------------------------------
    def recall_patterns(self, selected: list[Phase]) -> None:
        """Similar past runs' patterns for each selected phase (rendered into its prompt)."""
        assert self.state is not None
        self.patterns = {p.id: items for p in selected
                         if (items := self.memory.similar_patterns(self.state.problem, p.id,
                                                                   exclude_run=self.state.run_id))}

    @contextlib.contextmanager
    def remembered(self) -> Iterator[None]:
        """Whatever way the run ends, its outcome is written to memory."""
        try:
            yield
        finally:
            if self.state is not None and self.recorded:
                self.memory.finish_run(self.state)

    # -- state ------------------------------------------------------------------------
    def load_or_create_state(self) -> RunState:
        if self.opts.fresh:  # the old state is set aside only once this run really starts
            state = None
        else:
            state = self.store.load()  # a corrupt file is reported, never silently reset
        if state is not None:
            if state.problem != self.opts.problem:
                raise StateError(f"workspace {self.ws} holds a run for a different problem "
                                 f"({state.problem!r}); pass the same problem to resume, or --fresh "
                                 "to start over")
            state.runner = self.config.runner
            state.workflow = workflow_ref(self.wf.root, self.ws)
            if self.opts.target:
                state.target = self.opts.target
        else:
            state = RunState(run_id=new_run_id(), problem=self.opts.problem, target=self.opts.target,
                             runner=self.config.runner, model=self.config.model,
                             workflow=workflow_ref(self.wf.root, self.ws), phases=[])
        known = {rec.id: rec for rec in state.phases}
        state.phases = [known.pop(p.id) if p.id in known else PhaseRecord(id=p.id) for p in self.wf.phases]
        state.phases += known.values()  # records of phases this workflow no longer has
        return state

    def hash_outputs(self, phase: Phase) -> dict[str, str]:
        others = [o.path for p in self.wf.phases if p.id != phase.id for o in p.expected_outputs]
        return hash_outputs(self.ws, phase.expected_outputs, exclude=others)

    def invalidate_later(self, phase: Phase) -> None:
        """A phase about to run again takes back the pass of every phase after it: their work was
        built on what this phase is about to replace (they run again, or show as not run)."""
        assert self.state is not None
        later = self.wf.phases[self.wf.index(phase.id) + 1:]
        stale = [p.id for p in later if self.state.phase(p.id).status == "passed"]
        for pid in stale:
            self.state.phase(pid).status = "pending"
        self.advance()  # and while this phase runs, the bar stands at its start
        self.state.progress = min(self.state.progress, phase.progress_start)
        self.store.save(self.state)
        if stale:
            self.display.emit("warning", message=f"{phase.id} runs again: {', '.join(stale)} "
                              "will need to pass again (progress is now "
                              f"{self.state.progress}%)")

    def advance(self) -> None:
        """Progress is the end of the last phase in the unbroken run of passed phases."""
        assert self.state is not None
        progress = 0
        for p in self.wf.phases:
            if self.state.phase(p.id).status != "passed":
                break
            progress = p.progress_end
        self.state.progress = progress

    def account(self, rec: PhaseRecord, result: AgentResult, run_dir: Path) -> None:
        rec.tokens_in += result.tokens_in
        rec.tokens_out += result.tokens_out
        rec.cache_read_tokens += result.cache_read_tokens
        rec.cache_write_tokens += result.cache_write_tokens
        rec.cost_usd = round(rec.cost_usd + result.cost_usd, 6)
        rec.duration_s = round(rec.duration_s + result.duration_s, 3)
        atomic_write(run_dir / "result.json", json.dumps(result.__dict__, indent=2))
        self.display.emit("agent_finished", phase=rec.id, status=result.status,
                          message=result.message, tokens_in=result.tokens_in,
                          tokens_out=result.tokens_out, cost_usd=result.cost_usd,
                          duration_s=result.duration_s)

    def next_run_dir(self, phase_id: str) -> Path:
        assert self.state is not None
        base = self.store.dir / "runs" / self.state.run_id / phase_id
        n = len(list(base.glob("attempt-*"))) + 1 if base.is_dir() else 1
        return self.store.run_dir(self.state.run_id, phase_id, n)

    # -- prompts ----------------------------------------------------------------------
    def render_prompt(self, phase: Phase, report: GateReport | None, attempt: int = 1,
                      max_attempts: int = 1) -> str:
        context = self.prompt_context(phase)
        if report is not None:
            context["repair"] = {
                "attempt": attempt, "max_attempts": max_attempts,
                "failures": [c.model_dump() for c in report.failures],
            }
        template = REPAIR_TEMPLATE if report is not None else phase.prompt
        text = render(self.wf.root / "prompts", template, context)
        return data_mod.mask_secrets(text, data_mod.data_url(self.ws))

    def prompt_context(self, phase: Phase) -> dict[str, Any]:
        assert self.state is not None
        import yaml

        spec_path = self.ws / "ml-spec.yaml"
        spec_text = spec_path.read_text(encoding="utf-8", errors="replace") if spec_path.is_file() else None
        try:
            spec = yaml.safe_load(spec_text) if spec_text else None
        except yaml.YAMLError:
            spec = None
        prior = []
        for p in self.wf.phases:
            if p.id == phase.id:
                break
            files = [o.path for o in p.expected_outputs if (self.ws / o.path.rstrip("/")).exists()]
            if files:
                prior.append({"phase": p.id, "name": p.name, "files": files})
        d = self.state.data
        return {
            "problem": self.state.problem,
            "data": ({"kind": d.kind, "source": d.source, "path": d.staged} if d else None),
            "target": self.state.target,
            "spec": spec if isinstance(spec, dict) else None,
            "spec_text": spec_text,
            "phase": phase,
            "contract": [o.model_dump() for o in phase.expected_outputs],
            **contract_context(self.wf, phase),
            "prior_outputs": prior,
            "patterns": self.patterns.get(phase.id, []),
            "repair": None,
            "data_preview": self.data_preview(),
            "workspace": str(self.ws),
            "toolbox": importable(self.config.python),
        }

    def data_preview(self, lines: int = 6) -> str | None:
        assert self.state is not None
        d = self.state.data
        if d is None or d.staged is None or not d.staged.endswith((".csv", ".tsv", ".txt")):
            return None
        try:
            with (self.ws / d.staged).open(encoding="utf-8", errors="replace") as f:
                text = "".join(line[:500] for _, line in zip(range(lines), f, strict=False))
        except OSError:
            return None
        # no cell can close the <untrusted-data> fence early: angle brackets are escaped
        return text.rstrip("\n").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def make_task(self, phase: Phase, prompt: str, run_dir: Path, attempt: int, repair: bool) -> AgentTask:
        assert self.state is not None
        d = self.state.data
        return AgentTask(
            phase=phase.id, attempt=attempt, prompt=prompt, role=phase.agent,
            role_prompt=self.wf.roles[phase.agent], workspace=self.ws, run_dir=run_dir,
            timeout_s=self.config.timeout_s or phase.timeout_s,
            idle_timeout_s=self.config.idle_timeout_s or phase.idle_timeout_s,
            max_turns=phase.max_turns, allowed_tools=list(phase.allowed_tools),
            budget_usd=phase.budget_usd, model=self.config.model, repair=repair,
            context={"problem": self.state.problem, "target": self.state.target,
                     "data": d.model_dump() if d else None, "run_id": self.state.run_id},
            protected=self.guarded_paths(), private=[self.store.dir, self.records.dir],
        )

    def gate_data(self) -> dict[str, Any]:
        assert self.state is not None
        d = self.state.data
        return {"target": self.state.target, **(d.model_dump() if d else {})}

    # -- the end ----------------------------------------------------------------------
    def finish(self) -> None:
        assert self.state is not None
        text = summary_text(self.wf, self.state, self.ws)
        report = self.write_report()
        self.display.emit("run_finished", run_id=self.state.run_id, status=self.state.status,
                          progress=self.state.progress, cost_usd=round(self.state.cost_usd, 6),
                          summary=text, report=report)

    def write_report(self) -> str | None:
        """The run's HTML report in .mlpipe/ (hashed by no phase, read by no gate); a report
        that cannot be written is a warning, never a failed run."""
        assert self.state is not None
        if not self.config.report:
            return None
        from mlpipe_flow.report import write_report

        try:
            return str(write_report(self.ws, self.state, self.wf))
        except (OSError, MlpipeError) as e:
            self.display.emit("warning", message=f"could not write the run report: {e}")
        except Exception as e:  # noqa: BLE001 - a bug or odd evidence in the report: the run stands
            import traceback

            log = self.ws / ".mlpipe" / "report-error.log"
            with contextlib.suppress(OSError):
                atomic_write(log, traceback.format_exc())
            self.display.emit("warning", message=f"could not make the run report ({type(e).__name__}: "
                              f"{e}); the traceback is in {self.shown(log)}")
        return None


def summary_text(wf: Workflow, state: RunState, workspace: Path) -> str:
    from mlpipe_flow.builtin.project import summary_context  # next steps from existing files

    phases: list[dict[str, Any]] = []
    for p in wf.phases:
        rec = state.phase(p.id)
        phases.append({"id": p.id, "name": p.name, "status": rec.status, "attempts": rec.attempts,
                       "tokens_in": rec.tokens_in, "tokens_out": rec.tokens_out,
                       "cost_usd": rec.cost_usd})
    return render(wf.root / "prompts", SUMMARY_TEMPLATE, {
        "problem": state.problem, "run_id": state.run_id, "workspace": str(workspace),
        "progress": state.progress, "phases": phases,
        "total_cost_usd": round(state.cost_usd, 6),
        "total_tokens": sum(p["tokens_in"] + p["tokens_out"] for p in phases),
        **summary_context(workspace),
    })
