"""What an agent may not touch during an attempt: mlpipe's configuration (`mlpipe.yaml`), the
workflow (phases, prompts, gates) and mlpipe's own records. The engine takes a `Guard` before
each attempt and compares after it; a change fails the attempt (with a one-line reason naming
the files) and is undone where the old content was kept.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from mlpipe_flow.models import CheckResult, GateReport
from mlpipe_flow.state import atomic_write

KEEP_BYTES = 1 << 20  # files up to this size are kept whole, so a change can be undone


@dataclass
class _Seen:
    digest: str
    content: bytes | None


@dataclass
class Guard:
    roots: list[Path]
    seen: dict[Path, _Seen] = field(default_factory=dict)

    @classmethod
    def take(cls, roots: list[Path]) -> Guard:
        guard = cls([r for r in roots])
        guard.seen = guard._scan()
        return guard

    def _files(self) -> list[Path]:
        out: list[Path] = []
        for root in self.roots:
            if root.is_file():
                out.append(root)
            elif root.is_dir():
                for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                    dirnames[:] = [d for d in dirnames if d != "__pycache__"]
                    out += [Path(dirpath) / f for f in filenames if not f.endswith(".pyc")]
        return sorted(set(out))

    def _scan(self) -> dict[Path, _Seen]:
        seen = {}
        for f in self._files():
            try:
                data = f.read_bytes()
            except OSError:
                continue
            seen[f] = _Seen(hashlib.sha256(data).hexdigest(),
                            data if len(data) <= KEEP_BYTES else None)
        return seen

    def changed(self) -> list[Path]:
        """Files changed, added or removed since the guard was taken."""
        now = {p: s.digest for p, s in self._scan().items()}
        before = {p: s.digest for p, s in self.seen.items()}
        return sorted(p for p in set(now) | set(before) if now.get(p) != before.get(p))

    def restore(self, paths: list[Path]) -> list[Path]:
        """Put back what was changed; returns the files that could not be restored."""
        lost = []
        for p in paths:
            old = self.seen.get(p)
            try:
                if old is None:
                    p.unlink(missing_ok=True)
                elif old.content is not None:
                    p.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_bytes(p, old.content)
                else:
                    lost.append(p)
            except OSError:
                lost.append(p)
        return lost


def atomic_write_bytes(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, data.decode("utf-8"))
    except UnicodeDecodeError:
        tmp = path.with_name(f".{path.name}.restore")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def tamper_report(phase_id: str, gate: str, changed: list[str], lost: list[str]) -> GateReport:
    """A failed gate report for an attempt that changed what it may not touch."""
    message = (f"the agent changed mlpipe's own files during the attempt: {', '.join(changed[:5])}"
               + (f" (+{len(changed) - 5} more)" if len(changed) > 5 else "")
               + ("; restored" if not lost else f"; could not restore {', '.join(lost[:3])}")
               + ". Agents may not edit mlpipe.yaml, the workflow or mlpipe's records")
    check = CheckResult(id="integrity", name="the attempt left mlpipe's configuration, workflow "
                        "and records untouched", status="failed", message=message,
                        evidence={"changed": changed, "not_restored": lost})
    return GateReport(phase=phase_id, gate=gate, passed=False, checks=[check], duration_s=0.0)
