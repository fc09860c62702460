"""Run memory and audit trail: a local SQLite database of every run, phase attempt, artifact
hash and pattern excerpt, searched with FTS5 (bm25) so similar past pipelines inform prompts.

Where: `MLPIPE_HOME/memory.db`, else the platform's user data folder (`~/.local/share/mlpipe`
on Linux). WAL mode and a busy timeout let two runs write at once. The schema version is
SQLite's `user_version`, moved forward by ordered migrations; a database from a newer mlpipe
is refused. A corrupt or unwritable database never loses a run: the engine warns in one line
and carries on without memory (`RunMemory` turns into a no-op after the first failure).

Standard library only: the CLI imports this module for `history`/`show`/`patterns`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from mlpipe_flow.errors import StateError

SCHEMA_VERSION = 2
DB_NAME = "memory.db"
CHARS_PER_TOKEN = 4
PATTERN_TOKEN_CAP = 1500  # per phase prompt
MAX_PATTERNS = 4  # per phase prompt
MAX_FILES_PER_EXCERPT = 3
MAX_LINE_CHARS = 300
MAX_EVIDENCE_CHARS = 20_000
BUSY_TIMEOUT_MS = 10_000
# words every ML problem statement shares; they say nothing about similarity
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "of",
    "on", "or", "the", "to", "via", "with", "using", "use", "predict", "prediction", "predictions",
    "model", "build", "ml"})

# Ordered migrations: MIGRATIONS[n] takes a database from user_version n to n + 1.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY, problem TEXT NOT NULL, workspace TEXT NOT NULL,
            runner TEXT, model TEXT, started TEXT NOT NULL, finished TEXT,
            outcome TEXT NOT NULL DEFAULT 'running', progress INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX runs_started ON runs(started)",
        """CREATE TABLE attempts (
            run_id TEXT NOT NULL REFERENCES runs(id), phase TEXT NOT NULL, attempt INTEGER NOT NULL,
            started TEXT NOT NULL, runner TEXT, model TEXT, prompt_sha256 TEXT NOT NULL,
            tokens_in INTEGER NOT NULL DEFAULT 0, tokens_out INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0, cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0, duration_s REAL NOT NULL DEFAULT 0,
            agent_status TEXT, gate_passed INTEGER, gate_evidence TEXT, run_dir TEXT,
            PRIMARY KEY (run_id, phase, attempt))""",
        """CREATE TABLE artifacts (
            run_id TEXT NOT NULL REFERENCES runs(id), phase TEXT NOT NULL, attempt INTEGER NOT NULL,
            path TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (run_id, phase, path))""",
        """CREATE TABLE patterns (
            id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(id), phase TEXT NOT NULL,
            title TEXT NOT NULL, problem TEXT NOT NULL, text TEXT NOT NULL, created TEXT NOT NULL)""",
        "CREATE INDEX patterns_run ON patterns(run_id, phase)",
        # rowid = patterns.id; kept in step by hand (insert and delete both, in one transaction)
        "CREATE VIRTUAL TABLE patterns_fts USING fts5(problem, phase, title, text, "
        "tokenize = 'porter unicode61')",
    ],
    # the agent's turns per attempt (what `mlpipe plan` estimates a phase from)
    ["ALTER TABLE attempts ADD COLUMN turns INTEGER NOT NULL DEFAULT 0"],
]
assert len(MIGRATIONS) == SCHEMA_VERSION
# user:password@ in any URL an excerpt quotes (a database URL in a config file, say)
URL_PASSWORD = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^@\s/]+@")


class MemoryUnavailable(StateError):
    """The memory database cannot be opened or written (corrupt, unwritable, no FTS5)."""


class MemoryTooNew(StateError):
    """The memory database was written by a newer mlpipe."""


def memory_home(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("MLPIPE_HOME"):
        return Path(env["MLPIPE_HOME"]).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "mlpipe"
    if sys.platform == "win32":
        return Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local") / "mlpipe"
    return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "mlpipe"


def memory_path(environ: dict[str, str] | None = None) -> Path:
    return memory_home(environ) / DB_NAME


def now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class MemoryDB:
    """One connection to the memory database; every write is one short IMMEDIATE transaction."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        conn.row_factory = sqlite3.Row

    @classmethod
    def open(cls, path: Path | None = None, create: bool = True) -> MemoryDB | None:
        """The database at `path` (default: memory_path()), migrated; None when it does not
        exist and `create` is False. Raises MemoryTooNew or MemoryUnavailable."""
        path = path or memory_path()
        if not create and not path.exists():
            return None
        fix = "move it aside (a new one is made on the next run) or set MLPIPE_HOME"
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise MemoryUnavailable(f"memory database {path} cannot be opened ({_why(e)})") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise MemoryTooNew(
                    f"memory database {path} has schema version {version}, newer than this mlpipe "
                    f"knows ({SCHEMA_VERSION}); upgrade mlpipe, or set MLPIPE_HOME to use another "
                    "folder (or pass --no-memory)")
            if version < SCHEMA_VERSION:
                # Switching a new database to WAL needs an exclusive lock; two processes doing it
                # while one migrates can deadlock, and SQLite then answers "database is locked"
                # at once instead of waiting. Creation and migration are serialised by a lock
                # file (the OS drops it if the process dies); once in WAL, writers just wait.
                with creation_lock(path):
                    conn.execute("PRAGMA journal_mode = WAL")
                    cls._migrate(conn, path)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except MemoryTooNew:
            conn.close()
            raise
        except (OSError, sqlite3.Error) as e:
            conn.close()
            raise MemoryUnavailable(f"memory database {path} is unusable ({_why(e)}); {fix}") from None
        return cls(conn, path)

    @staticmethod
    def _migrate(conn: sqlite3.Connection, path: Path) -> None:
        conn.execute("BEGIN IMMEDIATE")  # a second process migrating at once waits, then sees it done
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise MemoryTooNew(f"memory database {path} has schema version {version}, newer "
                                   f"than this mlpipe knows ({SCHEMA_VERSION}); upgrade mlpipe")
            for step in MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()

    def write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                conn.execute(sql, args)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writes -----------------------------------------------------------------------------
    def start_run(self, run_id: str, problem: str, workspace: str, runner: str | None,
                  model: str | None, progress: int) -> None:
        self.write([(
            "INSERT INTO runs (id, problem, workspace, runner, model, started, progress) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET runner = excluded.runner, "
            "model = excluded.model, workspace = excluded.workspace, outcome = 'running', "
            "finished = NULL",
            (run_id, problem, workspace, runner, model, now(), progress))])

    def record_attempt(self, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.write([(f"INSERT OR REPLACE INTO attempts ({cols}) VALUES ({marks})", tuple(row.values()))])

    def record_phase_passed(self, run_id: str, phase: str, attempt: int, problem: str,
                            artifacts: dict[str, str], patterns: list[tuple[str, str]]) -> None:
        stmts: list[tuple[str, tuple[Any, ...]]] = [
            ("DELETE FROM artifacts WHERE run_id = ? AND phase = ?", (run_id, phase)),
            ("DELETE FROM patterns_fts WHERE rowid IN "
             "(SELECT id FROM patterns WHERE run_id = ? AND phase = ?)", (run_id, phase)),
            ("DELETE FROM patterns WHERE run_id = ? AND phase = ?", (run_id, phase)),
        ]
        stmts += [("INSERT INTO artifacts (run_id, phase, attempt, path, sha256) VALUES (?, ?, ?, ?, ?)",
                   (run_id, phase, attempt, path, digest)) for path, digest in sorted(artifacts.items())]
        created = now()
        for title, text in patterns:
            stmts.append(("INSERT INTO patterns (run_id, phase, title, problem, text, created) "
                          "VALUES (?, ?, ?, ?, ?, ?)", (run_id, phase, title, problem, text, created)))
            stmts.append(("INSERT INTO patterns_fts (rowid, problem, phase, title, text) "
                          "VALUES (last_insert_rowid(), ?, ?, ?, ?)", (problem, phase, title, text)))
        self.write(stmts)

    def finish_run(self, run_id: str, outcome: str, progress: int) -> None:
        self.write([("UPDATE runs SET finished = ?, outcome = ?, progress = ? WHERE id = ?",
                     (now(), outcome, progress, run_id))])

    # -- reads ------------------------------------------------------------------------------
    def similar_patterns(self, problem: str, phase: str, token_cap: int = PATTERN_TOKEN_CAP,
                         exclude_run: str | None = None, limit: int = MAX_PATTERNS) -> list[dict[str, Any]]:
        """Past patterns of this phase, most similar problem first (bm25), within the token cap."""
        query = fts_query(problem)
        if not query:
            return []
        rows = self.conn.execute(
            "SELECT p.title, p.problem, p.text, p.run_id, p.phase FROM patterns_fts "
            "JOIN patterns p ON p.id = patterns_fts.rowid "
            "WHERE patterns_fts MATCH ? AND p.phase = ? AND p.run_id != ? "
            "ORDER BY bm25(patterns_fts), p.id DESC LIMIT 40",
            (f"problem : ({query}) AND phase : {_quote(phase)}", phase, exclude_run or "")).fetchall()
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        budget = token_cap * CHARS_PER_TOKEN
        for r in rows:
            key = (r["title"], r["text"])
            size = len(r["title"]) + len(r["problem"]) + len(r["text"])
            if key in seen or size > budget:
                continue
            seen.add(key)
            budget -= size
            out.append(dict(r))
            if len(out) >= limit:
                break
        return out

    def phase_usage(self, phase: str, limit: int = 20) -> list[dict[str, Any]]:
        """What the phase took in each of its last `limit` past runs that recorded usage (all
        attempts of the phase in that run summed; runners that report no tokens, such as the
        built-in agent, say nothing about what an LLM costs and are left out)."""
        rows = self.conn.execute(
            "SELECT run_id, COUNT(*) AS attempts, SUM(turns) AS turns, SUM(tokens_in) AS tokens_in, "
            "SUM(tokens_out) AS tokens_out, SUM(cache_read_tokens) AS cache_read_tokens, "
            "SUM(cache_write_tokens) AS cache_write_tokens, SUM(cost_usd) AS cost_usd, "
            "MAX(runner) AS runner, MAX(model) AS model, MAX(started) AS last FROM attempts "
            "WHERE phase = ? GROUP BY run_id "
            "HAVING SUM(tokens_in + tokens_out + cache_read_tokens + cache_write_tokens) > 0 "
            "ORDER BY last DESC, run_id LIMIT ?", (phase, limit)).fetchall()
        return [dict(r) for r in rows]

    def search_patterns(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Free-text search over problem, phase, title and text (bm25)."""
        q = fts_query(query, stopwords=frozenset())
        if not q:
            return []
        rows = self.conn.execute(
            "SELECT p.id, p.run_id, p.phase, p.title, p.problem, p.text, p.created, "
            "bm25(patterns_fts) AS score FROM patterns_fts JOIN patterns p ON p.id = patterns_fts.rowid "
            "WHERE patterns_fts MATCH ? ORDER BY score, p.id DESC LIMIT ?", (q, limit)).fetchall()
        return [{**dict(r), "score": round(r["score"], 4)} for r in rows]

    def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT r.*, (SELECT COALESCE(SUM(cost_usd), 0) FROM attempts a WHERE a.run_id = r.id) "
            "AS cost_usd, (SELECT COALESCE(SUM(tokens_in + tokens_out), 0) FROM attempts a "
            "WHERE a.run_id = r.id) AS tokens, (SELECT COUNT(*) FROM attempts a WHERE a.run_id = r.id) "
            "AS attempts FROM runs r ORDER BY r.started DESC, r.rowid DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    def find_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.conn.execute("SELECT * FROM runs WHERE id = ? OR id LIKE ? ESCAPE '\\' LIMIT 2",
                                 (run_id, _like_prefix(run_id))).fetchall()
        exact = [r for r in rows if r["id"] == run_id]
        if exact:
            return dict(exact[0])
        if len(rows) > 1:
            raise StateError(f"run id prefix {run_id!r} is ambiguous; give more of it (see mlpipe history)")
        return dict(rows[0]) if rows else None

    def run_detail(self, run_id: str) -> dict[str, Any]:
        conn = self.conn
        attempts = [dict(r) for r in conn.execute(
            "SELECT * FROM attempts WHERE run_id = ? ORDER BY started, phase, attempt", (run_id,))]
        for a in attempts:
            a["gate_passed"] = None if a["gate_passed"] is None else bool(a["gate_passed"])
            a["gate_evidence"] = json.loads(a["gate_evidence"]) if a["gate_evidence"] else None
        artifacts = [dict(r) for r in conn.execute(
            "SELECT phase, attempt, path, sha256 FROM artifacts WHERE run_id = ? ORDER BY phase, path",
            (run_id,))]
        patterns = [dict(r) for r in conn.execute(
            "SELECT phase, title, text FROM patterns WHERE run_id = ? ORDER BY id", (run_id,))]
        return {"attempts": attempts, "artifacts": artifacts, "patterns": patterns}


@contextlib.contextmanager
def creation_lock(path: Path) -> Iterator[None]:
    """An exclusive lock next to the database while it is created or migrated."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fts_query(text: str, stopwords: frozenset[str] = STOPWORDS) -> str:
    words = [w for w in re.findall(r"[^\W_]+", text.lower()) if w not in stopwords and len(w) > 1]
    return " OR ".join(_quote(w) for w in dict.fromkeys(words))


def _quote(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _why(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


def pattern_summary(by_phase: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """What memory put into the prompts, one entry per phase and title (the same excerpt title
    from three past runs is one entry that counts three excerpts, not three listed titles)."""
    out: list[dict[str, Any]] = []
    for phase, items in by_phase.items():
        groups: dict[str, dict[str, Any]] = {}
        for p in items:
            g = groups.setdefault(p["title"], {"phase": phase, "title": p["title"], "problem": p["problem"],
                                               "run_id": p["run_id"], "excerpts": 0, "run_ids": []})
            g["excerpts"] += 1
            if p["run_id"] not in g["run_ids"]:
                g["run_ids"].append(p["run_id"])
        out += groups.values()
    return out


def read_excerpts(workspace: Path, excerpts: list[Any]) -> list[tuple[str, str]]:
    """(title, text) per MemoryExcerpt: the first `lines` lines of the files its globs match,
    each under a `==> path <==` header (as `head` prints them); URL passwords masked."""
    out = []
    for ex in excerpts:
        files: list[Path] = []
        for pattern in ex.paths:
            if pattern.startswith(("/", "\\")) or ".." in Path(pattern).parts:
                continue  # only the workspace's own files become patterns
            try:
                matches = sorted(workspace.glob(pattern))
            except (ValueError, NotImplementedError, OSError):
                continue
            files += [f for f in matches if f.is_file() and f not in files]
        parts = []
        for f in files[:MAX_FILES_PER_EXCERPT]:
            try:
                with f.open(encoding="utf-8", errors="replace") as fh:
                    head = [line.rstrip("\n")[:MAX_LINE_CHARS] for _, line in
                            zip(range(ex.lines), fh, strict=False)]
            except OSError:
                continue
            body = URL_PASSWORD.sub(r"\1:***@", "\n".join(head).rstrip())
            parts.append(f"==> {f.relative_to(workspace).as_posix()} <==\n" + body)
        if parts:
            out.append((ex.title, "\n\n".join(parts)))
    return out


T = TypeVar("T")


class NullMemory:
    """Memory switched off (--no-memory, `memory: false`) or unusable: every call does nothing."""

    enabled = False
    path: Path | None = None

    def start_run(self, state: Any, workspace: Path) -> None:
        pass

    def similar_patterns(self, problem: str, phase_id: str, token_cap: int = PATTERN_TOKEN_CAP,
                         exclude_run: str | None = None) -> list[dict[str, Any]]:
        return []

    def record_attempt(self, state: Any, phase_id: str, attempt: int, prompt: str, result: Any,
                       report: Any, run_dir: Path) -> None:
        pass

    def record_phase_passed(self, state: Any, phase: Any, attempt: int, workspace: Path,
                            artifacts: dict[str, str]) -> None:
        pass

    def finish_run(self, state: Any) -> None:
        pass


class RunMemory(NullMemory):
    """The engine's hook. Any database failure mid-run: one warning, then memory is off."""

    enabled = True

    def __init__(self, db: MemoryDB, display: Any) -> None:
        self.db: MemoryDB | None = db
        self.path = db.path
        self.display = display

    def _guard(self, fn: Callable[[MemoryDB], T], default: T) -> T:
        if self.db is None:
            return default
        try:
            return fn(self.db)
        except (sqlite3.Error, OSError) as e:
            self.display.emit("warning", message=f"memory database {self.path} failed ({_why(e)}); "
                              "continuing without memory")
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None
            return default

    def start_run(self, state: Any, workspace: Path) -> None:
        self._guard(lambda db: db.start_run(state.run_id, state.problem, str(workspace), state.runner,
                                            state.model, state.progress), None)

    def similar_patterns(self, problem: str, phase_id: str, token_cap: int = PATTERN_TOKEN_CAP,
                         exclude_run: str | None = None) -> list[dict[str, Any]]:
        return self._guard(lambda db: db.similar_patterns(problem, phase_id, token_cap, exclude_run), [])

    def record_attempt(self, state: Any, phase_id: str, attempt: int, prompt: str, result: Any,
                       report: Any, run_dir: Path) -> None:
        checks = [{"id": c.id, "status": c.status, "message": c.message, "evidence": c.evidence}
                  for c in report.checks] if report is not None else None
        evidence = json.dumps(checks, default=str) if checks is not None else None
        if evidence and len(evidence) > MAX_EVIDENCE_CHARS and checks is not None:
            evidence = json.dumps([{k: v for k, v in c.items() if k != "evidence"} for c in checks])
        row = {
            "run_id": state.run_id, "phase": phase_id, "attempt": attempt, "started": now(),
            "runner": state.runner, "model": state.model, "prompt_sha256": sha256_text(prompt),
            "tokens_in": result.tokens_in, "tokens_out": result.tokens_out,
            "cache_read_tokens": result.cache_read_tokens, "cache_write_tokens": result.cache_write_tokens,
            "cost_usd": result.cost_usd, "duration_s": result.duration_s, "agent_status": result.status,
            "turns": getattr(result, "turns", 0),
            "gate_passed": None if report is None else int(report.passed), "gate_evidence": evidence,
            "run_dir": str(run_dir),
        }
        self._guard(lambda db: db.record_attempt(row), None)

    def record_phase_passed(self, state: Any, phase: Any, attempt: int, workspace: Path,
                            artifacts: dict[str, str]) -> None:
        if self.db is None:
            return
        patterns = read_excerpts(workspace, list(phase.memory))
        kept = {p: h for p, h in artifacts.items() if h != "missing"}
        self._guard(lambda db: db.record_phase_passed(state.run_id, phase.id, attempt, state.problem,
                                                      kept, patterns), None)

    def finish_run(self, state: Any) -> None:
        outcome = "error" if state.status == "running" else state.status
        self._guard(lambda db: db.finish_run(state.run_id, outcome, state.progress), None)
        if self.db is not None:
            self.db.close()
            self.db = None


def open_run_memory(enabled: bool, display: Any, create: bool = True) -> NullMemory:
    """The engine's memory: RunMemory, or NullMemory when switched off, absent (create=False)
    or unusable (with a warning). A database from a newer mlpipe raises MemoryTooNew."""
    if not enabled:
        return NullMemory()
    try:
        db = MemoryDB.open(create=create)
    except MemoryTooNew:
        raise
    except MemoryUnavailable as e:
        display.emit("warning", message=f"{e}; running without memory")
        return NullMemory()
    return NullMemory() if db is None else RunMemory(db, display)
