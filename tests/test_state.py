from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpipe_flow.errors import StateError
from mlpipe_flow.models import ExpectedOutput
from mlpipe_flow.state import RunState, StateStore, atomic_write, hash_outputs, workspace_lock


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    atomic_write(p, "one")
    atomic_write(p, "two")
    assert p.read_text() == "two"
    assert [f.name for f in tmp_path.iterdir()] == ["s.json"]  # no temp files left


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    st = RunState(run_id="r1", problem="p", runner="command", workflow="w", phases=[])
    st.phase("phase1").status = "passed"
    store.save(st)
    again = store.load()
    assert again is not None and again.phase("phase1").status == "passed"


def test_newer_state_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".mlpipe").mkdir()
    (tmp_path / ".mlpipe/state.json").write_text('{"version": 99}')
    with pytest.raises(StateError, match="newer mlpipe"):
        StateStore(tmp_path).load()


def test_state_with_wrong_field_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / ".mlpipe").mkdir()
    (tmp_path / ".mlpipe/state.json").write_text('{"run_id": 1}')
    with pytest.raises(StateError, match="corrupt"):
        StateStore(tmp_path).load()


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    with workspace_lock(tmp_path):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # another process tries the same workspace
            try:
                with workspace_lock(tmp_path):
                    os.write(w, b"got")
            except StateError as e:
                os.write(w, str(e).encode()[:200])
            os._exit(0)
        os.waitpid(pid, 0)
        msg = os.read(r, 300).decode()
        assert "in use by another mlpipe run" in msg and f"pid {os.getpid()}" in msg
    with workspace_lock(tmp_path):
        pass


def test_hash_outputs_ignores_caches_and_sees_changes(tmp_path: Path) -> None:
    outs = [ExpectedOutput(path="models/", description="d"), ExpectedOutput(path="a.md", description="d")]
    (tmp_path / "models/__pycache__").mkdir(parents=True)
    (tmp_path / "models/train.py").write_text("x")
    (tmp_path / "a.md").write_text("a")
    h1 = hash_outputs(tmp_path, outs)
    (tmp_path / "models/__pycache__/train.cpython-311.pyc").write_text("junk")
    assert hash_outputs(tmp_path, outs) == h1
    (tmp_path / "models/train.py").write_text("y")
    assert hash_outputs(tmp_path, outs) != h1
    (tmp_path / "a.md").unlink()
    assert hash_outputs(tmp_path, outs)["a.md"] == "missing"


def test_atomic_write_gives_the_usual_file_mode(tmp_path: Path) -> None:
    from mlpipe_flow.state import UMASK, atomic_write
    atomic_write(tmp_path / "f.json", "{}")
    assert os.stat(tmp_path / "f.json").st_mode & 0o777 == 0o666 & ~UMASK
