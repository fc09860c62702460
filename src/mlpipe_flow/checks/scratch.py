"""A scratch copy of the workspace for checks that run the agent's code (notebooks, DAG files):
what that code writes lands in the copy, and a path hard-coded to the real workspace shows.
Tool and cache folders are left out; files larger than BIG_FILE are linked, not copied, so
large data costs nothing to "copy"."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

IGNORED = (".git", ".venv", "venv", ".mlpipe", "__pycache__", "node_modules", "mlruns",
           ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache", ".ruff_cache")
BIG_FILE = 50 * 1024 * 1024


def _copy(src: str, dst: str) -> str:
    if os.path.getsize(src) > BIG_FILE:
        os.symlink(os.path.realpath(src), dst)
        return dst
    return str(shutil.copy2(src, dst))


def copy_workspace(workspace: Path, dest: Path) -> Path:
    shutil.copytree(workspace, dest, symlinks=True, ignore=shutil.ignore_patterns(*IGNORED),
                    copy_function=_copy)
    return dest
