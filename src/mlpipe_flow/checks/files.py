"""Checks on the workspace's files: existence, and a pattern occurring in them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.models import CheckResult


class ExistsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(min_length=1, description="a trailing '/' means a folder")
    any_of: bool = Field(default=False, description="one of the paths is enough")
    non_empty: bool = Field(default=True, description="files must have content, folders a file")

    def describe(self) -> str:
        def one(rel: str) -> str:
            if not self.non_empty:
                return f"`{rel}`"
            if rel.endswith("/"):
                return f"`{rel}` (a folder holding at least one file)"
            if any(ch in rel for ch in "*?["):
                return f"`{rel}` (at least one matching file)"
            return f"`{rel}` (not empty)"

        listed = [one(p) for p in self.paths]
        if len(listed) == 1:
            return f"{listed[0]} exists in the workspace."
        joined = "; ".join(listed)
        return (f"one of these exists: {joined}." if self.any_of
                else f"each of these exists: {joined}.")


def _present(ws: Path, rel: str, non_empty: bool) -> bool:
    p = ws / rel.rstrip("/")
    if rel.endswith("/"):
        if not p.is_dir():
            return False
        return not non_empty or any(f.is_file() for f in p.rglob("*"))
    if any(ch in rel for ch in "*?["):
        return any(f.is_file() for f in ws.glob(rel))
    return p.is_file() and (not non_empty or p.stat().st_size > 0)


def exists(ctx: CheckContext, params: ExistsParams) -> CheckResult:
    missing = [rel for rel in params.paths if not _present(ctx.workspace, rel, params.non_empty)]
    found = [rel for rel in params.paths if rel not in missing]
    ok = bool(found) if params.any_of else not missing
    if ok:
        return result("passed", f"found {', '.join(found)}", found=found)
    what = "none of" if params.any_of else "missing"
    return result("failed", f"{what}: {', '.join(missing)}", missing=missing, found=found)


class PatternParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files: list[str] = Field(min_length=1, description="glob patterns, workspace-relative")
    regex: str
    ignore_case: bool = True
    require: Literal["any", "all"] = "any"

    def describe(self) -> str:
        where = ", ".join(f"`{f}`" for f in self.files)
        which = "at least one of the files" if self.require == "any" else "every file"
        case = ", ignoring case" if self.ignore_case else ""
        return (f"{which} matching {where} contains the regular expression `{self.regex}`{case}.")


def pattern(ctx: CheckContext, params: PatternParams) -> CheckResult:
    flags = re.IGNORECASE if params.ignore_case else 0
    rx = re.compile(params.regex, flags)
    searched: list[str] = []
    matched: dict[str, list[str]] = {}
    for glob in params.files:
        for f in sorted(ctx.workspace.glob(glob)):
            if not f.is_file():
                continue
            rel = f.relative_to(ctx.workspace).as_posix()
            searched.append(rel)
            text = f.read_text(encoding="utf-8", errors="replace")
            hits = sorted({m.group(0).lower() for m in rx.finditer(text)})
            if hits:
                matched[rel] = hits[:10]
    if not searched:
        return result("failed", f"no file matches {', '.join(params.files)}", searched=[])
    unmatched = [f for f in searched if f not in matched]
    ok = bool(matched) if params.require == "any" else not unmatched
    if ok:
        return result("passed", f"/{params.regex}/ found in {len(matched)} file(s)",
                      matched=matched, searched=len(searched))
    return result("failed", f"/{params.regex}/ not found in {', '.join(unmatched[:5])}",
                  searched=searched[:20], matched=matched)
