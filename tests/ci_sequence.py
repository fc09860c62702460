"""The GitHub Actions example (examples/ci/github-actions.yml) run as CI would run it, on this
machine: its jobs in `needs` order, each on a "machine" of its own — a fresh folder at a new
absolute path, removed once its artifact is uploaded — with its `run:` steps in bash, in the
environment the workflow sets, and the actions it uses emulated:

- actions/checkout: the repository's top-level entries, linked into the job's folder;
- actions/setup-python: nothing (the suite's own interpreter and its `mlpipe` come first on PATH);
- actions/upload-artifact / download-artifact: a copy into and out of an artifact store, as the
  real ones handle files: regular files only (symbolic links followed, file modes and empty
  folders dropped), hidden files only with `include-hidden-files: true`;
- mikepenz/action-junit-report: reads the JUnit report it would publish.

`${{ }}` expressions are evaluated in the few forms the example uses, with no repository
variables or secrets set: the built-in runner and no budget. A form this emulation does not
know fails loudly rather than being guessed. Steps that install what the suite already has are
skipped (SKIPPED says why); a step or action of any other kind fails the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import yaml

from conftest import REPO

WORKFLOW = REPO / "examples" / "ci" / "github-actions.yml"
#: run steps not run here, by id, and why: each must exist in the example (a rename is noticed)
SKIPPED = {"install": "the suite's .venv has mlpipe installed from this checkout",
           "prometheus": "`make promtool` installs promtool and prometheus on this machine"}
EMULATED = ("actions/checkout@", "actions/setup-python@", "actions/upload-artifact@",
            "actions/download-artifact@", "mikepenz/action-junit-report@")
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


class CiFailed(AssertionError):
    pass


@dataclass
class JobRecord:
    """What one emulated job did: where it ran, its steps, the JUnit reports it published."""

    job: str
    folder: str
    seconds: float = 0.0
    steps: list[str] = field(default_factory=list)  # "id-or-action: ran|skipped (why)"
    step_seconds: dict[str, float] = field(default_factory=dict)  # run steps: wall time
    junit: dict[str, dict[str, int]] = field(default_factory=dict)  # path -> counts


def load(path: Path = WORKFLOW) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and isinstance(doc.get("jobs"), dict), path
    return doc


def needs_of(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def jobs_in_order(doc: dict[str, Any]) -> list[str]:
    """Job ids in an order that honours `needs` (ties: the order the file lists them)."""
    jobs = doc["jobs"]
    for name, job in jobs.items():
        unknown = [n for n in needs_of(job) if n not in jobs]
        if unknown:
            raise CiFailed(f"job {name} needs unknown job(s) {unknown}")
    order: list[str] = []
    while len(order) < len(jobs):
        ready = [n for n, j in jobs.items() if n not in order and set(needs_of(j)) <= set(order)]
        if not ready:
            raise CiFailed(f"jobs {sorted(set(jobs) - set(order))} need each other (a cycle)")
        order.append(ready[0])
    return order


def evaluate(expr: str, ctx: dict[str, dict[str, str]], failed: bool) -> str | bool:
    """One `${{ }}` expression, in the forms the example uses; any other form fails loudly."""
    e = expr.strip()
    if e in ("!cancelled()", "always()"):
        return True
    if e == "success()":
        return not failed
    if e == "failure()":
        return failed
    if m := re.fullmatch(r"(.+?)\s*==\s*'([^']*)'", e):
        return str(evaluate(m[1], ctx, failed)) == m[2]
    if m := re.fullmatch(r"(.+?)\s*\|\|\s*'([^']*)'", e):
        return evaluate(m[1], ctx, failed) or m[2]
    if m := re.fullmatch(r"(github|vars|secrets|env)\.([A-Za-z_][A-Za-z0-9_-]*)", e):
        return ctx[m[1]].get(m[2], "")
    raise CiFailed(f"the CI emulation does not know the expression {expr!r}")


def expand(value: Any, ctx: dict[str, dict[str, str]], failed: bool = False) -> str:
    return EXPR.sub(lambda m: str(evaluate(m[1], ctx, failed)), str(value))


def condition(step: dict[str, Any], ctx: dict[str, dict[str, str]], failed: bool) -> bool:
    """A step's `if:` (GitHub's default: success())."""
    cond = step.get("if")
    if cond is None:
        return not failed
    m = EXPR.fullmatch(str(cond).strip())
    return bool(evaluate(m[1] if m else str(cond), ctx, failed))


# -- artifacts, as actions/upload-artifact@v4 and download-artifact@v4 handle files ------------
def upload(src: Path, dest: Path, hidden: bool) -> int:
    """Copy the regular files under `src` (links followed; modes and empty folders dropped;
    files and folders named .* only with `hidden`) into `dest`; returns how many."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
        if not hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not hidden and name.startswith("."):
                continue
            f = Path(dirpath) / name
            target = dest / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)  # contents only: no mode, no link
            count += 1
    return count


def download(store: Path, dest: Path) -> None:
    for f in sorted(p for p in store.rglob("*") if p.is_file()):
        target = dest / f.relative_to(store)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)


def checkout(dest: Path) -> None:
    """The repository's top-level entries, linked (a checkout, without copying it)."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        if not entry.name.startswith(".") and entry.name not in ("reports", "carry"):
            (dest / entry.name).symlink_to(entry)


def absolute_strings(value: Any) -> list[str]:
    """Every string in a JSON value that is an absolute path."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in absolute_strings(k) + absolute_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in absolute_strings(v)]
    return [value] if isinstance(value, str) and value.startswith(("/", "~")) else []


def junit_counts(path: Path) -> dict[str, int]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return {k: sum(int(s.get(k, "0")) for s in suites)
            for k in ("tests", "failures", "errors", "skipped")}


# -- the run --------------------------------------------------------------------------------
class Emulator:
    def __init__(self, root: Path, doc: dict[str, Any], overrides: dict[str, str],
                 cpu: Any = None, alone: tuple[str, ...] = ()) -> None:
        self.root = root
        self.doc = doc
        self.overrides = overrides  # environment the test sets on top of the workflow's
        self.cpu = cpu
        self.alone = alone  # jobs that measure time: run with the machine to themselves
        self.store = root / "artifacts"
        self.records: list[JobRecord] = []

    def run(self) -> list[JobRecord]:
        machines: list[Path] = []
        for i, name in enumerate(jobs_in_order(self.doc), start=1):
            machine = self.root / f"machine-{i}-{name}"
            for gone in machines:  # nothing may write to a machine that is gone
                assert not gone.exists(), f"job {name}: something wrote to {gone} again"
            self.records.append(self.run_job(name, machine))
            if i < len(self.doc["jobs"]):
                shutil.rmtree(machine)
                machines.append(machine)
        return self.records

    @contextlib.contextmanager
    def share(self, job: str) -> Iterator[None]:
        if self.cpu is None:
            yield
            return
        with self.cpu.alone() if job in self.alone else self.cpu.shared():
            yield

    def run_job(self, name: str, machine: Path) -> JobRecord:
        job = self.doc["jobs"][name]
        work = machine / "work"  # github.workspace
        rec = JobRecord(job=name, folder=str(work))
        ctx: dict[str, dict[str, str]] = {"github": {"workspace": str(work)}, "vars": {},
                                          "secrets": {}, "env": {}}
        for scope in (self.doc.get("env") or {}, job.get("env") or {}):
            for k, v in scope.items():
                ctx["env"][str(k)] = expand(v, ctx)
        started = time.perf_counter()
        failed = False
        with self.share(name):
            for step in job["steps"]:
                label = step.get("id") or step.get("uses") or step.get("name") or "step"
                if not condition(step, ctx, failed):
                    rec.steps.append(f"{label}: not run (condition)")
                    continue
                if "uses" in step:
                    self.action(step, ctx, work, rec, failed)
                    rec.steps.append(f"{label}: emulated")
                elif step.get("id") in SKIPPED:
                    rec.steps.append(f"{label}: skipped ({SKIPPED[step['id']]})")
                else:
                    t0 = time.perf_counter()
                    ok = self.shell(name, step, ctx, work)
                    rec.step_seconds[label] = round(time.perf_counter() - t0, 1)
                    rec.steps.append(f"{label}: {'ran' if ok else 'FAILED'}")
                    failed = failed or not ok
        rec.seconds = round(time.perf_counter() - started, 1)
        if failed:
            raise CiFailed(f"job {name} failed: {rec.steps}")
        return rec

    def shell(self, job: str, step: dict[str, Any], ctx: dict[str, dict[str, str]],
              work: Path) -> bool:
        script = str(step["run"])
        if EXPR.search(script):  # the example keeps expressions out of scripts (injection)
            raise CiFailed(f"job {job}: a run script holds an expression: {script!r}")
        env = {**os.environ, **ctx["env"],
               **{str(k): expand(v, ctx) for k, v in (step.get("env") or {}).items()},
               **self.overrides, "GITHUB_WORKSPACE": str(work), "CI": "true"}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        cwd = work / str(step.get("working-directory", "."))
        res = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                             cwd=cwd, env=env, capture_output=True, text=True, timeout=1800,
                             stdin=subprocess.DEVNULL)
        log = self.root / "logs" / f"{job}-{step.get('id', 'step')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(res.stdout + "\n--- stderr ---\n" + res.stderr)
        if res.returncode != 0:
            print(f"job {job} step {step.get('id')} exited {res.returncode}:\n"
                  f"{res.stdout[-4000:]}\n{res.stderr[-2000:]}")
        return res.returncode == 0

    def action(self, step: dict[str, Any], ctx: dict[str, dict[str, str]], work: Path,
               rec: JobRecord, failed: bool) -> None:
        uses = str(step["uses"])
        args = {k: expand(v, ctx, failed) for k, v in (step.get("with") or {}).items()}
        if not uses.startswith(EMULATED):
            raise CiFailed(f"job {rec.job}: the CI emulation does not know the action {uses}")
        if uses.startswith("actions/checkout@"):
            checkout(work)
        elif uses.startswith("actions/upload-artifact@"):
            dest = self.store / args["name"]
            if dest.exists():
                raise CiFailed(f"artifact {args['name']} uploaded twice in one run")
            hidden = str(args.get("include-hidden-files", "false")).lower() == "true"
            n = upload(work / args["path"], dest, hidden)
            if n == 0 and args.get("if-no-files-found") == "error":
                raise CiFailed(f"job {rec.job}: no files for artifact {args['name']}")
        elif uses.startswith("actions/download-artifact@"):
            src = self.store / args["name"]
            if not src.is_dir():
                raise CiFailed(f"job {rec.job}: no artifact {args['name']} (uploaded by a job "
                               "this one does not need?)")
            download(src, work / args.get("path", "."))
        elif uses.startswith("mikepenz/action-junit-report@"):
            for pattern in args["report_paths"].split(","):
                found = sorted(work.glob(pattern.strip()))
                if not found:
                    raise CiFailed(f"job {rec.job}: no JUnit report at {pattern}")
                for f in found:
                    rec.junit[f.relative_to(work).as_posix()] = junit_counts(f)


def run_sequence(root: Path, overrides: dict[str, str] | None = None, cpu: Any = None,
                 alone: tuple[str, ...] = ("phase4",)) -> tuple[list[JobRecord], Path]:
    """Run the example's jobs in order under `root`; returns their records and the last job's
    folder (its github.workspace), which is kept."""
    root.mkdir(parents=True, exist_ok=True)
    records = Emulator(root, load(), overrides or {}, cpu, alone).run()
    (root / "ci-jobs.json").write_text(json.dumps([r.__dict__ for r in records], indent=2))
    return records, Path(records[-1].folder)
