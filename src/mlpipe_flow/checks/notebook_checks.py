"""Notebooks executed by the gate: each notebook is valid nbformat, runs top to bottom without
error in a scratch copy of the workspace (its own folder as working directory, as Jupyter does)
with the workspace's interpreter as kernel, reads the project's data, and its saved outputs
match the fresh execution — so outputs typed in without running fail.

Outputs are compared cell by cell after normalisation: stdout and the text of results (stderr
and HTML are ignored), images by presence, memory addresses, durations and dates masked,
whitespace collapsed, numbers equal within a relative 1e-3.

The kernel is started by jupyter_client in a session of its own; it is shut down when the
check ends, and ipykernel's parent poller ends it should the check be killed first.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.scratch import copy_workspace
from mlpipe_flow.models import CheckResult, Status

KERNEL = "mlpipe-workspace"
AUDIT = """\
import sys as _mlpipe_sys
_mlpipe_seen = set()
def _mlpipe_hook(event, args, _seen=_mlpipe_seen):
    if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes)):
        _seen.add(str(args[0]))
    elif event in ("sqlite3.connect", "socket.connect"):
        _seen.add("<database>")
_mlpipe_sys.addaudithook(_mlpipe_hook)
"""
REPORT = "print('\\x00mlpipe-seen' + __import__('json').dumps(sorted(_mlpipe_seen)))"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ADDR = re.compile(r"0x[0-9a-fA-F]{4,}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?|"
                   r"\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b")
_DURATION = re.compile(r"[-+]?\d*\.?\d+\s?(ns|µs|us|ms|s|sec|secs|seconds|min|mins|minutes)\b")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class NotebookParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    glob: str = "eda_notebooks/*.ipynb"
    min_code_cells: int = Field(default=3, ge=0)
    require_outputs: bool = True
    execute: bool = Field(default=True, description="run each notebook and compare its outputs")
    cell_timeout_s: float = Field(default=120, gt=0)
    rel_tol: float = Field(default=1e-3, ge=0, description="numbers in outputs may differ by this")
    reads_data: bool = Field(default=True, description="the run must open a file under data/")

    def describe(self) -> str:
        text = (f"each notebook `{self.glob}` is valid nbformat with at least "
                f"{self.min_code_cells} code cells"
                + (" and saved outputs" if self.require_outputs else "") + ".")
        if self.execute:
            text += (" The gate runs it top to bottom in a fresh kernel of the workspace's "
                     "interpreter (the notebook's folder as working directory, as Jupyter does) "
                     f"with {self.cell_timeout_s:g} s per cell: no cell may fail"
                     + (", it must read the project's data (a file under `data/`)"
                        if self.reads_data else "")
                     + ", and the saved outputs must match that run cell by cell (stdout and "
                     "text results; memory addresses, dates and durations masked; numbers within "
                     f"a relative {self.rel_tol:g}), so outputs not produced by running fail.")
        return text


def notebook_valid(ctx: CheckContext, params: NotebookParams) -> CheckResult:
    import nbformat

    files = sorted(ctx.workspace.glob(params.glob))
    if not files:
        return result("failed", f"no notebook matches {params.glob}")
    measured: dict[str, Any] = {}
    books = {}
    for f in files:
        rel = f.relative_to(ctx.workspace).as_posix()
        try:
            nb = nbformat.read(str(f), as_version=4)
            nbformat.validate(nb)
        except Exception as e:  # noqa: BLE001 - any reader/validator error is a failure
            return result("failed", f"{rel} is not a valid notebook: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")
        code = [c for c in nb.cells if c.cell_type == "code"]
        with_out = [c for c in code if c.get("outputs")]
        measured[rel] = {"cells": len(nb.cells), "code_cells": len(code),
                         "with_outputs": len(with_out)}
        if len(code) < params.min_code_cells:
            return result("failed", f"{rel}: {len(code)} code cells, expected at least "
                          f"{params.min_code_cells}", notebooks=measured)
        if params.require_outputs and not with_out:
            return result("failed", f"{rel}: no code cell has output (run it and save)",
                          notebooks=measured)
        books[rel] = nb
    if not params.execute:
        return result("passed", f"{len(files)} valid notebook(s) (nbformat 4), not executed",
                      notebooks=measured)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlpipe-nb-", dir=ctx.scratch) as tmp:
        root = copy_workspace(ctx.workspace, Path(tmp) / "workspace")
        kernels = _kernelspec(ctx, Path(tmp) / "kernels")
        for rel, nb in books.items():
            verdict = _run_and_compare(ctx, params, rel, nb, root, kernels, measured[rel])
            if verdict is not None:
                return result(verdict[0], verdict[1], notebooks=measured)
    return result("passed", f"{len(files)} notebook(s) ran without error in a fresh kernel and "
                  "their saved outputs match that run", notebooks=measured)


def _kernel_missing(ctx: CheckContext) -> str | None:
    res = proc.run([ctx.python, "-c", "import ipykernel"], cwd=ctx.scratch or ctx.workspace,
                   timeout_s=60, env=proc.scrubbed_env(extra={"PYTHONDONTWRITEBYTECODE": "1"}))
    if res.ok:
        return None
    return (f"ipykernel is not importable by the workspace interpreter {ctx.python} "
            "(install mlpipe-flow[ml] or ipykernel there)")


def _kernelspec(ctx: CheckContext, folder: Path) -> Path:
    spec = folder / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [ctx.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "workspace interpreter", "language": "python"}), encoding="utf-8")
    return folder


def _run_and_compare(ctx: CheckContext, params: NotebookParams, rel: str, nb: Any, root: Path,
                     kernels: Path, measured: dict[str, Any]) -> tuple[Status, str] | None:
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    fresh = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in fresh.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    fresh.cells.insert(0, nbformat.v4.new_code_cell(AUDIT))
    fresh.cells.append(nbformat.v4.new_code_cell(REPORT))
    km = KernelManager(kernel_name=KERNEL, connection_file=str(kernels.parent / "kernel-conn.json"),
                       transport="ipc" if os.name == "posix" else "tcp",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    client = NotebookClient(fresh, km=km, timeout=params.cell_timeout_s, allow_errors=False,
                            resources={"metadata": {"path": str((root / rel).parent)}})
    env = proc.scrubbed_env(extra={"PYTHONDONTWRITEBYTECODE": "1", **ctx.env,
                                   "IPYTHONDIR": str(kernels.parent / "ipython"),
                                   "MPLCONFIGDIR": str(kernels.parent / "mpl")})
    try:
        try:
            client.execute(env=env)
        finally:  # nbclient leaves a kernel it did not start to its owner
            if km.has_kernel:
                km.shutdown_kernel(now=True)
    except CellTimeoutError:
        return "failed", (f"{rel}: a cell ran longer than {params.cell_timeout_s:.0f}s in a "
                          "fresh kernel")
    except CellExecutionError as e:
        lines = [ln for ln in _ANSI.sub("", str(e)).splitlines() if ln.strip()]
        return "failed", (f"{rel} fails when the gate runs it top to bottom: "
                          f"{lines[-1][:200] if lines else 'a cell raised'}")
    except DeadKernelError as e:
        return "failed", f"{rel}: the kernel died while running it ({e})"
    except RuntimeError as e:  # the kernel did not start: say why if it is ours to say
        why = _kernel_missing(ctx)
        if why:
            return "error", f"cannot execute {rel}: {why}"
        return "error", f"cannot execute {rel}: the kernel did not start ({e})"
    seen = _seen(fresh.cells.pop())
    fresh.cells.pop(0)
    saved = [c for c in nb.cells if c.cell_type == "code"]
    ran = [c for c in fresh.cells if c.cell_type == "code"]
    differ = []
    for i, (a, b) in enumerate(zip(saved, ran, strict=True), start=1):
        why = _differs(_summary(a), _summary(b), params.rel_tol)
        if why:
            differ.append(f"code cell {i}: {why}")
    measured.update(fresh_run="ok", differing_cells=len(differ), differences=differ[:5])
    if differ:
        return "failed", (f"{rel}: the saved outputs of {len(differ)} of {len(saved)} code cells "
                          f"differ from a fresh run (so they were not produced by running it), "
                          f"e.g. {differ[0]}")
    data_dir = (root / "data").resolve()
    here = (root / rel).parent
    touched = sorted({"<database>" if s == "<database>" else
                      Path(os.path.realpath(here / s)).relative_to(root.resolve()).as_posix()
                      for s in seen if s == "<database>" or
                      Path(os.path.realpath(here / s)).is_relative_to(data_dir)})
    measured["data_read"] = touched[:5]
    if params.reads_data and not touched and not _mentions_data(nb, root):
        return "failed", (f"{rel} never reads the project's data (no file under data/ opened, "
                          "no database connection) when run")
    return None


def _seen(cell: Any) -> list[str]:
    for o in cell.get("outputs", []):
        text = "".join(o.get("text", ""))
        if "\x00mlpipe-seen" in text:
            return list(json.loads(text.split("\x00mlpipe-seen", 1)[1]))
    return []


def _mentions_data(nb: Any, root: Path) -> bool:
    """A data file named in the source (readers that open files natively, e.g. Parquet)."""
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for m in re.finditer(r"data/[\w./ -]+\.(csv|parquet|pq|json)", source):
        if (root / m.group(0)).is_file():
            return True
    return False


def _summary(cell: Any) -> dict[str, Any]:
    stdout, texts, images, errors = [], [], 0, []
    for o in cell.get("outputs", []):
        kind = o.get("output_type")
        if kind == "stream" and o.get("name") == "stdout":
            stdout.append("".join(o.get("text", "")))
        elif kind in ("execute_result", "display_data"):
            data = o.get("data", {})
            if any(k.startswith("image/") for k in data):
                images += 1
            elif "text/plain" in data:
                texts.append("".join(data["text/plain"]))
        elif kind == "error":
            errors.append(o.get("ename", "error"))
    return {"stdout": "".join(stdout), "results": texts, "images": images > 0, "errors": errors}


def _differs(saved: dict[str, Any], fresh: dict[str, Any], rel_tol: float) -> str | None:
    if saved["images"] != fresh["images"]:
        return f"a plot {'saved but not drawn' if saved['images'] else 'drawn but not saved'}"
    if saved["errors"] != fresh["errors"]:
        return f"errors {saved['errors']} saved, {fresh['errors']} when run"
    for what in ("stdout", "results"):
        a, b = saved[what], fresh[what]
        a = a if isinstance(a, str) else "\n".join(a)
        b = b if isinstance(b, str) else "\n".join(b)
        why = _text_differs(a, b, rel_tol)
        if why:
            return f"{what}: {why}"
    return None


def _normal(text: str) -> tuple[list[str], list[float]]:
    text = _ANSI.sub("", text)
    text = _ADDR.sub("0x?", text)
    text = _DATE.sub("<time>", text)
    text = _DURATION.sub("<duration>", text)
    numbers = [float(m) for m in _NUMBER.findall(text)]
    skeleton = " ".join(_NUMBER.sub("#", text).split())
    return [skeleton], numbers


def _text_differs(a: str, b: str, rel_tol: float) -> str | None:
    (sa,), na = _normal(a)
    (sb,), nb = _normal(b)
    if sa != sb or len(na) != len(nb):
        return f"saved {_clip(a)!r}, the run printed {_clip(b)!r}"
    for x, y in zip(na, nb, strict=True):
        if not math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-9):
            return f"saved number {x:g}, the run gave {y:g}"
    return None


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."
