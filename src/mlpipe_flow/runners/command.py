"""The `command` runner: any agent CLI (codex, gemini, aider, a script) from a template.

The template is split like a shell would split it, but no shell runs it; each word may
use the placeholders {prompt}, {prompt_file}, {task_file}, {role_file}, {workspace},
{phase}, {attempt} and {model}. With `prompt_via: stdin` the prompt is written to the
agent's stdin, which is then closed; otherwise stdin is closed from the start.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from mlpipe_flow import proc
from mlpipe_flow.errors import ConfigError
from mlpipe_flow.runners import AgentResult, AgentTask

if TYPE_CHECKING:
    from mlpipe_flow.config import Config
    from mlpipe_flow.display import Display

PLACEHOLDERS = {"prompt", "prompt_file", "task_file", "role_file", "workspace", "phase", "attempt", "model"}


def write_task_files(task: AgentTask) -> dict[str, Path]:
    """The prompt, the role and the task (as JSON) in the attempt's folder, for any agent."""
    task.run_dir.mkdir(parents=True, exist_ok=True)
    task.prompt_file.write_text(task.prompt, encoding="utf-8")
    role_file = task.run_dir / "role.md"
    role_file.write_text(task.role_prompt, encoding="utf-8")
    task_file = task.run_dir / "task.json"
    task_file.write_text(json.dumps({
        "phase": task.phase, "attempt": task.attempt, "repair": task.repair,
        "workspace": str(task.workspace), "prompt_file": str(task.prompt_file),
        "role": task.role, "role_file": str(role_file), "model": task.model,
        "context": task.context,
    }, indent=2, default=str), encoding="utf-8")
    return {"prompt_file": task.prompt_file, "role_file": role_file, "task_file": task_file}


def data_env(workspace: Path) -> dict[str, str]:
    """A database URL reaches the agent's code only as MLPIPE_DATA_URL, never in a prompt."""
    from mlpipe_flow.data import data_url

    url = data_url(workspace)
    return {"MLPIPE_DATA_URL": url} if url else {}


def build_argv(template: str, task: AgentTask, files: dict[str, Path]) -> list[str]:
    """The agent's argv: a pure function of the template and the task."""
    try:
        words = shlex.split(template)
    except ValueError as e:
        raise ConfigError(f"command template {template!r}: {e}") from None
    if not words:
        raise ConfigError("command template is empty; set `command:` in mlpipe.yaml or MLPIPE_COMMAND")
    values = {
        "prompt": task.prompt, "workspace": str(task.workspace), "phase": task.phase,
        "attempt": str(task.attempt), "model": task.model or "",
        **{k: str(v) for k, v in files.items()},
    }
    argv = []
    for word in words:
        try:
            argv.append(word.format(**values))
        except KeyError as e:
            raise ConfigError(f"command template {template!r}: unknown placeholder {{{e.args[0]}}} "
                              f"(known: {', '.join(sorted(PLACEHOLDERS))})") from None
        except (ValueError, IndexError) as e:
            raise ConfigError(f"command template {template!r}: {e}") from None
    return argv


class CommandRunner:
    name = "command"

    def __init__(self, config: Config) -> None:
        if not config.command:
            raise ConfigError("the command runner needs a command template: set `command:` in "
                              "mlpipe.yaml or MLPIPE_COMMAND, e.g. 'my-agent --prompt-file {prompt_file}'")
        self.template: str = config.command
        self.prompt_via: str = config.prompt_via
        self.pass_env: list[str] = list(config.pass_env)

    def run(self, task: AgentTask, display: Display) -> AgentResult:
        files = write_task_files(task)
        argv = build_argv(self.template, task, files)
        env = proc.scrubbed_env(keep=self.pass_env, extra={
            "MLPIPE_PHASE": task.phase, "MLPIPE_ATTEMPT": str(task.attempt),
            "MLPIPE_TASK_FILE": str(files["task_file"]), "MLPIPE_WORKSPACE": str(task.workspace),
            **data_env(task.workspace),
        })
        res = proc.run(argv, cwd=task.workspace, env=env, timeout_s=task.timeout_s,
                       idle_timeout_s=task.idle_timeout_s, transcript=task.transcript,
                       stdin_text=task.prompt if self.prompt_via == "stdin" else None)
        if res.ok:
            return AgentResult(status="ok", duration_s=res.duration_s)
        last = next((ln for ln in reversed(res.output.splitlines()) if ln.strip()), "")
        return AgentResult(status="timeout" if res.timed_out or res.idle_killed else "error",
                           message=f"{argv[0]}: {res.describe()}" + (f": {last[:200]}" if last else ""),
                           duration_s=res.duration_s)
