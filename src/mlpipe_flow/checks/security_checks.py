"""Security checks: bandit and an AST scan of the API's code (code execution and unsafe
deserialisation fail at any severity), and secrets: detect-secrets (entropy and keyword
detectors) plus mlpipe's own patterns and a structural pass over env entries in YAML."""

from __future__ import annotations

import ast
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
# bandit findings that fail at any severity: code execution, unsafe deserialisation, a shell
NEVER = {"B102": "exec", "B307": "eval", "B301": "pickle", "B302": "marshal",
         "B506": "yaml.load", "B602": "subprocess with shell=True",
         "B604": "a call with shell=True", "B605": "a process started through a shell",
         "B104": "binding all interfaces in Python", "B201": "Flask debug=True"}


class BanditParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(default_factory=lambda: ["deployment", "monitoring",
                                                      "continuous_training"])
    max_high: int = Field(default=0, ge=0)
    never: list[str] = Field(default_factory=lambda: sorted(NEVER),
                             description="bandit tests that fail at any severity")
    api: str = Field(default="deployment/api/main.py",
                     description="the API module whose local imports the AST scan follows")

    def describe(self) -> str:
        never = ", ".join(f"{t} ({NEVER.get(t, t)})" for t in self.never)
        folders = ", ".join(f"`{p}/`" for p in self.paths)
        return (f"the gate runs `bandit -r` over {folders} (those that exist; at least one "
                f"must) and fails on more than {self.max_high} high-severity issue(s), or on "
                f"any of {never} at any severity. An AST scan of `{self.api}`, the workspace "
                "modules it imports (transitively) and every Python file under those folders "
                "(tests excluded) also fails on any use of eval, exec, compile, breakpoint or "
                "`__builtins__`, `__import__` or `importlib.import_module` of a computed name, "
                "`getattr` of those names, "
                "pickle/marshal/dill/cloudpickle/jsonpickle/shelve loads, `yaml.load` without "
                "a SafeLoader (and `yaml.unsafe_load`/`full_load`), `os.system`/`popen`/"
                "`exec*`/`spawn*`, `subprocess` with `shell=True`, runpy, `code`, `pty.spawn`, "
                "`timeit`, numexpr or `pandas.eval`, and `.eval()`/`.query()` of a string built "
                "at run time.")


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
    never = [i for i in issues if i.get("test_id") in params.never and i not in high]
    medium = [i for i in issues if i.get("issue_severity") == "MEDIUM"]

    def show(i: dict[str, Any]) -> str:
        return (f"{i.get('filename')}:{i.get('line_number')} {i.get('test_id')} "
                f"{i.get('issue_severity')} {i.get('issue_text')}")

    unsafe, scanned = unsafe_calls(ctx.workspace, targets, params.api)
    findings = [show(i) for i in high + never] + unsafe
    ev: dict[str, Any] = {"scanned": targets, "high": len(high), "medium": len(medium),
                          "low": len(issues) - len(high) - len(medium),
                          "fail_at_any_severity": params.never, "findings": findings[:20],
                          "ast_scanned_files": len(scanned)}
    if len(high) > params.max_high or never or unsafe:
        return result("failed", f"{len(findings)} finding(s) (high severity, or code execution/"
                      f"unsafe deserialisation at any severity): {'; '.join(findings[:3])}", **ev)
    return result("passed", f"bandit: no high-severity finding ({len(medium)} medium, "
                  f"{ev['low']} low) in {', '.join(targets)}; no eval/exec/unsafe "
                  f"deserialisation in {len(scanned)} file(s) of the API's code", **ev)


# --- the AST scan -------------------------------------------------------------------------------

DANGEROUS_NAMES = {"eval", "exec", "compile", "__import__", "execfile", "__builtins__",
                   "breakpoint"}
DANGEROUS_CALLS = {  # module -> functions
    "builtins": {"eval", "exec", "compile", "__import__"},
    "pickle": {"load", "loads", "Unpickler"}, "_pickle": {"load", "loads", "Unpickler"},
    "cPickle": {"load", "loads"}, "dill": {"load", "loads"},
    "cloudpickle": {"load", "loads"}, "marshal": {"load", "loads"}, "shelve": {"open"},
    "jsonpickle": {"decode", "loads"}, "numexpr": {"evaluate"}, "pandas": {"eval"},
    "os": {"system", "popen", "execv", "execve", "execvp", "execl", "spawnv", "spawnl"},
    "runpy": {"run_path", "run_module"}, "code": {"interact", "InteractiveInterpreter",
                                                   "InteractiveConsole", "compile_command"},
    "importlib": {"import_module", "__import__"}, "pty": {"spawn"},
    "yaml": {"unsafe_load", "full_load", "load_all", "unsafe_load_all"},
    "timeit": {"timeit", "repeat"},
}
STRING_EVAL_METHODS = {"eval", "query"}  # DataFrame.eval/query with a non-constant string


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted origin (`import pickle as p` -> p: pickle; `from os import system`
    -> system: os.system)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(aliases.get(node.id, node.id))
        return ".".join(reversed(parts))
    return None


def _constant(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant)


def scan_source(text: str, rel: str) -> list[str]:
    """Code execution or unsafe deserialisation in one Python file."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        return [f"{rel}:{e.lineno} does not parse ({e.msg})"]
    aliases = _aliases(tree)
    out = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Name) and node.id in DANGEROUS_NAMES and node.id not in aliases:
            out.append(f"{rel}:{line} uses {node.id}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func, aliases)
            first = node.args[0] if node.args else None
            if name:
                module, _, fn = name.rpartition(".")
                top = module.split(".")[0]
                if fn in ("import_module", "__import__") and _constant(first):
                    pass  # a fixed module name
                elif fn in DANGEROUS_CALLS.get(module, set()) | DANGEROUS_CALLS.get(top, set()):
                    if not (module == "yaml" and fn == "load_all" and _safe_loader(node)):
                        out.append(f"{rel}:{line} calls {name}")
                elif module == "yaml" and fn == "load" and not _safe_loader(node):
                    out.append(f"{rel}:{line} calls yaml.load without SafeLoader")
                elif top == "subprocess" and any(k.arg == "shell" and not (
                        _constant(k.value) and not k.value.value)  # type: ignore[attr-defined]
                        for k in node.keywords):
                    out.append(f"{rel}:{line} calls {name} with shell=True")
                elif fn == "getattr" and len(node.args) > 1 and _constant(node.args[1]) and \
                        node.args[1].value in DANGEROUS_NAMES:  # type: ignore[attr-defined]
                    out.append(f"{rel}:{line} fetches {node.args[1].value} "  # type: ignore[attr-defined]
                               f"with getattr")
            if isinstance(node.func, ast.Attribute) and node.func.attr in STRING_EVAL_METHODS \
                    and _built_string(first):
                out.append(f"{rel}:{line} evaluates a non-constant expression with "
                           f".{node.func.attr}()")
    return out


def _built_string(node: ast.AST | None) -> bool:
    """An f-string, a concatenation or %-format, or a .format() call: text built at run time."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
        and node.func.attr == "format"


def _safe_loader(call: ast.Call) -> bool:
    for k in call.keywords:
        if k.arg == "Loader":
            text = ast.unparse(k.value)
            return "Safe" in text or "BaseLoader" in text
    return len(call.args) > 1 and "Safe" in ast.unparse(call.args[1])


def _local_module(root: Path, name: str) -> Path | None:
    rel = name.replace(".", "/")
    for cand in (root / f"{rel}.py", root / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def unsafe_calls(root: Path, targets: list[str], api: str) -> tuple[list[str], list[str]]:
    """The AST scan over the API module and the workspace modules it imports (transitively),
    and every Python file under the scanned folders."""
    files: list[Path] = []
    for t in targets:
        p = root / t
        files += [p] if p.is_file() else [f for f in p.rglob("*.py")
                                           if not any(part in SKIP_DIRS for part in
                                                      f.relative_to(root).parts)]
    todo = [root / api] if (root / api).is_file() else []
    seen: set[Path] = set(files)
    while todo:
        f = todo.pop()
        files.append(f)
        try:
            tree = ast.parse(f.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module, *(f"{node.module}.{a.name}" for a in node.names)] \
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for n in names:
                local = _local_module(root, n)
                if local is not None and local not in seen:
                    seen.add(local)
                    todo.append(local)
    findings: list[str] = []
    scanned = []
    for f in dict.fromkeys(files):
        rel = f.relative_to(root).as_posix()
        if rel.startswith("tests/") or "/tests/" in rel or f.name.startswith("test_"):
            continue  # tests are not served
        scanned.append(rel)
        findings += scan_source(f.read_text(encoding="utf-8", errors="replace"), rel)
    return findings, scanned


# --- secrets --------------------------------------------------------------------------------

SECRET_WORD = (r"(?:passw(?:or)?d|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|"
               r"private[_-]?key|client[_-]?secret|credentials?|auth[_-]?key)")
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])"),
    "AWS secret access key": re.compile(
        r"(?i)aws.{0,20}?(?:secret|private).{0,20}?[\"'=:\s]+([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"),
    "Anthropic API key": re.compile(r"sk-ant-[A-Za-z0-9_\-]{20,}"),
    "OpenAI-style API key": re.compile(r"(?<![A-Za-z0-9])sk-(?:proj-)?[A-Za-z0-9_\-]{20,}"),
    "GitHub token": re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{30,}|"
                               r"github_pat_[A-Za-z0-9_]{30,})"),
    "Slack token": re.compile(r"xox[baprs]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"AIza[0-9A-Za-z_\-]{35}"),
    "private key block": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE "
                                    r"KEY-----"),
    "password in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^/\s:@'\"]{3,})@"),
}
# NAME = value with a secret-like name (no \b: AWS_SECRET_ACCESS_KEY counts); quoted in code
ASSIGNMENT = re.compile(rf"(?i)([A-Za-z0-9_.\-]*{SECRET_WORD}[A-Za-z0-9_.\-]*)[\"']?\s*(?::=|=|:)"
                        rf"\s*(?P<q>[\"']?)(?P<v>[^\s\"'#,;)]+)(?P=q)")
PLACEHOLDER = re.compile(
    r"(?i)^(|none|null|true|false|changeme|change[-_ ]?me|replace[-_ ]?me|placeholder|example|"
    r"dummy|redacted|secret|password|pw|pass|x+|\*+|\.+|<[^>]*>|\$\{\{.*\}\}|\$\{[^}]*\}|"
    r"\{\{.*\}\}|\$\(.*\)|\$[A-Za-z_][A-Za-z0-9_]*|%\(.*\)s|your[-_].*|test[-_]?.*)$")
CODE_SUFFIXES = {".py"}
CONFIG_SUFFIXES = {".env", ".sh", ".cfg", ".ini", ".toml", ".conf", ".properties", ".tf", ""}
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".json", ".md", ".txt", ".cfg", ".ini", ".toml", ".env",
                 ".sh", ".j2", ".ipynb", "", ".conf", ".properties", ".tf"}
ENTROPY_SUFFIXES = {".py", ".yaml", ".yml", ".json", ".env", ".sh", ".cfg", ".ini", ".toml",
                    ".conf", ".properties", ".tf"}  # code, config and manifests
HASH_CONTEXT = re.compile(r"(?i)(sha\d*|md5|hash|digest|checksum|run_?id|commit|uses:|etag|"
                          r"uuid|uid|\bid\b)")
BENIGN_TYPES = {"Public IP (ipv4)"}


class SecretsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_file_bytes: int = Field(default=2_000_000, gt=0)

    def describe(self) -> str:
        return ("the gate scans every text file of the workspace (code, config, manifests, "
                f"markdown, notebooks, Dockerfiles, `.env*`) up to {self.max_file_bytes:,} "
                f"bytes, outside {', '.join(f'`{d}/`' for d in sorted(SKIP_DIRS))}, for: "
                f"{', '.join(SECRET_PATTERNS)}; `NAME = \"literal\"` (quoted in Python code) "
                "with a secret-like name (password, secret, token, API/access/private/auth key, "
                "client secret, credential; also inside longer names such as "
                "`AWS_SECRET_ACCESS_KEY`) in code and config; secret-like YAML env entries "
                "with a literal value; and detect-secrets' entropy and keyword detectors over "
                "code, config and manifests. Placeholders (`changeme`, `${VAR}`, `<...>`, "
                "`your-...`) and digests or ids next to a sha/hash/id word pass; any other "
                "finding fails. Read secrets from the environment.")


def _files(root: Path, limit: int) -> list[Path]:
    out = []
    for p in root.rglob("*"):
        rel_parts = p.relative_to(root).parts
        if any(part in SKIP_DIRS for part in rel_parts[:-1]):
            continue
        name = p.name.lower()
        if p.is_file() and (p.suffix.lower() in TEXT_SUFFIXES or name == "dockerfile"
                            or name.startswith(".env")) and p.stat().st_size <= limit:
            out.append(p)
    return out


def _entropy(s: str) -> float:
    import math
    from collections import Counter

    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def looks_secret(value: str) -> bool:
    """A literal that is not a placeholder, a reference or a plain word."""
    v = value.strip()
    if PLACEHOLDER.match(v) or len(v) < 6:
        return False
    if re.match(r"^[a-z][a-z0-9+.-]*://[^@\s]*$", v) or v.startswith(("/", "./", "../")):
        return False  # a URL without credentials, a path
    if re.fullmatch(r"[a-z]+(?:[-_.][a-z]+)*", v):
        return False  # a name made of lowercase words (model-api-secrets, mlflow.tracking)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", v) and not re.search(r"\d", v):
        return _entropy(v) >= 3.7 and len(v) >= 20  # words, dotted names: only if long+random
    return True


def _pattern_hits(text: str, rel: str, suffix: str) -> list[str]:
    hits = []
    for what, rx in SECRET_PATTERNS.items():
        for m in rx.finditer(text):
            value = m.group(m.lastindex or 0)
            if what == "password in a URL" and not looks_secret(value):
                continue
            hits.append(f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: {what}")
    if suffix in CODE_SUFFIXES or suffix in CONFIG_SUFFIXES or rel.endswith("Dockerfile"):
        for m in ASSIGNMENT.finditer(text):
            if suffix in CODE_SUFFIXES and not m.group("q"):
                continue  # code: only string literals (not os.environ[...] and the like)
            if looks_secret(m.group("v")):
                line = text.count("\n", 0, m.start()) + 1
                hits.append(f"{rel}:{line}: hard-coded {m.group(1)}")
    return hits


def _yaml_env_hits(text: str, rel: str) -> list[str]:
    """env entries with a secret-like name and a literal value: Kubernetes `- name/value`,
    compose/GitHub `environment:`/`env:` mappings."""
    import yaml

    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return []
    hits: list[str] = []
    name_rx = re.compile(SECRET_WORD, re.I)

    def walk(node: Any, env_context: bool) -> None:
        if isinstance(node, dict):
            if {"name", "value"} <= node.keys() and name_rx.search(str(node["name"])) \
                    and isinstance(node["value"], str) and looks_secret(node["value"]):
                hits.append(f"{rel}: env {node['name']} holds a plain-text value")
            for k, v in node.items():
                if env_context and name_rx.search(str(k)) and isinstance(v, str) \
                        and looks_secret(v):
                    hits.append(f"{rel}: {k} holds a plain-text value")
                walk(v, str(k).lower() in ("env", "environment", "variables", "stringdata"))
        elif isinstance(node, list):
            for item in node:
                if env_context and isinstance(item, str) and "=" in item:
                    k, _, v = item.partition("=")
                    if name_rx.search(k) and looks_secret(v):
                        hits.append(f"{rel}: {k} holds a plain-text value")
                walk(item, False)

    for d in docs:
        walk(d, False)
    return hits


def _detect_secrets(files: list[Path], root: Path) -> list[str]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    collection = SecretsCollection(root=str(root))
    with default_settings():
        for f in files:
            collection.scan_file(f.relative_to(root).as_posix())
    hits = []
    for filename, found in collection.data.items():
        lines: list[str] | None = None
        for s in found:
            if s.type in BENIGN_TYPES:
                continue
            value = s.secret_value or ""
            if PLACEHOLDER.match(value.strip()) or len(value.strip()) < 4:
                continue
            if "Hex" in s.type or "Keyword" in s.type:
                if lines is None:
                    lines = (root / filename).read_text(encoding="utf-8",
                                                        errors="replace").splitlines()
                text = lines[s.line_number - 1] if 0 < s.line_number <= len(lines) else ""
                if "Hex" in s.type and HASH_CONTEXT.search(text):
                    continue  # a digest or an id, not a key
                if "Keyword" in s.type and not looks_secret(value):
                    continue
            hits.append(f"{filename}:{s.line_number}: {s.type} (detect-secrets)")
    return hits


def secrets(ctx: CheckContext, params: SecretsParams) -> CheckResult:
    files = _files(ctx.workspace, params.max_file_bytes)
    hits: list[str] = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        rel = f.relative_to(ctx.workspace).as_posix()
        suffix = ".env" if f.name.lower().startswith(".env") else f.suffix.lower()
        hits += _pattern_hits(text, rel, suffix)
        if suffix in (".yaml", ".yml"):
            hits += _yaml_env_hits(text, rel)
    code = [f for f in files if f.suffix.lower() in ENTROPY_SUFFIXES or f.name == "Dockerfile"
            or f.name.lower().startswith(".env")]
    try:
        found = _detect_secrets(code, ctx.workspace)
    except ImportError:
        return result("error", "detect-secrets is not installed (pip install detect-secrets); "
                      "the entropy scan could not run", pattern_findings=hits[:30])
    seen = {h.split(": ")[0] for h in hits}
    hits += [h for h in found if h.split(": ")[0] not in seen]
    if hits:
        return result("failed", f"{len(hits)} secret-like string(s): {'; '.join(hits[:5])}",
                      findings=hits[:30], files_scanned=len(files), entropy_scanned=len(code))
    return result("passed", f"no secret-like strings in {len(files)} file(s) (key patterns, "
                  f"plain-text env values; detect-secrets entropy and keyword detectors over "
                  f"{len(code)} code, config and manifest file(s))", files_scanned=len(files),
                  entropy_scanned=len(code))
