"""Check kinds: a plain registry dict from kind name to its params model and function.

A check function takes a `CheckContext` and its validated params and returns a
`CheckResult` (passed / failed / error / skipped, a one-line message, evidence).
Heavy libraries are imported inside the functions that need them, never here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mlpipe_flow.checks import files, tests
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.errors import ConfigError
from mlpipe_flow.models import CheckResult, CheckSpec, describe_validation_error


@dataclass(frozen=True)
class CheckKind:
    params: type[BaseModel]
    run: Callable[[CheckContext, Any], CheckResult]
    doc: str


CHECKS: dict[str, CheckKind] = {
    "exists": CheckKind(files.ExistsParams, files.exists, "files or folders exist"),
    "pattern": CheckKind(files.PatternParams, files.pattern, "a regex occurs in files"),
    "pytest": CheckKind(tests.PytestParams, tests.pytest, "a workspace test file passes"),
}


def validate_params(path: Path, index: int, check: CheckSpec) -> BaseModel:
    kind = CHECKS.get(check.kind)
    if kind is None:
        raise ConfigError(
            f"{path}: checks.{index}.kind: unknown check kind '{check.kind}' "
            f"(known: {', '.join(sorted(CHECKS))})"
        )
    try:
        return kind.params.model_validate(check.params)
    except ValidationError as e:
        raise ConfigError(
            describe_validation_error(path, e, kind.params, loc_prefix=f"checks.{index}.params.")
        ) from None

__all__ = ["CHECKS", "CheckContext", "CheckKind", "result", "validate_params"]
