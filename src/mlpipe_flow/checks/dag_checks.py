"""DAG checks: the data pipeline DAG (phase 2) and the continuous-training DAG (phase 6)
parse, have a schedule, and run their tasks in order."""

from __future__ import annotations

import ast
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.models import CheckResult


class DagParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "airflow_dags/data_pipeline.py"
    order: list[str] = Field(default_factory=lambda: ["ingest", "validate", "feature"],
                             description="task-id fragments that must run in this order")
    require_schedule: bool = True
    require_retries: bool = True


def dag_structure(ctx: CheckContext, params: DagParams) -> CheckResult:
    p = ctx.path(params.path)
    if not p.is_file():
        return result("failed", f"{params.path} does not exist")
    try:
        tree = ast.parse(p.read_text(encoding="utf-8"), filename=params.path)
    except (SyntaxError, UnicodeDecodeError) as e:
        return result("failed", f"{params.path} does not parse: {e}")
    dag_calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and _name(n.func) in ("DAG", "dag")]
    if not dag_calls:
        return result("failed", f"{params.path} defines no DAG (no DAG(...) or @dag found)")
    kwargs = {k.arg for c in dag_calls for k in c.keywords if k.arg}
    has_schedule = bool(kwargs & {"schedule", "schedule_interval", "timetable"})
    text = ast.unparse(tree)
    has_retries = "retries" in text
    tasks: dict[str, str] = {}  # variable -> task_id
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            tid = next((k.value.value for k in node.value.keywords if k.arg == "task_id"
                        and isinstance(k.value, ast.Constant)), None)
            if tid is not None:
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        tasks[t.id] = str(tid)
    edges: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.RShift, ast.LShift)):
            left, right = _rightmost(node.left), _leftmost(node.right)
            a, b = tasks.get(left or ""), tasks.get(right or "")
            if a and b:
                edges.add((a, b) if isinstance(node.op, ast.RShift) else (b, a))
    ids = sorted(tasks.values())
    chain = []
    for frag in params.order:
        match = next((t for t in ids if frag.lower() in t.lower()), None)
        if match is None:
            return result("failed", f"{params.path}: no task whose id contains {frag!r} "
                          f"(task ids: {ids})", tasks=ids, edges=sorted(edges))
        chain.append(match)
    broken = [f"{a} -> {b}" for a, b in zip(chain, chain[1:], strict=False)
              if not _reaches(edges, a, b)]
    evidence = {"tasks": ids, "edges": sorted(edges), "schedule": has_schedule,
                "retries": has_retries}
    if broken:
        return result("failed", f"{params.path}: tasks not in order {' -> '.join(chain)} "
                      f"(no dependency path {', '.join(broken)})", **evidence)
    if params.require_schedule and not has_schedule:
        return result("failed", f"{params.path}: the DAG has no schedule", **evidence)
    if params.require_retries and not has_retries:
        return result("failed", f"{params.path}: no retries configured", **evidence)
    return result("passed", f"{params.path} defines a DAG: {' -> '.join(chain)}", **evidence)


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _leftmost(node: ast.AST) -> str | None:
    while isinstance(node, ast.BinOp):
        node = node.left
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        node = node.elts[0]
    return node.id if isinstance(node, ast.Name) else None


def _rightmost(node: ast.AST) -> str | None:
    while isinstance(node, ast.BinOp):
        node = node.right
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        node = node.elts[-1]
    return node.id if isinstance(node, ast.Name) else None


def _reaches(edges: set[tuple[str, str]], a: str, b: str) -> bool:
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


class CtDagParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "airflow_dags/continuous_training.py"
    order: list[str] = Field(default_factory=lambda: ["check", "retrain", "canary"],
                             description="substrings of task ids that must follow each other")


def _str_value(node: ast.AST, consts: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return consts.get(node.id)
    return None


def _chain(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift):
        return _chain(node.left) + _chain(node.right)
    return [node]


def dag_parses(ctx: CheckContext, params: CtDagParams) -> CheckResult:
    p = ctx.workspace / params.path
    if not p.is_file():
        return result("failed", f"{params.path} does not exist")
    try:
        tree = ast.parse(p.read_text(encoding="utf-8"), filename=params.path)
    except SyntaxError as e:
        return result("failed", f"{params.path}:{e.lineno}: syntax error: {e.msg}")
    consts: dict[str, str] = {}
    task_of: dict[str, str] = {}
    schedule = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            value = _str_value(node.value, consts)
            if value is not None:
                consts[node.targets[0].id] = value
            if isinstance(node.value, ast.Call):
                for kw in node.value.keywords:
                    if kw.arg == "task_id":
                        tid = _str_value(kw.value, consts)
                        if tid:
                            task_of[node.targets[0].id] = tid
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) \
                == "DAG":
            for kw in node.keywords:
                if kw.arg in ("schedule", "schedule_interval"):
                    schedule = _str_value(kw.value, consts)
    edges: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.BinOp):
            items = _chain(node.value)
            names = [task_of.get(i.id) if isinstance(i, ast.Name) else None for i in items]
            for a, b in zip(names, names[1:], strict=False):
                if a and b:
                    edges.add((a, b))
    ev: dict[str, Any] = {"schedule": schedule, "tasks": sorted(task_of.values()),
                          "edges": sorted(f"{a} >> {b}" for a, b in edges)}
    spec = ctx.spec() or {}
    want = str((spec.get("retraining") or {}).get("schedule") or "") or None
    if not schedule:
        return result("failed", f"{params.path}: the DAG has no literal schedule", **ev)
    if want and schedule != want:
        return result("failed", f"{params.path}: schedule {schedule!r} differs from ml-spec.yaml's "
                      f"retraining.schedule {want!r}", **ev)

    def find(word: str) -> list[str]:
        return [t for t in task_of.values() if word.lower() in t.lower()]

    def reaches(a: str, b: str) -> bool:
        seen, todo = set(), [a]
        while todo:
            x = todo.pop()
            for s, t in edges:
                if s == x and t not in seen:
                    if t == b:
                        return True
                    seen.add(t)
                    todo.append(t)
        return False

    for a, b in zip(params.order, params.order[1:], strict=False):
        if not find(a) or not find(b):
            return result("failed", f"{params.path}: no task whose id contains "
                          f"'{a if not find(a) else b}'", **ev)
        if not any(reaches(x, y) for x in find(a) for y in find(b)):
            return result("failed", f"{params.path}: no dependency path from a '{a}' task to a "
                          f"'{b}' task", **ev)
    return result("passed", f"schedule {schedule!r}; {' -> '.join(params.order)} in order", **ev)
