"""Load one DAG file the way Airflow does and describe what it built, as JSON.

    python dag_loader.py DAG_FILE STANDIN_DIR OUT_JSON
    python dag_loader.py DAG_FILE STANDIN_DIR OUT_JSON --run CHECK STOP

The second form (the phase-6 drift drill, `dag_drills.py`) runs the DAG instead of describing
it: see `_run`.

Run by path in a child process of the workspace's interpreter (self-contained: it imports
nothing of mlpipe). Like Airflow's DagBag it imports the file as a module with its folder on
`sys.path` (not the project root) and keeps the DAGs the import created; tasks are never run.
With Airflow importable it uses Airflow's own DagBag; else it puts mlpipe's recording stand-in
of Airflow's API (STANDIN_DIR) on the path, after site-packages. Dead code creates nothing, so
a dependency written under `if False:` is no edge.

For each task it reports the operator, retries, trigger rule, upstream task ids, a Bash
command (with its cwd/env) or, for Python tasks, the callable and the functions it calls
(file and line, resolved through the callable's globals and in-function imports), which the
gate then judges against the workspace.
"""

from __future__ import annotations

import dis
import functools
import importlib
import importlib.util
import inspect
import json
import os
import sys
import traceback
import types
from pathlib import Path


def main(argv: list[str]) -> int:
    dag_file, standin, out = Path(argv[0]).resolve(), argv[1], Path(argv[2])
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    sys.path.insert(0, str(dag_file.parent))
    if argv[3:4] == ["--run"]:
        out.write_text(json.dumps(_run(dag_file, standin, argv[4], argv[5]), default=str),
                       encoding="utf-8")
        return 0
    report: dict = {"file": str(dag_file), "dags": [], "error": None}
    try:
        import airflow  # noqa: F401
        mode = "airflow"
    except ImportError:
        sys.path.append(standin)
        mode = "stand-in"
    report["mode"] = mode
    try:
        if mode == "airflow":
            dags, error = _dagbag(dag_file)
        else:
            dags, error = _standin_dags(dag_file)
        report["error"] = error
        report["dags"] = [_describe_dag(d, dag_file) for d in dags]
    except Exception as e:  # noqa: BLE001 - whatever happened is the report
        report["error"] = _why(e)
    out.write_text(json.dumps(report, default=str), encoding="utf-8")
    return 0


def _run(dag_file: Path, standin: str, check: str, stop: str) -> dict:
    """`--run CHECK STOP`: run the DAG holding a task whose id contains CHECK and one whose id
    contains STOP with the stand-in's dag.test(), up to the first STOP task (recorded as
    "reached", not run). The stand-in always: it goes first on the path, before a real Airflow
    (whose dag.test() needs a metadata database)."""
    sys.path.insert(0, standin)
    report: dict = {"file": str(dag_file), "mode": "stand-in dag.test()", "error": None}
    try:
        from airflow import _standin  # type: ignore[import-not-found]

        dags, error = _standin_dags(dag_file)
        if error:
            report["error"] = f"the DAG file does not import: {error}"
            return report
        for dag in dags:
            ids = list(dag.task_dict)
            checks = [t for t in ids if check in t]
            stops = [t for t in ids if stop in t]
            if checks and stops:
                break
        else:
            report["error"] = (f"no DAG has both a task whose id contains {check!r} and one whose "
                               f"id contains {stop!r}")
            return report
        runs = _standin._run_dag(dag, stop=lambda tid: stop in tid)
    except Exception as e:  # noqa: BLE001 - whatever happened is the report
        report["error"] = _why(e)
        return report
    states = {}
    for tid, r in runs.items():
        lines = [ln for ln in (r.output or "").splitlines() if ln.strip()]
        states[tid] = {"state": r.state, "skipped_by": r.skipped_by, "error": r.error,
                       "tail": [ln[:300] for ln in lines[-4:]],
                       "last": lines[-1][:100_000] if lines else ""}
    first = next((t for t in runs if stop in t and runs[t].state == "reached"), stops[0])
    report.update(dag_id=dag.dag_id, states=states, check=checks[0], retrain=first,
                  brief={t: s["state"] + (f" (by {s['skipped_by']})" if s["skipped_by"] else "")
                         for t, s in states.items()})
    return report


def _why(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb)
                  if "airflow" not in f.filename and "importlib" not in f.filename), "")
    text = f"{type(e).__name__}: {e}".splitlines()[0][:300]
    if isinstance(e, ModuleNotFoundError) and str(e.name or "").split(".")[0] == "airflow":
        text += " [stand-in gap]"
    return f"{text} ({where})" if where else text


def _standin_dags(dag_file: Path) -> tuple[list, str | None]:
    from airflow import _standin  # type: ignore[import-not-found]

    name = f"unusual_prefix_mlpipe_{dag_file.stem}"
    spec = importlib.util.spec_from_file_location(name, dag_file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001 - a DAG file that fails to import is reported
        return [], _why(e)
    found = list(_standin.DAGS)
    for value in vars(module).values():
        if isinstance(value, _standin.DAG) and value not in found:
            found.append(value)
    return found, None


def _dagbag(dag_file: Path) -> tuple[list, str | None]:
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
    try:
        from airflow.models.dagbag import DagBag
    except ImportError:  # Airflow 3.1+: the DagBag moved
        from airflow.dag_processing.dagbag import DagBag  # type: ignore[no-redef]
    bag = DagBag(dag_folder=str(dag_file), include_examples=False, safe_mode=False)
    errors = "; ".join(str(v).strip().splitlines()[-1][:300]
                       for v in bag.import_errors.values()) or None
    return list(bag.dags.values()), errors


# -- what the DAG holds ------------------------------------------------------------------
def _describe_dag(dag, dag_file: Path) -> dict:
    schedule = getattr(dag, "schedule", None)
    keyword = getattr(dag, "schedule_keyword", None)
    if keyword is None:  # a real DAG: what the file passed is in the source
        keyword = _schedule_keyword(dag_file)
    if schedule is None and hasattr(dag, "schedule_interval"):
        try:
            schedule = dag.schedule_interval
        except Exception:  # noqa: BLE001
            schedule = None
    if schedule is not None and not isinstance(schedule, (str, int, float)):
        summary = getattr(getattr(dag, "timetable", None), "summary", None)
        schedule = summary if isinstance(summary, str) and not isinstance(schedule, str) \
            else repr(schedule)
    tasks = [_describe_task(t, dag_file) for t in dag.tasks]
    return {"dag_id": dag.dag_id, "schedule": schedule, "schedule_keyword": keyword,
            "tasks": tasks}


def _schedule_keyword(dag_file: Path) -> str | None:
    import ast

    try:
        tree = ast.parse(dag_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    words = {k.arg for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords}
    for word in ("schedule_interval", "schedule", "timetable"):
        if word in words:
            return word
    return None


def _describe_task(t, dag_file: Path) -> dict:
    kind_name = type(t).__name__
    rec: dict = {"task_id": t.task_id, "operator": kind_name,
                 "retries": _int(getattr(t, "retries", 0)),
                 "trigger_rule": str(getattr(getattr(t, "trigger_rule", ""), "value",
                                             getattr(t, "trigger_rule", ""))),
                 "upstream": sorted(getattr(t, "upstream_task_ids", ()))}
    fn = getattr(t, "python_callable", None)
    command = getattr(t, "bash_command", None)
    if command is None and callable(fn) and "bash" in kind_name.lower():
        try:  # @task.bash in Airflow: the function returns the command
            command = fn()
        except Exception:  # noqa: BLE001
            command = None
    if isinstance(command, str):
        rec.update(kind="bash", bash_command=command, cwd=getattr(t, "cwd", None),
                   env={str(k): str(v) for k, v in (getattr(t, "env", None) or {}).items()},
                   skip_on_exit_code=str(getattr(t, "skip_on_exit_code", None)))
    elif callable(fn):
        low = (getattr(t, "decorator_kind", "") or kind_name).lower()
        rec["kind"] = ("branch" if "branch" in low else "short_circuit"
                       if "short" in low else "python")
        rec["callable"] = _qualname(fn)
        rec["arguments"] = _arguments(t, fn)
        rec["targets"] = _targets(fn, dag_file.parent)
    elif kind_name in ("EmptyOperator", "DummyOperator"):
        rec["kind"] = "empty"
    else:
        execute = getattr(type(t), "execute", None)
        src = _file(execute)
        if src and "airflow" not in src:
            rec.update(kind="custom", callable=f"{kind_name}.execute",
                       targets=_targets(execute, dag_file.parent))
        else:
            rec["kind"] = "other"
    return rec


def _arguments(t, fn) -> str:
    args = list(getattr(t, "op_args", None) or [])
    kwargs = dict(getattr(t, "op_kwargs", None) or {})
    if isinstance(fn, functools.partial):
        args, kwargs = [*fn.args, *args], {**fn.keywords, **kwargs}
    try:
        return repr((args, sorted(kwargs.items())))[:300]
    except Exception:  # noqa: BLE001
        return "?"


def _int(x) -> int:
    try:
        return int(x)
    except (TypeError, ValueError):
        return 0


def _unwrap(fn):
    for _ in range(10):
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif hasattr(fn, "function") and callable(fn.function) and not inspect.isfunction(fn):
            fn = fn.function
        elif hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        else:
            break
    return fn


def _file(obj) -> str | None:
    try:
        f = inspect.getsourcefile(obj)
    except TypeError:
        return None
    return os.path.realpath(f) if f else None


def _qualname(fn) -> str:
    fn = _unwrap(fn)
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _where(obj) -> dict | None:
    obj = _unwrap(obj)
    if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)):
        return None
    f = _file(obj)
    if not f:
        return None
    try:
        line = inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        line = 0
    return {"name": _qualname(obj), "file": f, "line": line,
            "kind": "class" if inspect.isclass(obj) else "function"}


def _codes(code: types.CodeType):
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _codes(c)


def _referenced(fn) -> list:
    """Functions, classes and module attributes the function's code names."""
    fn = _unwrap(fn)
    if inspect.ismethod(fn):
        fn = fn.__func__
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    glb = getattr(fn, "__globals__", {})
    names: set[str] = set()
    modules = []
    for c in _codes(code):
        names.update(c.co_names)
        for ins in dis.get_instructions(c):
            if ins.opname == "IMPORT_NAME":
                try:
                    modules.append(importlib.import_module(str(ins.argval)))
                except Exception:  # noqa: BLE001 - what Airflow could not import either
                    continue
    out = []
    for n in names:
        obj = glb.get(n)
        if isinstance(obj, types.ModuleType):
            modules.append(obj)
        elif obj is not None:
            out.append(obj)
    for m in modules:
        for n in names:
            sub = getattr(m, n, None)
            if sub is not None and not isinstance(sub, types.ModuleType):
                out.append(sub)
            elif isinstance(sub, types.ModuleType):
                out.extend(getattr(sub, k) for k in names if hasattr(sub, k))
    return out


def _targets(fn, dags_dir: Path, depth: int = 0) -> list[dict]:
    """The callable itself and what it calls (through functions of the DAG folder)."""
    me = _where(fn)
    out = [me] if me else []
    if me is None or depth >= 2:
        return out
    in_dags = os.path.realpath(me["file"]).startswith(os.path.realpath(dags_dir) + os.sep)
    if not in_dags:
        return out
    seen = {me["name"]}
    for obj in _referenced(fn):
        if inspect.isfunction(obj) or inspect.isclass(obj):
            for t in _targets(obj, dags_dir, depth + 1):
                if t["name"] not in seen:
                    seen.add(t["name"])
                    out.append(t)
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
