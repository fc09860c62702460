"""The `claude` runner: the Claude Code CLI, headless, as a subprocess.

`build_argv` is a pure function of the task; `parse_stream_line` is the one place a
stream-json line becomes a typed event. The stream's `result` line carries the cost, the
usage (cache tokens included), the number of turns, `subtype` and `is_error`; a stream
that ends without one is a failure. Success is still only what the gate says.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlpipe_flow import proc
from mlpipe_flow.errors import RunnerError
from mlpipe_flow.runners import AgentResult, AgentStatus, AgentTask
from mlpipe_flow.runners.command import data_env, write_task_files

if TYPE_CHECKING:
    from mlpipe_flow.config import Config
    from mlpipe_flow.display import Display

INSTALL_HINT = "claude not found: install with `npm install -g @anthropic-ai/claude-code` (or `make claude`)"
# what the claude process itself needs to reach the API; the scrubbed env drops the rest
CLAUDE_SECRETS = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN")


def build_argv(task: AgentTask, config: Config | None = None, executable: str = "claude") -> list[str]:
    """The claude argv for a task: a pure function, nothing is run."""
    argv = [
        executable,
        "-p",
        task.prompt,
        "--output-format",
        "stream-json",
        "--verbose",
        "--append-system-prompt",
        task.role_prompt,
        "--permission-mode",
        "acceptEdits",
        "--max-turns",
        str(task.max_turns),
    ]
    if task.allowed_tools:
        argv += ["--allowedTools", ",".join(task.allowed_tools)]
    deny = deny_rules(task)
    if deny:
        argv += ["--disallowedTools", ",".join(deny)]
    if task.budget_usd is not None:
        argv += ["--max-budget-usd", f"{task.budget_usd:.4f}"]
    model = task.model or (config.model if config is not None else None)
    if model:
        argv += ["--model", model]
    return argv


def deny_rules(task: AgentTask) -> list[str]:
    """Claude Code permission rules keeping its file tools off what the agent may not change
    (mlpipe.yaml, the workflow, mlpipe's records) and out of mlpipe's private folders. `//`
    starts an absolute path in a rule; Edit rules cover Write too. The engine still compares
    every attempt's before and after: a rule does not stop a shell command."""
    rules = []
    for tool, paths in (("Edit", [*task.protected, *task.private]), ("Read", task.private)):
        for p in paths:
            path = p.resolve(strict=False).as_posix()
            rules += [f"{tool}(/{path})", f"{tool}(/{path}/**)"]
    return list(dict.fromkeys(rules))


@dataclass
class StreamEvent:
    """One stream-json line: `kind` is its `type` (system, assistant, user, result, ...)."""

    kind: str
    subtype: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResultEvent(StreamEvent):
    is_error: bool = False
    total_cost_usd: float = 0.0
    num_turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    text: str = ""

    @property
    def success(self) -> bool:
        return self.subtype == "success" and not self.is_error


def parse_stream_line(line: str) -> StreamEvent | None:
    """A stream-json line as a typed event; None for a line that is not a JSON object."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    kind = str(data.get("type", ""))
    subtype = str(data.get("subtype", ""))
    if kind != "result":
        return StreamEvent(kind=kind, subtype=subtype, raw=data)
    usage = data.get("usage") or {}
    errors = data.get("errors")
    text = data.get("result")
    if not isinstance(text, str):
        text = "; ".join(map(str, errors)) if isinstance(errors, list) else ""
    return ResultEvent(
        kind=kind,
        subtype=subtype,
        raw=data,
        is_error=bool(data.get("is_error", False)),
        total_cost_usd=float(data.get("total_cost_usd") or 0.0),
        num_turns=int(data.get("num_turns") or 0),
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_creation_input_tokens=int(usage.get("cache_creation_input_tokens") or 0),
        cache_read_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
        text=text,
    )


def result_from_event(event: ResultEvent | None, res: proc.ProcResult) -> AgentResult:
    """The AgentResult for a finished claude process and its result line (if any)."""
    if event is None:
        why = res.describe() if not res.ok else "exited without a result line"
        last = next((ln for ln in reversed(res.output.splitlines()) if ln.strip()), "")
        return AgentResult(
            status="timeout" if res.timed_out or res.idle_killed else "error",
            message=f"claude: no result line ({why})" + (f": {last[:200]}" if last else ""),
            duration_s=res.duration_s,
        )
    status: AgentStatus
    if event.success and res.ok:
        status = "ok"
    elif "budget" in event.subtype:
        status = "budget"
    else:
        status = "error"
    message = f"claude: {event.subtype or 'result'}" + (" (is_error)" if event.is_error else "")
    if status != "ok" and event.text:
        message += f": {event.text[:200]}"
    return AgentResult(
        status=status,
        message=message,
        tokens_in=event.input_tokens + event.cache_creation_input_tokens + event.cache_read_input_tokens,
        tokens_out=event.output_tokens,
        cache_read_tokens=event.cache_read_input_tokens,
        cache_write_tokens=event.cache_creation_input_tokens,
        cost_usd=event.total_cost_usd,
        turns=event.num_turns,
        duration_s=res.duration_s,
    )


class ClaudeRunner:
    name = "claude"

    def __init__(self, config: Config) -> None:
        self.config = config
        if shutil.which("claude") is None:  # said before a run creates anything
            raise RunnerError(INSTALL_HINT)

    def run(self, task: AgentTask, display: Display) -> AgentResult:
        exe = shutil.which("claude")
        if exe is None:
            raise RunnerError(INSTALL_HINT)
        write_task_files(task)
        argv = build_argv(task, self.config, executable=exe)
        keep = [*CLAUDE_SECRETS, *self.config.pass_env]
        env = proc.scrubbed_env(
            keep=keep,
            extra={
                "MLPIPE_PHASE": task.phase,
                "MLPIPE_WORKSPACE": str(task.workspace),
                **data_env(task.workspace),
            },
        )
        env = {k: v for k, v in env.items() if k not in CLAUDE_SECRETS or os.environ.get(k)}
        found: list[ResultEvent] = []

        def on_line(line: str) -> None:
            event = parse_stream_line(line)
            if isinstance(event, ResultEvent):
                found.append(event)
            elif event is not None and event.kind == "assistant":
                for block in (event.raw.get("message") or {}).get("content") or []:
                    if isinstance(block, dict) and block.get("type") == "tool_use":
                        display.emit("agent_tool", phase=task.phase, tool=block.get("name"))

        res = proc.run(
            argv,
            cwd=task.workspace,
            env=env,
            timeout_s=task.timeout_s,
            idle_timeout_s=task.idle_timeout_s,
            transcript=task.transcript,
            on_line=on_line,
        )
        return result_from_event(found[-1] if found else None, res)
