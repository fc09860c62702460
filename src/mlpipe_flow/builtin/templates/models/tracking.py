"""The project's MLflow tracking store: a SQLite file, `mlflow.db`, created whole or not at all.

MLflow builds a new store's schema in dozens of migration steps; a process killed half-way
would leave a store that every later run fails to open. So a new store is built in a
temporary file and renamed into place (a rename is atomic), and an existing store that cannot
be opened and holds no run (a half-built one) is set aside and built again. A store that holds
runs is never set aside: its error is raised.

MLflow records artifact locations as absolute paths (`file:///.../mlruns`). A project moved to
another folder (a CI job, another machine) would keep reading and writing the old place, so
`tracking_uri()` rewrites those locations to the project's own mlruns/ when the store was made
elsewhere: the store travels with the project.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path


def _runs(db: Path) -> int:
    """How many runs the store holds (0 when it has no runs table yet)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _open(db: Path, artifacts: Path) -> None:
    """Open the store as MLflow does (which creates or migrates its schema), then close it."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{db}", artifacts.as_uri())
    store.engine.dispose()


#: the columns where MLflow keeps an artifact location (runs, experiments, logged models and
#: registered model versions)
LOCATIONS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
             ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
             ("model_versions", "source"))


def _relocate(db: Path, artifacts: Path) -> None:
    """Point every artifact location under the mlruns/ the store was made with (the parent of
    its Default experiment's, `<mlruns>/0`) at `artifacts` instead; nothing to do when they are
    the same."""
    con = sqlite3.connect(db, timeout=30)
    try:
        row = con.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0"
                          ).fetchone()
        old = str(row[0]).rsplit("/", 1)[0] if row and row[0] else ""  # <mlruns>/0
        new = artifacts.as_uri()
        if not old.endswith("/mlruns") or old == new or not old.startswith("file://"):
            return
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        with con:
            for table, col in LOCATIONS:
                if table not in tables:
                    continue
                for prefix, repl in ((old, new), (old[len("file://"):], str(artifacts))):
                    con.execute(f"UPDATE {table} SET {col} = ? || substr({col}, ?) "  # nosec B608
                                f"WHERE {col} = ? OR substr({col}, 1, ?) = ?",
                                (repl, len(prefix) + 1, prefix, len(prefix) + 1, prefix + "/"))
    finally:
        con.close()


def tracking_uri(root: Path) -> str:
    """The tracking URI of the store in `root`, which exists and opens when this returns."""
    root = root.resolve()
    db, artifacts = root / "mlflow.db", root / "mlruns"
    if db.is_file():
        try:
            _open(db, artifacts)
        except Exception as e:
            if _runs(db):
                raise
            aside = db.with_name(f"mlflow.db.broken-{int(time.time())}")
            os.replace(db, aside)
            print(f"warning: {db.name} was half-built ({type(e).__name__}); set aside as "
                  f"{aside.name}, building a new store")
    for stale in root.glob(".mlflow.db.*.tmp*"):  # left by a process killed while building (and
        # its SQLite journal)
        if not _alive(stale.name.split(".")[3]):
            stale.unlink(missing_ok=True)
    if not db.is_file():
        tmp = db.with_name(f".mlflow.db.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        _open(tmp, artifacts)
        os.replace(tmp, db)
    _relocate(db, artifacts)
    return f"sqlite:///{db}"
