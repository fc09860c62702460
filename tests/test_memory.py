"""Run memory and audit trail: real runs through the CLI (command runner + fake agent), one
SQLite database per test (MLPIPE_HOME, set by the autouse fixture in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO, mlpipe, use_fake_agent
from mlpipe_flow.memory import SCHEMA_VERSION, MemoryDB

CHURN = "predict customer churn for a telecom operator"
CONCRETE = "estimate concrete compressive strength from the mix"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_ws(tmp_path: Path, name: str, workflow: Path) -> Path:
    w = tmp_path / name
    use_fake_agent(w, workflow=workflow)
    return w


def run_id_of(ws: Path) -> str:
    return json.loads((ws / ".mlpipe/state.json").read_text())["run_id"]


def json_out(*args: str) -> object:
    res = mlpipe(*args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_history_patterns_prompt_and_export(tmp_path: Path, seed_workflow: Path, csv_file: Path,
                                            _mlpipe_home: Path) -> None:
    churn_ws = make_ws(tmp_path, "churn", seed_workflow)
    concrete_ws = make_ws(tmp_path, "concrete", seed_workflow)
    for ws, problem in ((churn_ws, CHURN), (concrete_ws, CONCRETE)):
        res = mlpipe("run", problem, "--data", str(csv_file), "-w", str(ws))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "memory:" not in res.stdout  # nothing similar recorded yet
    churn_id, concrete_id = run_id_of(churn_ws), run_id_of(concrete_ws)
    assert (_mlpipe_home / "memory.db").is_file()

    runs = json_out("history", "--json")
    assert isinstance(runs, list)
    by_id = {r["id"]: r for r in runs}
    assert set(by_id) == {churn_id, concrete_id}
    assert by_id[churn_id]["problem"] == CHURN and by_id[concrete_id]["problem"] == CONCRETE
    assert all(r["outcome"] == "passed" and r["progress"] == 100 and r["attempts"] == 6 for r in runs)

    hits = json_out("patterns", "search", "churn", "--json")
    assert isinstance(hits, list) and hits
    assert {h["run_id"] for h in hits} == {churn_id}
    arch = next(h for h in hits if h["phase"] == "phase1")
    assert arch["title"] == "ML pipeline architecture design"
    assert arch["text"].startswith("==> ml-architecture.md <==\n")
    assert (churn_ws / "ml-architecture.md").read_text().strip() in arch["text"]
    assert {h["phase"] for h in hits} == {f"phase{i}" for i in range(1, 7)}

    # a third churn run: its phase-1 prompt carries the churn run's excerpt, not the concrete one's
    third_ws = make_ws(tmp_path, "third", seed_workflow)
    res = mlpipe("run", "predict churn of mobile subscribers", "--data", str(csv_file), "-w",
                 str(third_ws), "--json")
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    listed = next(e for e in events if e["event"] == "patterns")["items"]
    assert listed and {i["run_id"] for i in listed} == {churn_id}
    prompt = (third_ws / ".mlpipe/runs" / run_id_of(third_ws) / "phase1/attempt-1/prompt.md").read_text()
    assert "#### ML pipeline architecture design (problem: " + CHURN + ")" in prompt
    assert arch["text"] in prompt
    assert CONCRETE not in prompt
    res = mlpipe("render", "phase1", "predict churn of mobile subscribers", "-w", str(tmp_path / "fresh"))
    assert res.returncode == 0, res.stderr
    assert arch["text"] in res.stdout  # `mlpipe render` shows the prompt a run would send

    shown = json_out("show", churn_id[:18], "--json")
    assert isinstance(shown, dict) and shown["id"] == churn_id
    assert [a["phase"] for a in shown["attempts"]] == [f"phase{i}" for i in range(1, 7)]
    assert all(a["gate_passed"] is True for a in shown["attempts"])

    # the provenance manifest: hashes match the files; prompt hashes match the saved prompts
    out = tmp_path / "provenance.json"
    res = mlpipe("export", churn_id, "-o", str(out), "--mlflow")
    assert res.returncode == 0, res.stderr
    manifest = json.loads(out.read_text())
    assert manifest["run"]["id"] == churn_id and manifest["run"]["problem"] == CHURN
    arts = manifest["artifacts"]
    assert {"ml-architecture.md", "ml-spec.yaml", "models/train_model.py"} <= {a["path"] for a in arts}
    for a in arts:
        assert sha256(churn_ws / a["path"]) == a["sha256"], a["path"]
        attempt_dir = churn_ws / ".mlpipe/runs" / churn_id / a["phase"] / f"attempt-{a['attempt']}"
        prompt_file = attempt_dir / "prompt.md"
        assert sha256(prompt_file) == a["prompt_sha256"], a["path"]
        assert a["runner"] == "command"
        assert a["gate"]["passed"] is True and a["gate"]["checks"]
    # ... and it was logged to the workspace's MLflow store as a run artifact
    assert "MLflow: logged" in res.stderr, res.stderr
    logged = list((churn_ws / "mlruns").glob("*/artifacts/provenance.json"))
    assert len(logged) == 1 and json.loads(logged[0].read_text()) == manifest
    with sqlite3.connect(churn_ws / "mlflow.db") as conn:
        tags = conn.execute("SELECT value FROM tags WHERE key = 'mlpipe.run_id'").fetchall()
    assert tags == [(churn_id,)]

    # a changed file no longer matches the manifest
    (churn_ws / "ml-architecture.md").write_text("edited\n")
    arch_art = next(a for a in arts if a["path"] == "ml-architecture.md")
    assert sha256(churn_ws / "ml-architecture.md") != arch_art["sha256"]
    assert all(a["matches"] for a in arts) and manifest["changed_since"] == []
    # ... and a new export says so instead of vouching for the old hash
    res = mlpipe("export", churn_id, "-o", str(out))
    assert res.returncode == 0 and "1 artifact(s) changed" in res.stderr, res.stderr
    again = json.loads(out.read_text())
    arch_now = next(a for a in again["artifacts"] if a["path"] == "ml-architecture.md")
    assert arch_now["matches"] is False and arch_now["current_sha256"] == sha256(
        churn_ws / "ml-architecture.md")
    assert again["changed_since"] == ["ml-architecture.md"]


def test_no_memory_records_nothing(ws: Path, csv_file: Path, _mlpipe_home: Path) -> None:
    res = mlpipe("run", CHURN, "--data", str(csv_file), "-w", str(ws), "--phase", "phase1", "--no-memory")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (_mlpipe_home / "memory.db").exists()
    assert json_out("history", "--json") == []
    res = mlpipe("history")
    assert res.returncode == 0 and "no runs recorded yet" in res.stdout
    # `memory: false` in mlpipe.yaml does the same
    use_fake_agent(ws, workflow=Path(json.loads((ws / ".mlpipe/state.json").read_text())["workflow"]),
                   memory="false")
    res = mlpipe("run", CHURN, "-w", str(ws), "--phase", "phase2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (_mlpipe_home / "memory.db").exists()


def warnings(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("warning: memory database")]


def test_corrupt_database_warns_and_the_run_completes(ws: Path, csv_file: Path, _mlpipe_home: Path) -> None:
    db = _mlpipe_home / "memory.db"
    garbage = b"this is not an SQLite database\n" * 200
    db.write_bytes(garbage)
    res = mlpipe("run", CHURN, "--data", str(csv_file), "-w", str(ws), "--phase", "phase1")
    assert res.returncode == 0, res.stdout + res.stderr
    found = warnings(res.stdout)
    assert len(found) == 1 and str(db) in found[0] and "running without memory" in found[0], res.stdout
    assert "phase1 passed: progress 20%" in res.stdout
    assert db.read_bytes() == garbage  # left alone for the user to inspect
    # reading commands refuse in one line instead
    res = mlpipe("history")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and str(db) in res.stderr
    assert "Traceback" not in res.stderr


def test_unwritable_location_is_one_line_exit_2(ws: Path, csv_file: Path, tmp_path: Path) -> None:
    """MLPIPE_HOME also keeps mlpipe's records of the run, the evidence its gates judge against:
    where it cannot be written the run cannot be judged, so it stops before anything is staged."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    env = {"MLPIPE_HOME": str(blocker / "mlpipe")}  # a folder cannot be made under a file, even as root
    res = mlpipe("run", CHURN, "--data", str(csv_file), "-w", str(ws), "--phase", "phase1", env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert str(blocker / "mlpipe" / "records") in res.stderr and "MLPIPE_HOME" in res.stderr
    assert not (ws / ".mlpipe" / "state.json").exists() and not (ws / "data").exists()


def test_newer_schema_is_refused(ws: Path, csv_file: Path, _mlpipe_home: Path, tmp_path: Path) -> None:
    db = _mlpipe_home / "memory.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    log = tmp_path / "agent.log"
    res = mlpipe("run", CHURN, "--data", str(csv_file), "-w", str(ws), env={"FAKE_AGENT_LOG": str(log)})
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert str(db) in res.stderr and "newer" in res.stderr and "upgrade mlpipe" in res.stderr
    assert "MLPIPE_HOME" in res.stderr
    assert not log.exists()  # refused before anything was dispatched
    assert not (ws / ".mlpipe/state.json").exists()
    for cmd in (["history"], ["patterns", "search", "churn"]):
        res = mlpipe(*cmd)
        assert res.returncode == 2 and "upgrade mlpipe" in res.stderr, cmd
    # --no-memory does not touch it
    res = mlpipe("run", CHURN, "--data", str(csv_file), "-w", str(ws), "--phase", "phase1", "--no-memory")
    assert res.returncode == 0, res.stdout + res.stderr


def _open_and_write(path: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    barrier.wait()
    try:
        db = MemoryDB.open(Path(path))
        assert db is not None
        db.start_run(f"run-{multiprocessing.current_process().pid}", "p", "/ws", "builtin", None, 0)
        db.close()
        results.put("ok")
    except Exception as e:  # noqa: BLE001 - reported to the test
        results.put(f"{type(e).__name__}: {e}")


def test_processes_creating_the_database_at_once_all_get_it(tmp_path: Path) -> None:
    """Six processes open a database none has created yet, at the same instant, ten times over.
    Without the creation lock about one attempt in three had a process told "database is
    locked" (switching to WAL while another migrates is a deadlock SQLite does not wait out)."""
    ctx = multiprocessing.get_context("spawn")
    for trial in range(10):
        path = tmp_path / f"t{trial}" / "memory.db"
        path.parent.mkdir()
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_and_write, args=(str(path), barrier, results))
                 for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        failures = [r for r in (results.get(timeout=10) for _ in procs) if r != "ok"]
        assert not failures, (trial, failures[:3])
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 6


def test_two_concurrent_runs_share_one_database(tmp_path: Path, seed_workflow: Path,
                                                csv_file: Path) -> None:
    procs = []
    for name, problem in (("a", CHURN), ("b", CONCRETE)):
        ws = make_ws(tmp_path, name, seed_workflow)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "mlpipe_flow", "run", problem, "--data", str(csv_file), "-w", str(ws)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
        assert "warning" not in out
    runs = json_out("history", "--json")
    assert isinstance(runs, list)
    assert sorted(r["problem"] for r in runs) == sorted([CHURN, CONCRETE])
    assert all(r["outcome"] == "passed" and r["attempts"] == 6 for r in runs)


HAMMER = """
import sys
from types import SimpleNamespace as NS
from mlpipe_flow.memory import MemoryDB
db = MemoryDB.open()
who, n = sys.argv[1], int(sys.argv[2])
db.start_run(who, "problem " + who, "/ws/" + who, "command", None, 0)
for i in range(n):
    db.record_attempt({"run_id": who, "phase": "phase1", "attempt": i + 1, "started": "t",
                       "prompt_sha256": "0" * 64, "tokens_in": i})
    db.record_phase_passed(who, "phase1", i + 1, "problem " + who, {f"f{i}.txt": "1" * 64},
                           [("title", f"text {i}")])
db.finish_run(who, "passed", 100)
"""


def test_two_processes_hammering_one_database(_mlpipe_home: Path) -> None:
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, who, str(n)], stderr=subprocess.PIPE,
                              text=True, cwd=REPO) for who in ("w1", "w2")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    db = MemoryDB.open(_mlpipe_home / "memory.db", create=False)
    assert db is not None
    counts = dict(db.conn.execute("SELECT run_id, COUNT(*) FROM attempts GROUP BY run_id").fetchall())
    assert counts == {"w1": n, "w2": n}
    # each phase pass replaces that phase's patterns and artifacts: one of each is left per run
    assert db.conn.execute("SELECT COUNT(*) FROM patterns").fetchone()[0] == 2
    assert db.conn.execute("SELECT COUNT(*) FROM patterns_fts").fetchone()[0] == 2
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_similar_patterns_rank_cap_and_exclusion(_mlpipe_home: Path) -> None:
    db = MemoryDB.open()
    assert db is not None
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rows = [("r-churn", "predict telecom customer churn", "churn architecture"),
            ("r-churn2", "customer churn scoring", "second churn architecture " + "x" * 3000),
            ("r-fraud", "detect card fraud in customer payments", "fraud architecture"),
            ("r-concrete", "concrete strength", "concrete architecture")]
    for run_id, problem, text in rows:
        db.start_run(run_id, problem, "/ws", "builtin", None, 0)
        db.record_phase_passed(run_id, "phase1", 1, problem, {}, [("Architecture", text)])
        db.record_phase_passed(run_id, "phase2", 1, problem, {}, [("Data", text + " (data)")])
    hits = db.similar_patterns("churn of customers", "phase1", token_cap=10_000)
    ids = [h["run_id"] for h in hits]
    assert sorted(ids[:2]) == ["r-churn", "r-churn2"]  # both words (porter: customers ~ customer)
    assert ids[2:] == ["r-fraud"]  # shares only "customer": ranked below both churn runs
    assert all(h["phase"] == "phase1" for h in hits)
    # the token cap (4 chars a token) leaves out the long excerpt
    capped = db.similar_patterns("churn of customers", "phase1", token_cap=200)
    assert "r-churn2" not in {h["run_id"] for h in capped} and "r-churn" in {h["run_id"] for h in capped}
    assert sum(len(h["title"]) + len(h["problem"]) + len(h["text"]) for h in capped) <= 800
    # the current run's own patterns are not fed back to it; unrelated problems get nothing
    others = db.similar_patterns("churn", "phase1", exclude_run="r-churn")
    assert "r-churn" not in {h["run_id"] for h in others}
    assert db.similar_patterns("forecast electricity load", "phase1") == []
    assert db.similar_patterns("predict the", "phase1") == []  # stopwords only


def test_failure_mid_run_turns_memory_off_with_one_warning(_mlpipe_home: Path) -> None:
    from mlpipe_flow.display import RecordingDisplay
    from mlpipe_flow.memory import RunMemory

    display = RecordingDisplay()
    db = MemoryDB.open()
    assert db is not None
    mem = RunMemory(db, display)
    state = SimpleNamespace(run_id="r1", problem="p", runner="builtin", model=None, progress=0,
                            status="running")
    mem.start_run(state, _mlpipe_home)
    db.conn.execute("DROP TABLE attempts")  # the database breaks under the run
    result = SimpleNamespace(tokens_in=1, tokens_out=2, cache_read_tokens=0, cache_write_tokens=0,
                             cost_usd=0.0, duration_s=0.1, status="ok")
    mem.record_attempt(state, "phase1", 1, "prompt", result, None, _mlpipe_home)
    mem.record_attempt(state, "phase1", 2, "prompt", result, None, _mlpipe_home)
    mem.finish_run(state)
    assert [k for k, _ in display.events] == ["warning"]
    assert "continuing without memory" in display.events[0][1]["message"]
    assert mem.similar_patterns("p", "phase1") == []


def test_show_and_export_unknown_run(_mlpipe_home: Path) -> None:
    for cmd in (["show", "nope"], ["export", "nope"]):
        res = mlpipe(*cmd)
        assert res.returncode == 2 and "no run 'nope'" in res.stderr and "mlpipe history" in res.stderr


def test_memory_line_lists_each_title_once_and_counts_what_it_lists(ws: Path, csv_file: Path) -> None:
    """Three past runs each left a phase-1 excerpt under the same title: the run's memory line
    names that title once (it said "3 similar past pattern(s)" and listed it three times), and
    the JSON event says how many excerpts from which runs."""
    db = MemoryDB.open()
    assert db is not None
    for i in range(3):
        db.start_run(f"r{i}", f"predict churn of customers {i}", "/ws", "builtin", None, 0)
        db.record_phase_passed(f"r{i}", "phase1", 1, f"predict churn of customers {i}", {},
                               [("ML pipeline architecture design", f"excerpt {i}")])
    db.close()
    res = mlpipe("run", CHURN, "--data", str(csv_file), "-w", str(ws), "--phase", "phase1", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    items = next(e for e in events if e["event"] == "patterns")["items"]
    assert [(i["phase"], i["title"], i["excerpts"]) for i in items] == [
        ("phase1", "ML pipeline architecture design", 3)]
    assert sorted(items[0]["run_ids"]) == ["r0", "r1", "r2"]
    from mlpipe_flow.display import render_lines

    [line] = render_lines("patterns", {"items": items})
    assert line == ("memory: 3 excerpt(s) from 3 similar past run(s): "
                    "phase1 ML pipeline architecture design (x3)"), line
    # what the line counts is what it lists: six titles of six phases, all six named
    six = [{"phase": f"phase{k}", "title": f"T{k}", "excerpts": 1, "run_ids": ["r0"]}
           for k in range(1, 7)]
    [line] = render_lines("patterns", {"items": six})
    assert line.startswith("memory: 6 excerpt(s) from 1 similar past run(s): ")
    assert line.split(": ", 2)[2].split("; ") == [f"phase{k} T{k}" for k in range(1, 7)]


def test_export_writes_a_file_and_leaves_mlflow_alone(tmp_path: Path) -> None:
    """`export` without -o writes ./provenance-RUN.json and says so in one line (not 5,000 lines
    on the terminal); it never clobbers that file without --force; `-o -` pipes the manifest;
    only --mlflow adds a run to the workspace's mlflow.db."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "ml-spec.yaml").write_text("task: regression\n")
    db = MemoryDB.open()
    assert db is not None
    db.start_run("run-20250101-x", "predict churn", str(workspace), "builtin", None, 0)
    db.record_phase_passed("run-20250101-x", "phase1", 1, "predict churn",
                           {"ml-spec.yaml": sha256(workspace / "ml-spec.yaml")}, [])
    db.close()
    cwd = tmp_path / "here"
    cwd.mkdir()
    res = mlpipe("export", "run-2025", cwd=cwd)
    assert res.returncode == 0, res.stderr
    out = cwd / "provenance-run-20250101-x.json"
    assert res.stdout.splitlines() == [f"wrote {out.name} (1 artifacts of run run-20250101-x)"]
    assert res.stderr == ""
    manifest = json.loads(out.read_text())
    assert manifest["run"]["id"] == "run-20250101-x" and manifest["artifacts"][0]["matches"]
    assert not (workspace / "mlflow.db").exists() and not (workspace / "mlruns").exists()

    out.write_text("mine\n")
    res = mlpipe("export", "run-20250101-x", cwd=cwd)
    assert res.returncode == 2 and res.stdout == "", res.stdout
    assert res.stderr.splitlines() == [f"mlpipe: error: {out.name} already exists; pass --force to "
                                       "overwrite it, or -o FILE (-o - for stdout)"]
    assert out.read_text() == "mine\n"
    res = mlpipe("export", "run-20250101-x", "--force", cwd=cwd)
    assert res.returncode == 0 and json.loads(out.read_text()) != {}, res.stderr

    res = mlpipe("export", "run-20250101-x", "-o", "-", cwd=cwd)
    assert res.returncode == 0 and json.loads(res.stdout)["run"]["id"] == "run-20250101-x"
    assert sorted(p.name for p in cwd.iterdir()) == [out.name]  # nothing else written
    assert not (workspace / "mlflow.db").exists()

    res = mlpipe("export", "run-20250101-x", "-o", "-", "--mlflow", cwd=cwd)
    assert res.returncode == 0 and json.loads(res.stdout)["artifacts"], res.stderr
    assert "MLflow: logged provenance-run-20250101-x.json" in res.stderr, res.stderr
    with sqlite3.connect(workspace / "mlflow.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)


@pytest.mark.parametrize(("query", "hits"), [("churn", 0), ("\"unbalanced", 0), ("phase1:", 1),
                                             ("FRAUD*", 1), ("-", 0)])
def test_patterns_search_odd_queries(query: str, hits: int) -> None:
    db = MemoryDB.open()
    assert db is not None
    db.start_run("r1", "detect fraud", "/ws", "builtin", None, 0)
    db.record_phase_passed("r1", "phase1", 1, "detect fraud", {}, [("Architecture", "some text")])
    res = mlpipe("patterns", "search", query, "--json")
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)) == hits
    res = mlpipe("patterns", "search", query)
    assert res.returncode == 0 and ("Architecture" in res.stdout) == bool(hits)


def test_excerpts_mask_url_passwords(tmp_path: Path) -> None:
    from mlpipe_flow.memory import read_excerpts
    from mlpipe_flow.models import MemoryExcerpt

    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg/a.py").write_text("URL = 'postgresql://etl:s3cret@db:5432/sales'\n" + "x\n" * 80)
    (tmp_path / "cfg/b.py").write_text("B = 1\n")
    (tmp_path / "outside.txt").write_text("not the workspace's\n")
    ws = tmp_path
    assert read_excerpts(ws / "cfg", [MemoryExcerpt(title="Up", paths=["../outside.txt", "/etc/host*",
                                                                         "[", "**/"])]) == []
    got = read_excerpts(ws, [MemoryExcerpt(title="Config", paths=["cfg/*.py", "cfg/a.py"], lines=3)])
    assert got == [("Config", "==> cfg/a.py <==\nURL = 'postgresql://etl:***@db:5432/sales'\nx\nx"
                              "\n\n==> cfg/b.py <==\nB = 1")]


def test_a_version_1_database_gains_the_turns_column(_mlpipe_home: Path) -> None:
    from mlpipe_flow.memory import MIGRATIONS

    path = _mlpipe_home / "memory.db"
    with sqlite3.connect(path) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO runs (id, problem, workspace, started) VALUES ('old', 'p', '/w', 't')")
        conn.execute("INSERT INTO attempts (run_id, phase, attempt, started, prompt_sha256, tokens_in) "
                     "VALUES ('old', 'phase1', 1, 't', 'x', 5)")
        conn.execute("PRAGMA user_version = 1")
    db = MemoryDB.open()
    assert db is not None
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert [(r["run_id"], r["turns"], r["tokens_in"]) for r in db.phase_usage("phase1")] == [("old", 0, 5)]
    db.close()


def test_an_attempt_records_the_agents_turns(_mlpipe_home: Path) -> None:
    from mlpipe_flow.display import RecordingDisplay
    from mlpipe_flow.memory import RunMemory
    from mlpipe_flow.runners import AgentResult

    db = MemoryDB.open()
    assert db is not None
    mem = RunMemory(db, RecordingDisplay())
    state = SimpleNamespace(run_id="r1", problem="p", runner="claude", model=None, progress=0)
    mem.start_run(state, _mlpipe_home)
    mem.record_attempt(state, "phase3", 1, "prompt", AgentResult(status="ok", tokens_in=10, turns=7),
                       None, _mlpipe_home)
    assert [(r["run_id"], r["turns"]) for r in db.phase_usage("phase3")] == [("r1", 7)]
