"""Security checks: bandit over the generated code, and no secret-like strings in the workspace."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.models import CheckResult

SKIP_DIRS = {".git", ".mlpipe", ".venv", "venv", "node_modules", "__pycache__", "mlruns",
             ".pytest_cache", "data", "registry", "artifacts"}


class BanditParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(default_factory=lambda: ["deployment", "monitoring",
                                                      "continuous_training"])
    max_high: int = Field(default=0, ge=0)


def bandit(ctx: CheckContext, params: BanditParams) -> CheckResult:
    targets = [p for p in params.paths if (ctx.workspace / p).exists()]
    if not targets:
        return result("failed", f"none of {', '.join(params.paths)} exists to scan")
    argv = [ctx.python, "-m", "bandit", "-q", "-r", *targets, "-f", "json",
            "-x", ",".join(f"./{d}" for d in sorted(SKIP_DIRS))]
    res = proc.run(argv, cwd=ctx.workspace, env=proc.scrubbed_env(), timeout_s=ctx.timeout_s)
    out = res.output
    try:
        report = json.loads(out[out.index("{"):])
    except ValueError:
        return result("error", f"bandit did not produce a JSON report ({res.describe()})",
                      output_tail=out.splitlines()[-8:])
    issues = report.get("results") or []
    high = [i for i in issues if i.get("issue_severity") == "HIGH"]
    medium = [i for i in issues if i.get("issue_severity") == "MEDIUM"]
    findings = [f"{i.get('filename')}:{i.get('line_number')} {i.get('test_id')} "
                f"{i.get('issue_text')}" for i in high[:10]]
    ev: dict[str, Any] = {"scanned": targets, "high": len(high), "medium": len(medium), "low":
          len(issues) - len(high) - len(medium),
          "high_findings": findings}
    if len(high) > params.max_high:
        return result("failed", f"bandit: {len(high)} high-severity finding(s): "
                      f"{'; '.join(findings[:3])}", **ev)
    return result("passed", f"bandit: no high-severity finding ({len(medium)} medium, "
                  f"{ev['low']} low) in {', '.join(targets)}", **ev)


SECRET_PATTERNS = {
    "AWS access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "Anthropic API key": re.compile(r"sk-ant-[A-Za-z0-9_\-]{20,}"),
    "OpenAI-style API key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9]{20,}"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    "private key block": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----"),
    "hard-coded password/secret": re.compile(
        r"(?i)\b(password|passwd|secret|api_key|apikey|token)\s*[:=]\s*['\"][^'\"\s${}<>]{6,}['\"]"),
}
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".json", ".md", ".txt", ".cfg", ".ini", ".toml", ".env",
                 ".sh", ".j2", ".ipynb", "", ".conf", ".properties", ".tf"}


class SecretsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_file_bytes: int = Field(default=2_000_000, gt=0)


def _files(root: Path, limit: int) -> list[Path]:
    out = []
    for p in root.rglob("*"):
        rel_parts = p.relative_to(root).parts
        if any(part in SKIP_DIRS for part in rel_parts[:-1]):
            continue
        if p.is_file() and (p.suffix.lower() in TEXT_SUFFIXES or p.name == "Dockerfile") \
                and p.stat().st_size <= limit:
            out.append(p)
    return out


def secrets(ctx: CheckContext, params: SecretsParams) -> CheckResult:
    hits: list[str] = []
    files = _files(ctx.workspace, params.max_file_bytes)
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        rel = f.relative_to(ctx.workspace).as_posix()
        for what, rx in SECRET_PATTERNS.items():
            for m in rx.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                hits.append(f"{rel}:{line}: {what}")
    if hits:
        return result("failed", f"{len(hits)} secret-like string(s): {'; '.join(hits[:5])}",
                      findings=hits[:30], files_scanned=len(files))
    return result("passed", f"no secret-like strings in {len(files)} file(s)",
                  files_scanned=len(files))
