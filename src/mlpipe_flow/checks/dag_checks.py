"""DAG checks: the data pipeline DAG (phase 2, `dag_structure`) and the continuous-training
DAG (phase 6, `dag_parses`), loaded the way Airflow loads them and judged.

The file is imported in a child process of the workspace's interpreter (`dag_loader.py`), from a
scratch copy of the workspace (so a path hard-coded to the real workspace shows), with Airflow's
DagBag when Airflow is installed there, else with mlpipe's recording stand-in of Airflow's API.
Only what the import really built counts: dead code adds no task and no edge.

Each task on the required path must run real workspace code:
- a Bash task must run a workspace Python script or module (`python path/x.py`,
  `python -m pkg.mod`, or a workspace shell script that does) that exists outside airflow_dags/,
  relative to its `cwd=` (or a `cd`), and must not swallow its failure (`|| true`, a `;` after
  it without `set -e` or a `$?` test, a pipe without `pipefail`, `&`);
- a Python task's callable must be, or call, a function or class of a workspace module outside
  airflow_dags/ whose body does more than print, log or sleep;
- an EmptyOperator or an operator the gate cannot see into runs nothing.
Reported: the DAG id, its schedule (`schedule_interval`, removed in Airflow 3, is flagged),
retries, tasks and edges.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.checks.scratch import copy_workspace
from mlpipe_flow.models import CheckResult

LOADER = Path(__file__).with_name("dag_loader.py")
STANDIN = Path(__file__).with_name("airflow_standin")
#: calls that do no work: a function made only of these (and constants) is a stub
IDLE_CALLS = {"print", "sleep", "exit", "quit", "pprint", "len", "str", "dict", "list",
              "info", "debug", "warning", "error", "log", "echo", "now", "format", "getLogger"}
RUNS_AFTER_FAILURE = {"all_done", "always", "dummy", "one_failed", "all_failed", "one_done"}
PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")


class DagParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "airflow_dags/data_pipeline.py"
    order: list[str] = Field(default_factory=lambda: ["ingest", "validate", "feature"],
                             description="task-id fragments that must run in this order")
    require_schedule: bool = True
    require_retries: bool = True

    def describe(self) -> str:
        return dag_rule(self.path, self.order, self.require_schedule, self.require_retries)


def dag_rule(path: str, order: list[str], require_schedule: bool, require_retries: bool,
             schedule: str = "a literal schedule") -> str:
    """The rule of both DAG checks, as the prompts state it."""
    steps = " -> ".join(f"`{t}`" for t in order)
    needs = []
    if require_schedule:
        needs.append(f"{schedule}, passed as `schedule=` (Airflow 3; `schedule_interval` fails)")
    if require_retries:
        needs.append("retries on each task of the path (in default_args or on the task)")
    return (f"the gate imports `{path}` as Airflow does (Airflow's DagBag when Airflow is "
            "installed, else mlpipe's recording stand-in of Airflow 3's API) from a scratch copy "
            "of the workspace; only what the import builds counts. It needs tasks whose ids "
            f"contain {steps}, on one dependency path in that order (no cycle, no trigger rule "
            "that runs after a failure)"
            + "".join(f", {n}" for n in needs)
            + ". Each task on the path runs its own workspace code outside airflow_dags/: a "
            "Bash task runs a workspace script or module (a relative path, with `cwd=` or a "
            "`cd`) without swallowing its failure (no `|| true`, no `;` without `set -e`, no "
            "`&`); a Python task calls a workspace function that does more than print, log or "
            "sleep; an EmptyOperator runs nothing.")


class CtDagParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "airflow_dags/continuous_training.py"
    order: list[str] = Field(default_factory=lambda: ["check", "retrain", "canary"],
                             description="substrings of task ids that must follow each other")
    schedule_from_spec: bool = Field(default=True, description="the schedule must equal "
                                     "ml-spec.yaml's retraining.schedule")

    def describe(self) -> str:
        schedule = ("the schedule `ml-spec.yaml` gives as `retraining.schedule` (the spec as "
                    "phase 1 left it: later phases may not edit it)" if self.schedule_from_spec
                    else "a literal schedule")
        return (dag_rule(self.path, self.order, True, True, schedule)
                + " A `;` after a command is accepted when the next command tests `$?` (e.g. "
                "`python x.py; case $? in 0) exit 99;; 1) exit 0;; *) exit 1;; esac`).")


def dag_structure(ctx: CheckContext, params: DagParams) -> CheckResult:
    return _judge(ctx, params.path, params.order, schedule_from_spec=False,
                  require_retries=params.require_retries,
                  require_schedule=params.require_schedule)


def dag_parses(ctx: CheckContext, params: CtDagParams) -> CheckResult:
    return _judge(ctx, params.path, params.order, schedule_from_spec=params.schedule_from_spec,
                  require_retries=True, require_schedule=True)


# -- loading -------------------------------------------------------------------------------
def load_dag_file(ctx: CheckContext, rel: str, root: Path) -> dict[str, Any]:
    """The loader's report on `root/rel` (root: the scratch copy of the workspace)."""
    out = root.parent / f"dag-report-{Path(rel).stem}.json"
    run_dir = root.parent / "cwd"
    run_dir.mkdir(exist_ok=True)
    env = proc.scrubbed_env(extra={**ctx.env, "PYTHONDONTWRITEBYTECODE": "1",
                                   "AIRFLOW_HOME": str(root.parent / "airflow-home")})
    env.pop("PYTHONPATH", None)
    res = proc.run([ctx.python, str(LOADER), str(root / rel), str(STANDIN), str(out)],
                   cwd=run_dir, env=env, timeout_s=max(30.0, ctx.timeout_s - 15))
    try:
        report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = [ln for ln in res.output.splitlines() if ln.strip()][-2:]
        return {"error": f"the DAG loader died ({res.describe()}): {' | '.join(tail)[:300]}",
                "loader_crashed": True, "dags": []}
    return report


# -- judging -------------------------------------------------------------------------------
def _judge(ctx: CheckContext, rel: str, order: list[str], *, schedule_from_spec: bool,
           require_retries: bool, require_schedule: bool) -> CheckResult:
    p = ctx.path(rel)
    if not p.is_file():
        return result("failed", f"{rel} does not exist")
    try:
        ast.parse(p.read_text(encoding="utf-8"), filename=rel)
    except (SyntaxError, UnicodeDecodeError) as e:
        return result("failed", f"{rel} does not parse: {e}")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlpipe-dag-", dir=ctx.scratch) as tmp:
        root = copy_workspace(ctx.workspace, Path(tmp) / "workspace")
        return _judge_report(ctx, rel, root, load_dag_file(ctx, rel, root), order,
                             schedule_from_spec=schedule_from_spec,
                             require_retries=require_retries, require_schedule=require_schedule)


def _judge_report(ctx: CheckContext, rel: str, root: Path, report: dict[str, Any],
                  order: list[str], *, schedule_from_spec: bool, require_retries: bool,
                  require_schedule: bool) -> CheckResult:
    mode = report.get("mode", "?")
    if report.get("error"):
        err = str(report["error"])
        if report.get("loader_crashed") or "[stand-in gap]" in err:
            return result("error", f"{rel} could not be loaded to judge it ({mode}): {err}"
                          + (" — install apache-airflow in the workspace interpreter so the "
                             "gate uses Airflow's DagBag" if "[stand-in gap]" in err else ""),
                          loader=mode)
        return result("failed", f"{rel} fails to import the way Airflow loads it ({mode}, with "
                      f"airflow_dags/ on sys.path): {err}", loader=mode)
    dags = report.get("dags") or []
    if not dags:
        return result("failed", f"importing {rel} creates no DAG (a DAG inside a function that "
                      "is never called, or in dead code, does not count)", loader=mode)
    if schedule_from_spec:
        from mlpipe_flow.checks.rawdata import spec_unchanged

        changed = spec_unchanged(ctx)
        if changed is not None:
            return changed
    spec = ctx.spec() or {}
    want = str((spec.get("retraining") or {}).get("schedule") or "") or None
    verdicts = [_judge_dag(ctx, rel, root, d, order, want if schedule_from_spec else None,
                           require_retries, require_schedule) for d in dags]
    passed = [v for v in verdicts if v.status == "passed"]
    best = passed[0] if passed else min(verdicts, key=lambda v: v.evidence.get("_rank", 9))
    best.evidence.pop("_rank", None)
    best.evidence["loader"] = mode
    if len(dags) > 1:
        best.evidence["dag_ids"] = [d.get("dag_id") for d in dags]
    return best


def _judge_dag(ctx: CheckContext, rel: str, root: Path, dag: dict[str, Any], order: list[str],
               want_schedule: str | None, require_retries: bool, require_schedule: bool
               ) -> CheckResult:
    tasks = {t["task_id"]: t for t in dag.get("tasks") or []}
    edges = sorted((u, t) for t, rec in tasks.items() for u in rec.get("upstream", []))
    ev: dict[str, Any] = {"dag_id": dag.get("dag_id"), "schedule": dag.get("schedule"),
                          "tasks": sorted(tasks), "edges": [f"{a} >> {b}" for a, b in edges],
                          "retries": {t: r.get("retries") for t, r in tasks.items()}}
    name = f"{rel} (DAG {dag.get('dag_id')!r})"
    real: dict[str, str | None] = {t: _runs_real_code(rec, root, Path(rel).parent)
                                   for t, rec in tasks.items()}
    ev["task_code"] = {t: (why or "runs workspace code") for t, why in real.items()}

    def fail(rank: int, message: str) -> CheckResult:
        return result("failed", f"{name}: {message}", _rank=rank, **ev)

    candidates = []
    for frag in order:
        hits = [t for t in tasks if frag.lower() in t.lower()]
        if not hits:
            return fail(3, f"no task whose id contains {frag!r} (task ids: {sorted(tasks)})")
        candidates.append(hits)
    cycle = _cycle(edges)
    if cycle:
        return fail(2, f"the dependencies form a cycle ({' >> '.join(cycle)}); Airflow rejects it")
    path = _path(candidates, edges)
    if path is None:
        for i in range(len(order) - 1):
            fa, fb = order[i], order[i + 1]
            if not any(_reaches(edges, x, y) for x in candidates[i] for y in candidates[i + 1]):
                return fail(2, f"tasks not in order {' -> '.join(order)}: no dependency path "
                            f"from a '{fa}' task to a '{fb}' task (measured edges: "
                            f"{ev['edges'] or 'none'})")
        return fail(2, f"tasks not in order {' -> '.join(order)}: no single dependency path "
                    f"through them (measured edges: {ev['edges'] or 'none'})")
    ev["path"] = path
    for step in path:
        if real[step]:
            return fail(1, f"task {step!r} {real[step]}")
    runs = {step: _what_it_runs(tasks[step]) for step in path}
    for i, first in enumerate(path):
        for second in path[i + 1:]:
            if runs[first] == runs[second]:
                return fail(1, f"tasks {first!r} and {second!r} run the same thing "
                            f"({_clip(runs[first])}): each step must run its own code")
    for before, after in zip(path, path[1:], strict=False):
        rule = tasks[after].get("trigger_rule") or "all_success"
        if rule in RUNS_AFTER_FAILURE:
            return fail(1, f"task {after!r} has trigger_rule {rule!r}: it runs whatever "
                        f"{before!r} decides")
    keyword = dag.get("schedule_keyword")
    if keyword == "schedule_interval":
        return fail(1, "uses schedule_interval, which Airflow 3 removed: pass schedule=")
    schedule = dag.get("schedule")
    if require_schedule and schedule in (None, "", "None"):
        return fail(1, "the DAG has no literal schedule (schedule=None or missing)")
    if want_schedule and str(schedule).strip() != want_schedule.strip():
        return fail(1, f"schedule {schedule!r} differs from ml-spec.yaml's retraining.schedule "
                    f"{want_schedule!r}")
    if require_retries:
        none = [t for t in path if not tasks[t].get("retries")]
        if none:
            return fail(1, f"no retries configured for {', '.join(none)} (set retries in "
                        "default_args or on the task)")
    return result("passed", f"{name} loads as Airflow loads it, with "
                  f"schedule {schedule!r}: {' -> '.join(path)}, each running workspace code",
                  **ev)


def _what_it_runs(task: dict[str, Any]) -> str:
    if task.get("kind") == "bash":
        return " ".join(str(task.get("bash_command") or "").split()) + f" @ {task.get('cwd')}"
    return f"{task.get('callable')}({task.get('arguments', '')})"


def _cycle(edges: list[tuple[str, str]]) -> list[str] | None:
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in graph.get(n, []):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for node in list(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _path(candidates: list[list[str]], edges: list[tuple[str, str]]) -> list[str] | None:
    """One task per fragment, each reaching the next (first such choice)."""
    def walk(i: int, prev: str | None) -> list[str] | None:
        if i == len(candidates):
            return []
        for t in candidates[i]:
            if prev is None or _reaches(edges, prev, t):
                rest = walk(i + 1, t)
                if rest is not None:
                    return [t, *rest]
        return None
    return walk(0, None)


def _reaches(edges: list[tuple[str, str]], a: str, b: str) -> bool:
    frontier, seen = [a], {a}
    while frontier:
        cur = frontier.pop()
        for x, y in edges:
            if x == cur and y not in seen:
                if y == b:
                    return True
                seen.add(y)
                frontier.append(y)
    return False


# -- does a task run workspace code? -------------------------------------------------------
def _runs_real_code(task: dict[str, Any], root: Path, dags_rel: Path) -> str | None:
    """None when the task runs real workspace code, else why not (a phrase after 'task X')."""
    kind = task.get("kind")
    if kind == "bash":
        return _bash_problem(str(task.get("bash_command") or ""), task.get("cwd"),
                             task.get("env") or {}, root, dags_rel)
    if kind in ("python", "branch", "short_circuit", "custom"):
        targets = task.get("targets") or []
        dags_dir = (root / dags_rel).resolve()
        for t in targets:  # the callable itself first, then what it calls
            f = Path(str(t.get("file", ""))).resolve()
            if not _inside(f, root.resolve()):
                continue
            src = Source(f)
            line = int(t.get("line") or 0)
            caught = src.swallows_at(line)
            if caught and (t is targets[0] or not _inside(f, dags_dir)):
                return (f"calls {t.get('name')}, which swallows failures (a broad except at "
                        f"{f.relative_to(root.resolve())}:{caught} that neither raises nor exits "
                        "non-zero)")
        for t in targets:
            f = Path(str(t.get("file", ""))).resolve()
            if _inside(f, root.resolve()) and not _inside(f, dags_dir) and \
                    not Source(f).stub_at(int(t.get("line") or 0)):
                return None
        shown = ", ".join(str(t.get("name")) for t in targets[:4]) or task.get("callable")
        return (f"calls {task.get('callable')} (reaching {shown}), which is no function of a "
                "workspace module outside airflow_dags/ that does real work")
    if kind == "empty":
        return f"is an {task.get('operator')}: it runs nothing"
    return (f"is a {task.get('operator')}, which the gate cannot see runs workspace code (use a "
            "BashOperator running a workspace script/module or a Python task calling one)")


def _inside(p: Path, folder: Path) -> bool:
    try:
        p.relative_to(folder)
    except ValueError:
        return False
    return True


class Source:
    """A Python file of the workspace, read to judge whether code does real work: a function
    whose calls are only prints, logging, sleeps or the file's own stub functions is a stub."""

    def __init__(self, file: Path) -> None:
        try:
            self.tree: ast.Module | None = ast.parse(file.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            self.tree = None
        self.defs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        if self.tree is not None:
            for node in ast.walk(self.tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.defs.setdefault(node.name, node)
        self._stubs: dict[str, bool] = {}

    def node_at(self, line: int) -> ast.AST | None:
        if self.tree is None:
            return None
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                    line in {node.lineno, *(d.lineno for d in node.decorator_list)}:
                return node
        return None

    def stub_function(self, name: str) -> bool:
        if name not in self._stubs:
            self._stubs[name] = True  # recursion counts as idle
            self._stubs[name] = self.stub_body(self.defs[name].body)
        return self._stubs[name]

    def stub_body(self, body: list[ast.stmt]) -> bool:
        """Only constants, prints, logging, sleeps, returns, this file's stub functions."""
        for stmt in body:
            for n in ast.walk(stmt):
                if isinstance(n, ast.Call):
                    f = n.func
                    name = f.id if isinstance(f, ast.Name) else f.attr if \
                        isinstance(f, ast.Attribute) else ""
                    if name in IDLE_CALLS:
                        continue
                    if isinstance(f, ast.Name) and name in self.defs and self.stub_function(name):
                        continue
                    return False
                if isinstance(n, (ast.With, ast.AsyncWith, ast.For, ast.While, ast.AugAssign)):
                    return False
        return True

    def stub_at(self, line: int) -> bool:
        node = self.node_at(line)
        if node is None:
            return False  # e.g. a lambda: judged by what it calls
        if isinstance(node, ast.ClassDef):
            return not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                           and not self.stub_body(n.body) for n in node.body)
        assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        return self.stub_body(node.body)

    def script_is_stub(self) -> bool:
        if self.tree is None:
            return True
        top = [s for s in self.tree.body if not isinstance(s, (ast.FunctionDef,
                                                                ast.AsyncFunctionDef))]
        return self.stub_body(top)

    def swallows_at(self, line: int) -> int | None:
        """The line of a broad `except` (bare, Exception, BaseException) in the function at
        `line` that neither re-raises nor exits non-zero: its failure never reaches Airflow."""
        node = self.node_at(line)
        if node is None:
            return None
        for n in ast.walk(node):
            if isinstance(n, ast.ExceptHandler) and _broad(n.type) and not _fails(n.body):
                return n.lineno
        return None


def _broad(kind: ast.expr | None) -> bool:
    if kind is None:
        return True
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    return any((isinstance(k, ast.Name) and k.id in ("Exception", "BaseException")) or
               (isinstance(k, ast.Attribute) and k.attr in ("Exception", "BaseException"))
               for k in names)


def _fails(body: list[ast.stmt]) -> bool:
    for stmt in body:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Raise):
                return True
            if isinstance(n, ast.Call):
                f = n.func
                name = f.id if isinstance(f, ast.Name) else f.attr if \
                    isinstance(f, ast.Attribute) else ""
                if name in ("exit", "_exit", "abort") and not (
                        n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value in (0, None)):
                    return True
    return False


_SEP = {"&&", "||", ";", "|", "&", ";;", "\n"}
_REDIRECT = {">", ">>", "<", ">&", "&>", "<<", "<<<", ">|", "&>>"}
_WRAPPERS = {"exec", "time", "nice", "nohup", "command", "builtin"}


def _segments(command: str) -> list[tuple[list[str], str | None]]:
    text = re.sub(r"\{\{.*?\}\}", "__TEMPLATED__", command, flags=re.S)
    text = text.replace("\\\n", " ").replace("\n", " ; ")
    lex = shlex.shlex(text, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        tokens = list(lex)
    except ValueError:
        tokens = text.split()
    out: list[tuple[list[str], str | None]] = []
    words: list[str] = []
    skip = False
    for tok in tokens:
        if skip:
            skip = False
            continue
        if tok in _SEP:
            out.append((words, tok))
            words = []
        elif tok in _REDIRECT:
            skip = True
        elif tok in ("(", ")", "{", "}"):
            continue
        else:
            words.append(tok)
    out.append((words, None))
    return [(w, op) for w, op in out if w or op]


def _bash_problem(command: str, cwd: Any, env: dict[str, str], root: Path, dags_rel: Path,
                  depth: int = 0) -> str | None:
    if not command.strip():
        return "has an empty bash_command"
    if re.search(r"\|\|\s*(true|:|exit\s+0)\b", command):
        return f"swallows failures ({_clip(command)} ends a command with '|| true')"
    here: Path | None = _resolve_dir(cwd, env, root, None) if cwd else None
    if cwd and here is None:
        return f"runs in cwd={cwd!r}, which is not a folder of the project"
    segs = _segments(command)
    set_e = pipefail = False
    ran: list[str] = []
    for i, (words, op) in enumerate(segs):
        words = _strip_wrappers(words)
        if not words:
            continue
        head = words[0]
        if head == "cd":
            dest = words[1] if len(words) > 1 else ""
            here = _resolve_dir(dest, env, root, here)
            if here is None:
                return (f"changes to {dest!r}, which is not a folder of this project (derive "
                        "the project folder from the DAG file's location, not a fixed path)")
            continue
        if head == "set":
            flags = " ".join(words[1:])
            set_e = set_e or bool(re.search(r"(^|\s)-\w*e", flags)) or "errexit" in flags
            pipefail = pipefail or "pipefail" in flags
            continue
        target, why = _code_target(words, here, env, root, dags_rel, depth)
        if why:
            return why
        if target is None:
            continue
        ran.append(target)
        nxt = segs[i + 1][0] if i + 1 < len(segs) else []
        if op == "||" and not (nxt[:1] == ["false"] or (nxt[:1] == ["exit"] and nxt[1:2] != ["0"])):
            return f"swallows the failure of {target} ('||' after it)"
        if op == ";" and not set_e and i + 1 < len(segs) and \
                not any("$?" in w for w in nxt) and any(w for w, _ in segs[i + 1:]):
            return (f"ignores the exit status of {target} (a ';' after it without set -e or a "
                    "$? test)")
        if op == "|" and not pipefail:
            return f"pipes {target} without set -o pipefail, so its failure is lost"
        if op == "&":
            return f"runs {target} in the background ('&')"
    if not ran:
        return (f"runs no workspace code ({_clip(command)}): run a workspace script or module, "
                "e.g. python -m package.module")
    return None


def _strip_wrappers(words: list[str]) -> list[str]:
    words = list(words)
    while words:
        w = words[0]
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w) or w in _WRAPPERS or w == "env":
            words.pop(0)
        elif (w in ("uv", "poetry", "pipenv", "pdm", "hatch") and words[1:2] == ["run"]) or \
                (w == "timeout" and len(words) > 1):
            words = words[2:]
        else:
            break
    return words


def _expand(word: str, env: dict[str, str]) -> str | None:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return env.get(name, "\x00")
    out = re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, word)
    return None if "\x00" in out or "__TEMPLATED__" in out else out


def _resolve_dir(target: Any, env: dict[str, str], root: Path, here: Path | None) -> Path | None:
    text = _expand(str(target), env)
    if text is None or text in ("", "~", "-"):
        return None
    p = Path(text)
    if not p.is_absolute():
        if here is None:
            return None
        p = here / p
    p = p.resolve()
    return p if p.is_dir() and _inside(p, root.resolve()) else None


def _code_target(words: list[str], here: Path | None, env: dict[str, str], root: Path,
                 dags_rel: Path, depth: int) -> tuple[str | None, str | None]:
    """(what it runs, None) for a workspace script/module; (None, why) when it names one that
    is not real; (None, None) for other commands."""
    head = words[0]
    base = os.path.basename(head)
    dags_dir = (root / dags_rel).resolve()
    if PYTHON.match(base):
        args = words[1:]
        while args and args[0].startswith("-") and args[0] not in ("-m", "-c"):
            args = args[2:] if args[0] in ("-W", "-X") else args[1:]
        if not args:
            return None, "starts python without a script"
        if any(a in ("-h", "--help", "--version") for a in args):
            return None, f"only asks {' '.join(args[:3])} for its help or version"
        if args[0] == "-c":
            return None, "runs inline python -c code instead of a workspace script or module"
        if args[0] == "-m":
            module = args[1] if len(args) > 1 else ""
            if here is None:
                return None, (f"runs python -m {module} with no working directory (a BashOperator "
                              "runs in a temporary folder: pass cwd= the project folder)")
            rel = Path(*module.split("."))
            for cand in (here / f"{rel}.py", here / rel / "__main__.py"):
                if cand.is_file():
                    return _judge_file(cand, f"python -m {module}", root, dags_dir)
            return None, f"runs python -m {module}, which is no module of the project"
        return _path_target(args[0], here, env, root, dags_dir, "python")
    if base in ("bash", "sh") and len(words) > 1 and not words[1].startswith("-"):
        return _shell_target(words[1], here, env, root, dags_rel, depth)
    if head.startswith("./") or head.endswith(".sh"):
        return _shell_target(head, here, env, root, dags_rel, depth)
    return None, None


def _path_target(word: str, here: Path | None, env: dict[str, str], root: Path,
                 dags_dir: Path, how: str) -> tuple[str | None, str | None]:
    text = _expand(word, env)
    if text is None:
        return None, f"runs {word}, a path the gate cannot resolve (templated or unset variable)"
    p = Path(text)
    if not p.is_absolute():
        if here is None:
            return None, (f"runs {how} {word} with no working directory (a BashOperator runs in "
                          "a temporary folder: pass cwd= the project folder)")
        p = here / p
    p = p.resolve()
    if not _inside(p, root.resolve()):
        return None, (f"runs {text}, outside this project (a path hard-coded to one machine? "
                      "derive it from the DAG file's location)")
    if not p.is_file():
        return None, f"runs {how} {word}, which does not exist"
    return _judge_file(p, f"{how} {word}", root, dags_dir)


def _judge_file(p: Path, shown: str, root: Path, dags_dir: Path) -> tuple[str | None, str | None]:
    if _inside(p, dags_dir):
        return None, f"runs {shown}, which lives in airflow_dags/ (keep task code out of it)"
    if p.suffix == ".py" and Source(p).script_is_stub():
        return None, f"runs {shown}, which does nothing but print, log or sleep"
    return shown, None


def _shell_target(word: str, here: Path | None, env: dict[str, str], root: Path,
                  dags_rel: Path, depth: int) -> tuple[str | None, str | None]:
    target, why = _path_target(word, here, env, root, (root / dags_rel).resolve(), "bash")
    if why or target is None or depth > 1:
        return target, why
    text = _expand(word, env) or word
    p = Path(text) if Path(text).is_absolute() else (here or root) / text
    inner = _bash_problem(p.read_text(encoding="utf-8", errors="replace"), None, env, root,
                          dags_rel, depth + 1) if p.is_file() else "is missing"
    if inner and "no working directory" in inner:  # a script runs where it is started
        inner = _bash_problem(p.read_text(encoding="utf-8", errors="replace"), str(here), env,
                              root, dags_rel, depth + 1) if here else inner
    return (None, f"runs {word}, which {inner}") if inner else (target, None)


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."
