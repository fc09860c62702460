"""The generated project's MLflow store is crash-safe: a run killed while MLflow builds the
store's schema (dozens of migration steps, seconds) leaves nothing that the next run cannot
open. Real processes, real SIGKILLs, MLflow's own store code."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

TEMPLATE = Path(__file__).resolve().parents[1] / "src/mlpipe_flow/builtin/templates/models/tracking.py"
BUILD = ("from pathlib import Path; from models.tracking import tracking_uri; "
         "print(tracking_uri(Path('.')))")
PLAIN = ("import sys; from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; "
         "SqlAlchemyStore('sqlite:///mlflow.db', 'file:///tmp')")
OPEN = ("import mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); "
        "print(len(mlflow.search_experiments()))")


def project(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / "__init__.py").write_text("")
    shutil.copy(TEMPLATE, root / "models" / "tracking.py")
    return root


def py(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          timeout=120)


def kill_after(root: Path, code: str, appears: str, delay: float) -> None:
    """Start `code`, SIGKILL it `delay` s after a file matching `appears` shows up."""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(root.glob(appears)) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_new_store_is_built_whole(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    res = py(root, BUILD)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("mlflow.db") and (root / "mlflow.db").is_file()
    assert not list(root.glob(".mlflow.db.*"))
    assert py(root, OPEN).returncode == 0


@pytest.mark.slow
def test_killed_while_building_the_store_the_next_run_opens_it(tmp_path: Path) -> None:
    """Kill points across the migration: MLflow's own store creation leaves a store that no
    longer opens at some of them (the defect); the project's never does."""
    broken_plain = None
    # the middle of the migration first: where a kill broke the store on this machine
    for i, delay in enumerate((0.6, 0.9, 0.4, 1.2, 0.2, 1.6, 2.0, 2.5)):
        plain = tmp_path / f"plain-{i}"
        plain.mkdir()
        kill_after(plain, PLAIN, "mlflow.db", delay)
        if (plain / "mlflow.db").is_file() and py(plain, OPEN).returncode != 0:
            broken_plain = plain
        ours = project(tmp_path / f"ours-{i}")
        kill_after(ours, BUILD, ".mlflow.db.*.tmp", delay)
        assert not (ours / "mlflow.db").exists() or py(ours, OPEN).returncode == 0
        res = py(ours, BUILD)  # the resumed run
        assert res.returncode == 0, res.stderr
        assert py(ours, OPEN).returncode == 0 and not list(ours.glob(".mlflow.db.*"))
        if broken_plain is not None:
            break
    if broken_plain is None:
        pytest.skip("no kill point broke MLflow's own store on this machine: the defect the "
                    "project guards against was not reproduced")
    # a store left half-built before this fix (the defect itself) is set aside and rebuilt
    ours = project(tmp_path / "from-plain")
    shutil.copy(broken_plain / "mlflow.db", ours / "mlflow.db")
    res = py(ours, BUILD)
    assert res.returncode == 0, res.stderr
    assert "half-built" in res.stdout and list(ours.glob("mlflow.db.broken-*"))
    assert py(ours, OPEN).returncode == 0


def test_a_store_with_runs_is_never_set_aside(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    assert py(root, BUILD).returncode == 0
    con = sqlite3.connect(root / "mlflow.db")
    con.execute("INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage) VALUES ('r1', 0, 'active')")
    con.execute("UPDATE alembic_version SET version_num = 'not-a-revision'")
    con.commit()
    con.close()
    res = py(root, BUILD)
    assert res.returncode != 0 and not list(root.glob("mlflow.db.broken-*"))
    assert (root / "mlflow.db").is_file()


MAKE_RUN = """
import json, mlflow
from pathlib import Path
from mlflow import MlflowClient
from models.tracking import tracking_uri
root = Path('.').resolve()
mlflow.set_tracking_uri(tracking_uri(root))
exp = mlflow.create_experiment('e', artifact_location=(root / 'mlruns').as_uri())
Path('note.txt').write_text('kept')
with mlflow.start_run(experiment_id=exp) as run:
    mlflow.log_artifact('note.txt')
c = MlflowClient()
c.create_registered_model('m')
mv = c.create_model_version('m', f'{run.info.artifact_uri}', run_id=run.info.run_id)
c.set_registered_model_alias('m', 'champion', mv.version)
print(json.dumps({'run': run.info.run_id}))
"""
READ_BACK = """
import json, mlflow
from pathlib import Path
from mlflow import MlflowClient
from models.tracking import tracking_uri
mlflow.set_tracking_uri(tracking_uri(Path('.')))
c = MlflowClient()
run = c.get_run(json.loads(Path('run.json').read_text())['run'])
mv = c.get_model_version_by_alias('m', 'champion')
local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path='note.txt')
print(json.dumps({'exp': mlflow.get_experiment_by_name('e').artifact_location,
                  'run': run.info.artifact_uri, 'mv': c.get_model_version_download_uri('m', mv.version),
                  'note': Path(local).read_text()}))
"""


def test_a_moved_project_keeps_its_store(tmp_path: Path) -> None:
    """MLflow records absolute artifact locations; a project moved to another folder (a CI job,
    another machine) must read and write its own mlruns/, never the old place."""
    import json

    first = project(tmp_path / "first")
    res = py(first, MAKE_RUN)
    assert res.returncode == 0, res.stderr[-2000:]
    (first / "run.json").write_text(res.stdout.strip().splitlines()[-1])
    moved = tmp_path / "elsewhere" / "project"
    moved.parent.mkdir()
    shutil.move(first, moved)
    res = py(moved, READ_BACK)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    here = (moved / "mlruns").as_uri()
    assert got["exp"] == here and got["run"].startswith(here + "/"), got
    assert got["mv"].startswith(here + "/") and got["note"] == "kept", got
    assert not first.exists()  # nothing was written at the old place
