"""What every check function receives, and a small helper to build its result."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipe_flow.models import CheckResult, Status

if TYPE_CHECKING:
    from mlpipe_flow.records import RunRecords


@dataclass
class CheckContext:
    workspace: Path
    phase: str
    timeout_s: float
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # the run whose records (MLPIPE_HOME/records/<run_id>) apply
    scratch: Path | None = None  # a private folder of this check, deleted after it

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

    def records(self) -> RunRecords | None:
        """mlpipe's own records of the run (None when the workspace has no recorded run)."""
        from mlpipe_flow.records import RunRecords

        return RunRecords(self.run_id) if self.run_id else None

    def to_payload(self) -> dict[str, Any]:
        d = asdict(self)
        d["workspace"] = str(self.workspace)
        d["scratch"] = str(self.scratch) if self.scratch else None
        return d

    @classmethod
    def from_payload(cls, d: dict[str, Any]) -> CheckContext:
        return cls(**{**d, "workspace": Path(d["workspace"]),
                      "scratch": Path(d["scratch"]) if d.get("scratch") else None})


def pct(fraction: float) -> str:
    """A fraction as the percentage a rule states: 0.12 -> "12%", 0.001 -> "0.1%" (never rounded
    to a number the check does not use)."""
    return f"{fraction * 100:.6g}%"


def result(status: Status, message: str, **evidence: Any) -> CheckResult:
    return CheckResult(id="", status=status, message=message, evidence=evidence)
