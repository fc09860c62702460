"""Configuration: defaults < WORKSPACE/mlpipe.yaml < MLPIPE_* environment < command-line flags.

Every resolved value remembers where it came from; `mlpipe status` shows it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlpipe_flow.errors import ConfigError
from mlpipe_flow.models import describe_validation_error

CONFIG_FILE = "mlpipe.yaml"


class Settings(BaseModel):
    """What mlpipe.yaml may hold; every field optional there."""

    model_config = ConfigDict(extra="forbid")

    runner: str = Field(default="builtin", description="builtin, command, claude or anthropic")
    command: str | None = Field(default=None, description="command runner: the agent CLI template")
    prompt_via: Literal["file", "stdin"] = "file"
    model: str | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    timeout_s: float | None = Field(default=None, gt=0)
    idle_timeout_s: float | None = Field(default=None, gt=0)
    budget_usd: float | None = Field(default=None, gt=0)
    python: str = Field(default=sys.executable, description="interpreter for gates and workspace tests")
    pass_env: list[str] = Field(default_factory=list, description="secret-like variables to pass on")
    memory: bool = True
    report: bool = Field(default=True, description="mlpipe run writes .mlpipe/report.html at its end")
    workflow: str | None = Field(default=None, description="workflow folder (relative: to the workspace)")
    gate_jobs: int = Field(default=0, ge=0, le=32,
                           description="checks of a gate run at once (0: one per CPU core, at most 4)")


ENV_PREFIX = "MLPIPE_"
ENV_FIELDS = {
    "runner", "command", "prompt_via", "model", "max_attempts", "timeout_s",
    "idle_timeout_s", "budget_usd", "python", "memory", "report", "workflow", "gate_jobs",
}


@dataclass
class Config:
    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.settings, name)

    def workflow_dir(self, workspace: Path, flag: Path | None = None) -> Path | None:
        """--workflow, else `workflow:` from the config (relative to the workspace), else None."""
        if flag is not None:
            return flag
        if self.settings.workflow:
            return (workspace / self.settings.workflow).resolve()
        return None

    def describe(self) -> dict[str, dict[str, Any]]:
        return {k: {"value": getattr(self.settings, k), "source": self.sources.get(k, "default")}
                for k in Settings.model_fields}


def _validate(data: dict[str, Any], source: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(source, e, Settings)) from None


def load_config(workspace: Path, flags: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None) -> Config:
    from mlpipe_flow.workflow import read_yaml

    environ = dict(os.environ if environ is None else environ)
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = workspace / CONFIG_FILE
    if path.is_file():
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        _validate(data, str(path))
        merged.update(data)
        sources.update({k: str(path) for k in data})
    env_values = {}
    for name in ENV_FIELDS:
        value = environ.get(ENV_PREFIX + name.upper())
        if value is not None and value != "":
            env_values[name] = value
    if env_values:
        for name, value in env_values.items():
            try:
                Settings.model_validate({**merged, name: value})
            except ValidationError as e:
                raise ConfigError(describe_validation_error(
                    f"environment variable {ENV_PREFIX}{name.upper()}", e, Settings)) from None
        merged.update(env_values)
        sources.update({k: f"env {ENV_PREFIX}{k.upper()}" for k in env_values})
    for name, value in (flags or {}).items():
        if value is not None:
            merged[name] = value
            sources[name] = "flag"
    return Config(settings=_validate(merged, "command line"), sources=sources)
