"""The anthropic runner's tools, confined to the workspace.

Every path is resolved with its symlinks and must stay inside the workspace (and outside
mlpipe's own `.mlpipe/`); `~`, absolute paths elsewhere, `../` and symlinks that lead out
are refused. Commands run without a shell, from an allow list of executables, with a time
limit, cwd the workspace and secrets removed from their environment; their path-like
arguments obey the same rule. A refusal is a `ToolError`, which the loop hands back to the
model as a tool_result with is_error=true.

Not an OS sandbox: a program the agent writes and runs with `python` runs as your user.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from mlpipe_flow import proc

ALLOWED_COMMANDS = frozenset(
    {
        "python",
        "python3",
        "pytest",
        "ls",
        "cat",
        "head",
        "tail",
        "wc",
        "grep",
        "diff",
        "sort",
        "uniq",
        "echo",
        "true",
    }
)
MAX_READ = 100_000
MAX_LIST = 500

TOOLS: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "description": "Read a UTF-8 text file in the workspace.",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    },
    {
        "name": "write_file",
        "description": "Create or overwrite a file in the workspace (parents created).",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "name": "edit_file",
        "description": "Replace one exact, unique occurrence of old_text with new_text.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "old_text": {"type": "string"},
                "new_text": {"type": "string"},
            },
            "required": ["path", "old_text", "new_text"],
        },
    },
    {
        "name": "list_files",
        "description": "List files under a folder of the workspace (recursive).",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
    {
        "name": "run_command",
        "description": "Run a command (no shell) in the workspace. Allowed executables: "
        + ", ".join(sorted(ALLOWED_COMMANDS))
        + ".",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
]


class ToolError(Exception):
    """A refused or failed tool call; its message goes back to the model."""


class Sandbox:
    def __init__(self, workspace: Path, command_timeout_s: float = 300.0, python: str | None = None,
                 protected: list[Path] | None = None) -> None:
        self.root = workspace.resolve()
        self.command_timeout_s = command_timeout_s
        self.python = python
        self.protected = [p.resolve(strict=False) for p in protected or []]

    def path(self, raw: Any, write: bool = False) -> Path:
        """The resolved path inside the workspace, or ToolError."""
        if not isinstance(raw, str) or not raw.strip():
            raise ToolError("a path is required")
        if raw.startswith("~"):
            raise ToolError(f"refused: {raw!r} is outside the workspace (no ~)")
        candidate = Path(raw) if os.path.isabs(raw) else self.root / raw
        resolved = candidate.resolve(strict=False)
        if not resolved.is_relative_to(self.root):
            raise ToolError(f"refused: {raw!r} resolves to {resolved}, outside the workspace {self.root}")
        if resolved.is_relative_to(self.root / ".mlpipe"):  # records, gate logs, the data URL
            raise ToolError(f"refused: {raw!r} is mlpipe's own record folder (.mlpipe/)")
        if write and resolved == self.root / "mlpipe.yaml":  # it picks the gates that judge
            raise ToolError(f"refused: {raw!r} is mlpipe's configuration; the agent may not change it")
        if write and any(resolved == p or resolved.is_relative_to(p) for p in self.protected):
            raise ToolError(f"refused: {raw!r} is part of mlpipe's workflow or records; the agent "
                            "may not change it")
        return resolved

    def call(self, name: str, args: dict[str, Any]) -> str:
        fn = getattr(self, f"tool_{name}", None)
        if fn is None:
            raise ToolError(f"unknown tool {name!r}")
        if not isinstance(args, dict):
            raise ToolError("tool input must be an object")
        try:
            result: str = fn(**args)
        except TypeError as e:
            raise ToolError(f"bad arguments for {name}: {e}") from None
        except OSError as e:
            raise ToolError(f"{name}: {e.strerror or e}") from None
        return result

    def tool_read_file(self, path: str) -> str:
        p = self.path(path)
        if not p.is_file():
            raise ToolError(f"{path}: no such file")
        data = p.read_text(encoding="utf-8", errors="replace")
        return data if len(data) <= MAX_READ else data[:MAX_READ] + f"\n... (cut at {MAX_READ} characters)"

    def tool_write_file(self, path: str, content: str) -> str:
        p = self.path(path, write=True)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.path(str(p.parent))  # a parent created through a symlink would show up here
        p.write_text(content, encoding="utf-8")
        return f"wrote {p.relative_to(self.root)} ({len(content)} characters)"

    def tool_edit_file(self, path: str, old_text: str, new_text: str) -> str:
        p = self.path(path, write=True)
        if not p.is_file():
            raise ToolError(f"{path}: no such file")
        data = p.read_text(encoding="utf-8")
        n = data.count(old_text) if old_text else 0
        if n != 1:
            raise ToolError(f"{path}: old_text found {n} times; it must occur exactly once")
        p.write_text(data.replace(old_text, new_text), encoding="utf-8")
        return f"edited {p.relative_to(self.root)}"

    def tool_list_files(self, path: str = ".") -> str:
        base = self.path(path)
        if not base.is_dir():
            raise ToolError(f"{path}: not a folder")
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in {".mlpipe", ".git", "__pycache__", ".venv"})
            for f in sorted(filenames):
                out.append(str((Path(dirpath) / f).relative_to(self.root)))
                if len(out) >= MAX_LIST:
                    return "\n".join(out) + f"\n... (first {MAX_LIST} files)"
        return "\n".join(out) or "(empty)"

    def tool_run_command(self, command: str) -> str:
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise ToolError(f"cannot parse the command: {e}") from None
        if not argv:
            raise ToolError("empty command")
        exe = argv[0]
        if "/" in exe or exe not in ALLOWED_COMMANDS:
            raise ToolError(
                f"refused: {exe!r} is not allowed (allowed: {', '.join(sorted(ALLOWED_COMMANDS))})"
            )
        for arg in argv[1:]:  # every argument that could name a file must name one inside
            value = arg.split("=", 1)[-1] if arg.startswith("-") else arg
            if value.strip() and not (arg.startswith("-") and "=" not in arg):
                self.path(value)
        if exe in {"python", "python3"} and self.python:
            argv[0] = self.python
        elif exe == "pytest" and self.python:
            argv = [self.python, "-m", "pytest", *argv[1:]]
        from mlpipe_flow.data import data_url

        url = data_url(self.root)  # the agent's code reaches a database as the gate's does
        env = proc.scrubbed_env(extra={"PYTHONDONTWRITEBYTECODE": "1",
                                       **({"MLPIPE_DATA_URL": url} if url else {})})
        res = proc.run(argv, cwd=self.root, env=env, timeout_s=self.command_timeout_s)
        out = res.output[-20_000:]
        return f"[{res.describe()}]\n{out}" if not res.ok else f"[exit status 0]\n{out}"
