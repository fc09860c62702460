"""The `builtin` runner: mlpipe's offline reference agent, run as a subprocess
(`python -m mlpipe_flow.builtin TASK_FILE`). It reads the task's context (problem, target,
data), not the prompt: it writes and runs a reference implementation of the phase's contract."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from mlpipe_flow import proc
from mlpipe_flow.errors import DataError
from mlpipe_flow.runners import AgentResult, AgentTask
from mlpipe_flow.runners.command import data_env, write_task_files

if TYPE_CHECKING:
    from mlpipe_flow.config import Config
    from mlpipe_flow.display import Display


USER_ERROR_PREFIX = "mlpipe-builtin: error:"


class BuiltinRunner:
    name = "builtin"

    def __init__(self, config: Config) -> None:
        self.python: str = config.python or sys.executable

    def run(self, task: AgentTask, display: Display) -> AgentResult:
        files = write_task_files(task)
        argv = [self.python, "-m", "mlpipe_flow.builtin", str(files["task_file"])]
        env = proc.scrubbed_env(extra={"PYTHONDONTWRITEBYTECODE": "1", **data_env(task.workspace)})
        res = proc.run(argv, cwd=task.workspace, env=env, timeout_s=task.timeout_s,
                       idle_timeout_s=task.idle_timeout_s, transcript=task.transcript)
        if res.ok:
            return AgentResult(status="ok", duration_s=res.duration_s)
        last = next((ln for ln in reversed(res.output.splitlines()) if ln.strip()), "")
        if res.returncode == 2 and last.startswith(USER_ERROR_PREFIX):
            # the data cannot be used as asked (no such target, an empty file, ...): a usage
            # error for the person at the keyboard, not something a repair attempt can fix
            raise DataError(last[len(USER_ERROR_PREFIX):].strip())
        return AgentResult(status="timeout" if res.timed_out or res.idle_killed else "error",
                           message=f"builtin agent: {res.describe()}: {last[:300]}",
                           duration_s=res.duration_s)
