"""Runners: what an agent runs in. A registry of names to import paths, loaded on first use
so that `mlpipe --help` never pays for a runner's dependencies.

A runner takes an `AgentTask` (rendered prompt, role, workspace, limits) and returns an
`AgentResult` (status, tokens, cost, transcript). Its claim of success is only a claim:
the engine asks the gate.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mlpipe_flow.errors import UsageError

if TYPE_CHECKING:
    from mlpipe_flow.config import Config
    from mlpipe_flow.display import Display

RUNNERS: dict[str, str] = {
    "builtin": "mlpipe_flow.runners.builtin:BuiltinRunner",
    "command": "mlpipe_flow.runners.command:CommandRunner",
    "claude": "mlpipe_flow.runners.claude:ClaudeRunner",
    "anthropic": "mlpipe_flow.runners.anthropic_loop:AnthropicRunner",
}

AgentStatus = Literal["ok", "error", "timeout", "budget", "interrupted"]


@dataclass
class AgentTask:
    phase: str
    attempt: int
    prompt: str
    role: str
    role_prompt: str
    workspace: Path
    run_dir: Path
    timeout_s: float
    idle_timeout_s: float
    max_turns: int
    allowed_tools: list[str]
    budget_usd: float | None = None
    model: str | None = None
    repair: bool = False
    context: dict[str, Any] = field(default_factory=dict)
    #: files and folders the agent may not change (mlpipe.yaml, the workflow, mlpipe's
    #: records); runners that can enforce it do, and the engine checks after every attempt
    protected: list[Path] = field(default_factory=list)
    #: folders the agent may not read either (mlpipe's records, .mlpipe/)
    private: list[Path] = field(default_factory=list)

    @property
    def prompt_file(self) -> Path:
        return self.run_dir / "prompt.md"

    @property
    def transcript(self) -> Path:
        return self.run_dir / "transcript.log"


@dataclass
class AgentResult:
    status: AgentStatus
    message: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    turns: int = 0
    duration_s: float = 0.0


class Runner(Protocol):
    name: str

    def run(self, task: AgentTask, display: Display) -> AgentResult: ...


def make_runner(name: str, config: Config) -> Runner:
    target = RUNNERS.get(name)
    if target is None:
        raise UsageError(f"unknown runner '{name}' (known: {', '.join(sorted(RUNNERS))})")
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    runner: Runner = cls(config)
    return runner
