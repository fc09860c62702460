from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "datasets"  # real data, where present: extra coverage only
#: tests that read ../shared/datasets skip without it (a fresh clone has none); CI has it
shared_data = pytest.mark.skipif(not SHARED.is_dir(),
                                 reason=f"{SHARED} is absent (real datasets, extra coverage)")
FAKE_AGENT = HERE / "fake_agent.py"
# `mlpipe run` writes its HTML report at the end (about 1 s of CPU); only the tests that check
# it (tests/test_report.py) ask for it, whatever the process or fixture scope
os.environ.setdefault("MLPIPE_REPORT", "false")
# Several tests end a child with SIGINT (Ctrl-C). A shell script's background job starts with
# SIGINT ignored, and children inherit that: `make test &` would then leave them deaf to it.
# A Python handler is reset to the default on exec, so every child starts able to take Ctrl-C.
signal.signal(signal.SIGINT, signal.default_int_handler)
SEED_GATES = HERE / "fixtures" / "seed-gates"


def build_seed_workflow(dest: Path) -> Path:
    """The default phases and prompts with the seed's own gates (see fixtures/README.md), copied:
    a link would let the integrity guard of a run "restore" the repository's own files."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name, src in (("phases", REPO / "phases"), ("prompts", REPO / "prompts"), ("gates", SEED_GATES)):
        shutil.copytree(src, dest / name)
    return dest


# -- running the suite on several workers (pytest-xdist) ---------------------------------------
# Tests that measure time (an open-loop load at 1000 req/s, a whole run whose phase-4 gate
# drives one) are marked `alone`: they hold an exclusive lock while every other test holds a
# shared one, so nothing runs beside them. Session fixtures that cost minutes are built once for
# all workers, under a lock, in the session's common temporary folder.

def _session_root(factory: pytest.TempPathFactory) -> Path:
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


class Cpu:
    """This worker's share of the machine for the session: shared while a test runs, exclusive
    while it measures time. A reader-writer lock on two files: `cpu.lock` (shared or
    exclusive) and a turnstile, `turn.lock`, that a worker waiting for the machine holds so that
    other workers cannot keep taking shared locks past it (flock alone would let them starve
    it). A mode change releases the old lock first, so two workers asking for `alone()` while
    they share the machine cannot deadlock."""

    def __init__(self, folder: Path) -> None:
        self.fd = os.open(folder / "cpu.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self.turn = os.open(folder / "turn.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self.mode = fcntl.LOCK_UN

    @contextlib.contextmanager
    def hold(self, mode: int) -> Iterator[None]:
        before = self.mode
        self._set(mode)
        try:
            yield
        finally:
            self._set(before)

    def _set(self, mode: int) -> None:
        if mode == self.mode:
            return
        if self.mode != fcntl.LOCK_UN:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.mode = fcntl.LOCK_UN
        if mode != fcntl.LOCK_UN:
            fcntl.flock(self.turn, fcntl.LOCK_EX)
            try:
                fcntl.flock(self.fd, mode)
            finally:
                fcntl.flock(self.turn, fcntl.LOCK_UN)
            self.mode = mode

    def alone(self) -> contextlib.AbstractContextManager[None]:
        return self.hold(fcntl.LOCK_EX)

    def shared(self) -> contextlib.AbstractContextManager[None]:
        return self.hold(fcntl.LOCK_SH)


_CPU: dict[str, Cpu] = {}


def cpu_of(factory: pytest.TempPathFactory) -> Cpu:
    if "cpu" not in _CPU:
        _CPU["cpu"] = Cpu(_session_root(factory))
    return _CPU["cpu"]


@pytest.fixture(autouse=True)
def cpu(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cpu]:
    """Held by every test: shared, or exclusive for a test marked `alone`; a test that measures
    time in one step only takes `cpu.alone()` around that step."""
    c = cpu_of(tmp_path_factory)
    with c.alone() if request.node.get_closest_marker("alone") else c.shared():
        yield c


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Any]) -> Any:
    """`build(folder)` once per test session whatever the number of workers; its JSON-able
    result is kept beside the folder for the other workers."""
    root = _session_root(factory)
    folder, done = root / name, root / f"{name}.json"
    fd = os.open(root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            done.write_text(json.dumps(build(folder)))
        return json.loads(done.read_text())
    finally:
        os.close(fd)


@pytest.fixture(autouse=True)
def _mlpipe_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own memory database: none writes the real user's (MLPIPE_HOME)."""
    home = tmp_path_factory.mktemp("mlpipe-home")
    monkeypatch.setenv("MLPIPE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def seed_workflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_seed_workflow(tmp_path_factory.mktemp("seed-workflow"))


def mlpipe(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real CLI in a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLPIPE_RUNNER", None)
    return subprocess.run([sys.executable, "-m", "mlpipe_flow", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def run_default_check(ws: Path, phase: str, kind: str, scratch: Path) -> Any:
    """Run the default workflow's `kind` check of `phase` on a workspace, as its gate would
    (the check's own params, the test's interpreter); returns its CheckResult."""
    from mlpipe_flow.checks import CHECKS, CheckContext
    from mlpipe_flow.workflow import load_workflow

    wf = load_workflow()
    check = next(c for c in wf.gates[wf.phase(phase).gate].checks if c.kind == kind)
    ctx = CheckContext(workspace=ws, phase=phase, timeout_s=60, python=sys.executable,
                       scratch=scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    return CHECKS[kind].run(ctx, CHECKS[kind].params.model_validate(check.params))


def use_fake_agent(workspace: Path, workflow: Path | None = None, **extra: str) -> None:
    """mlpipe.yaml for the fake agent through the command runner, on the seed-gated workflow."""
    workspace.mkdir(parents=True, exist_ok=True)
    lines = ["runner: command", f"command: '{sys.executable} {FAKE_AGENT} {{task_file}}'"]
    if workflow is not None:
        lines.append(f"workflow: {workflow}")
    lines += [f"{k}: {v}" for k, v in extra.items()]
    (workspace / "mlpipe.yaml").write_text("\n".join(lines) + "\n")


@pytest.fixture
def ws(tmp_path: Path, seed_workflow: Path) -> Path:
    w = tmp_path / "ws"
    use_fake_agent(w, workflow=seed_workflow)
    return w


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    p = tmp_path / "customers.csv"
    p.write_text("customerID,tenure,Churn\nA1,3,Yes\nA2,40,No\nA3,12,No\n")
    return p


@pytest.fixture(scope="session")
def telco_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phases 1-3 of the built-in agent on Telco-shaped data (generated), once per session;
    read-only for tests (copy it before changing anything)."""
    from builtin_helpers import run_phases
    from datagen import data_file

    def build(folder: Path) -> str:
        ws = folder / "ws"
        with cpu_of(tmp_path_factory).shared():
            run_phases(ws, "predict churn from real-time predictions via API, retraining daily",
                       str(data_file("telco_churn.csv")), "phase1", "phase2", "phase3")
        return str(ws)

    return Path(built_once(tmp_path_factory, "telco", build))


@pytest.fixture(scope="session")
def telco_ct(telco_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's Telco workspace, then the built-in phases 4-6 (no gates), once per session;
    read-only for tests (copy it before changing anything)."""
    from ml_workspace import copy, run_builtin

    def build(folder: Path) -> str:
        ws = copy(telco_workspace, folder / "ws")
        with cpu_of(tmp_path_factory).shared():
            for phase in ("phase4", "phase5", "phase6"):
                run_builtin(ws, phase)
        return str(ws)

    return Path(built_once(tmp_path_factory, "telco_ct", build))


@pytest.fixture(scope="session")
def passing(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The example data through all six phases and gates with the built-in agent, once per
    session (tests/mutations.py). Read-only: break a `mutant` copy instead."""
    from mutations import Passing, build_passing

    def build(folder: Path) -> dict[str, str]:
        p = build_passing(folder, cpu_of(tmp_path_factory))
        return {"ws": str(p.ws), "home": str(p.home), "workflow": str(p.workflow), "ci": str(p.ci)}

    got = built_once(tmp_path_factory, "passing", build)
    return Passing(Path(got["ws"]), Path(got["home"]), Path(got["workflow"]), Path(got["ci"]))


@pytest.fixture
def mutant(passing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A private copy of the passing workspace, judged with the records of its run."""
    from mutations import Mutant

    monkeypatch.setenv("MLPIPE_HOME", str(passing.home))
    return Mutant(passing, tmp_path / "ws")
