"""Writing into the workspace: atomic files, the code templates, and the prose templates."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlpipe_flow.state import atomic_write

TEMPLATES = Path(__file__).parent / "templates"

__all__ = ["TEMPLATES", "atomic_write", "copy_code", "remove", "render", "write_all"]


def write_all(root: Path, files: dict[str, str]) -> None:
    """Every file to a temp sibling first, then all renamed into place."""
    staged: list[tuple[str, Path]] = []
    try:
        for rel, text in files.items():
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            staged.append((tmp, dest))
        for tmp, dest in staged:
            os.replace(tmp, dest)
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def copy_code(root: Path, folders: list[str], files: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    """Copy template packages (and single files) into the workspace, as they are."""
    copied = []
    for folder in folders:
        src = TEMPLATES / folder
        for f in sorted(src.rglob("*.py")):
            rel = f.relative_to(TEMPLATES).as_posix()
            atomic_write(root / rel, f.read_text(encoding="utf-8"))
            copied.append(rel)
    for rel in files:
        atomic_write(root / rel, (TEMPLATES / rel).read_text(encoding="utf-8"))
        copied.append(rel)
    return copied


def render(name: str, context: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["pct"] = lambda v: f"{100 * float(v):.1f}%"
    env.filters["num"] = num
    return env.get_template(name).render(**context)


def num(v: Any) -> str:
    """4 significant digits, but never scientific notation for a large value (an RMSE of
    162816.3 stays 162816.3, not 1.628e+05, which readers and the card check misread)."""
    if v is None:
        return "n/a"
    x = float(v)
    return f"{x:.1f}" if abs(x) >= 1e4 else f"{x:.4g}"


def remove(root: Path, rels: list[str]) -> None:
    for rel in rels:
        p = root / rel
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
