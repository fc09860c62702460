"""Typed definitions: phases and gates as read from YAML, check results and gate reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ID_PATTERN = r"^[a-z][a-z0-9_-]*$"
Status = Literal["passed", "failed", "error", "skipped"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExpectedOutput(Strict):
    path: str = Field(description="workspace-relative path; a trailing '/' marks a folder")
    description: str

    @property
    def is_dir(self) -> bool:
        return self.path.endswith("/")


class MemoryExcerpt(Strict):
    """An artifact excerpt stored as a pattern once the phase passes (the seed's 'store ... patterns')."""

    title: str
    paths: list[str] = Field(min_length=1, description="glob patterns, workspace-relative")
    lines: int = Field(default=50, ge=1, le=500)


class Phase(Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str
    objective: str
    description: str
    progress_start: int = Field(ge=0, le=100)
    progress_end: int = Field(ge=0, le=100)
    agent: str = Field(description="an agent role: prompts/roles/<agent>.md")
    prompt: str = Field(description="template file in prompts/")
    expected_outputs: list[ExpectedOutput] = Field(min_length=1)
    gate: str = Field(pattern=ID_PATTERN)
    token_estimate: int = Field(ge=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    timeout_s: float = Field(default=1800, gt=0)
    idle_timeout_s: float = Field(default=600, gt=0)
    budget_usd: float | None = Field(default=None, gt=0)
    max_turns: int = Field(default=60, ge=1)
    allowed_tools: list[str] = Field(default_factory=lambda: ["Read", "Write", "Edit"])
    requires: list[str] | None = Field(
        default=None, description="phases that must pass first; default: the previous phase"
    )
    memory: list[MemoryExcerpt] = Field(default_factory=list)

    @model_validator(mode="after")
    def _progress_order(self) -> Phase:
        if self.progress_end <= self.progress_start:
            raise ValueError(
                f"progress_end ({self.progress_end}) must be greater than "
                f"progress_start ({self.progress_start})"
            )
        return self


class CheckSpec(Strict):
    id: str = Field(pattern=ID_PATTERN)
    kind: str
    name: str = Field(description="what is checked, in plain words (shown to the agent too)")
    message: str = Field(description="one line shown when the check fails (the seed's wording)")
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(default=120, gt=0)


class Gate(Strict):
    name: str
    description: str = ""
    success: str = Field(default="", description="the line printed when every check passes")
    checks: list[CheckSpec] = Field(min_length=1)


class CheckResult(Strict):
    id: str
    name: str = ""
    status: Status
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    duration_s: float = 0.0


class GateReport(Strict):
    phase: str
    gate: str
    passed: bool
    checks: list[CheckResult]
    duration_s: float = 0.0

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status in ("failed", "error")]

    def signature(self) -> list[tuple[str, str, str]]:
        """What failed and with which evidence: two equal signatures mean no progress. Timings
        ("1 failed in 0.05s", duration fields) are left out: they differ on every attempt."""
        import json
        import re

        def steady(evidence: dict[str, Any]) -> str:
            kept = {k: v for k, v in evidence.items()
                    if not re.search(r"(^|_)(duration|seconds|elapsed|s|ms)$", k)}
            text = json.dumps(kept, sort_keys=True, default=str)
            return re.sub(r"\d+(?:\.\d+)?\s*(?:ms|s|sec|seconds)\b", "#s", text)

        return [(c.id, c.status, steady(c.evidence)) for c in self.failures]


def describe_validation_error(
    source: Path | str, err: ValidationError, model: type[BaseModel], loc_prefix: str = ""
) -> str:
    """One line naming the file, the field, and what is allowed."""
    errors = err.errors()
    # an unknown field usually explains a "missing" one (a typo): name it first
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = loc_prefix + (".".join(str(p) for p in first["loc"]) or "(top level)")
    kind = first["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, first["loc"])
        hint = f"unknown field '{loc}'" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    elif kind == "missing":
        hint = f"missing field '{loc}'"
    else:
        got = first.get("input")
        shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
        hint = f"field '{loc}': {first['msg']} (got {shown})"
    more = len(err.errors()) - 1
    return f"{source}: {hint}" + (f" [+{more} more]" if more else "")


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        nxt = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            return []
        current = nxt
    return list(getattr(current, "model_fields", {}))
