"""`python -m mlpipe_flow.builtin TASK_FILE`: run one phase of the built-in agent."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

from mlpipe_flow.builtin import BuiltinTask, BuiltinUserError

USER_ERROR_PREFIX = "mlpipe-builtin: error:"


def load_task(path: Path) -> BuiltinTask:
    raw = json.loads(path.read_text(encoding="utf-8"))
    ctx = raw.get("context") or {}
    return BuiltinTask(phase=raw["phase"], attempt=int(raw.get("attempt", 1)),
                       workspace=Path(raw["workspace"]), repair=bool(raw.get("repair")),
                       problem=ctx.get("problem", ""), target=ctx.get("target"),
                       data=ctx.get("data"), run_id=ctx.get("run_id"), raw=raw)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mlpipe_flow.builtin TASK_FILE", file=sys.stderr)
        return 2
    task = load_task(Path(argv[0]))
    try:
        module = importlib.import_module(f"mlpipe_flow.builtin.{task.phase}")
    except ModuleNotFoundError:
        print(f"{USER_ERROR_PREFIX} the built-in agent has no implementation of {task.phase}",
              flush=True)
        return 2
    os.chdir(task.workspace)
    try:
        if task.phase == "phase4" and task.repair:
            from mlpipe_flow.builtin import phase3

            if phase3.failed_checks(task) & phase3.LOAD_CHECKS:
                phase3.serve_cheaper(task)  # a repair must change what failed, not repeat it
        module.run(task)
    except BuiltinUserError as e:
        print(f"{USER_ERROR_PREFIX} {e}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
