"""What every check function receives, and a small helper to build its result."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpipe_flow.models import CheckResult, Status


@dataclass
class CheckContext:
    workspace: Path
    phase: str
    timeout_s: float
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        return self.workspace / rel

    def spec(self) -> dict[str, Any] | None:
        """ml-spec.yaml as a mapping, or None when it is missing or unreadable."""
        import yaml

        p = self.workspace / "ml-spec.yaml"
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        return data if isinstance(data, dict) else None


def result(status: Status, message: str, **evidence: Any) -> CheckResult:
    return CheckResult(id="", status=status, message=message, evidence=evidence)
