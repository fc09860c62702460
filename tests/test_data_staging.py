"""Staging --data: a staged copy that already holds the file is left alone (each CI job gives
--data again); a changed source, or a staged copy edited in the workspace, is copied again."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from conftest import mlpipe
from mlpipe_flow.data import stage


def fingerprint(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_ino, st.st_mtime_ns


def test_staging_again_leaves_an_identical_copy_alone(tmp_path: Path, csv_file: Path) -> None:
    ws = tmp_path / "ws"
    first = stage(ws, str(csv_file))
    staged = ws / "data/raw/customers.csv"
    before = fingerprint(staged)
    os.utime(staged, ns=(before[1] - 10**9, before[1] - 10**9))  # a rewrite would move the mtime
    before = fingerprint(staged)
    again = stage(ws, str(csv_file))
    assert again == first and fingerprint(staged) == before

    # the source changed (same size): copied again, and the new hash recorded
    csv_file.write_text(csv_file.read_text().replace("A1,3,Yes", "A1,4,Yes"))
    changed = stage(ws, str(csv_file))
    assert staged.read_bytes() == csv_file.read_bytes() and fingerprint(staged) != before
    assert changed.sha256 == hashlib.sha256(csv_file.read_bytes()).hexdigest() != first.sha256

    # the staged copy edited in the workspace (same size, same mtime): put back from the source
    mtime = staged.stat().st_mtime_ns
    staged.write_text(staged.read_text().replace("A2,40,No", "A2,40,Ye"))
    os.utime(staged, ns=(mtime, mtime))
    assert stage(ws, str(csv_file)) == changed
    assert staged.read_bytes() == csv_file.read_bytes()


def test_each_phase_job_giving_data_again_does_not_rewrite_it(ws: Path, csv_file: Path) -> None:
    """As the CI jobs do: every phase run with the same --data; the staged file is untouched."""
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase", "phase1")
    assert res.returncode == 0, res.stdout + res.stderr
    staged = ws / "data/raw/customers.csv"
    before = fingerprint(staged)
    res = mlpipe("run", "predict churn", "--data", str(csv_file), "-w", str(ws), "--phase", "phase2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert fingerprint(staged) == before
    state = json.loads((ws / ".mlpipe/state.json").read_text())
    assert state["data"]["sha256"] == hashlib.sha256(csv_file.read_bytes()).hexdigest()
