"""The stand-in's core: DAG, operators, task groups, TaskFlow decorators and the dependency
operators (>>, <<, set_upstream/downstream, chain, cross_downstream, Label). Importing a DAG file
only records; `dag.test()` runs the tasks once, locally (_run_dag), for tests."""

from __future__ import annotations

import functools

STANDIN = True
_UNSET = object()
DAGS: list = []  # every DAG made, in order (Airflow registers DAGs used as context managers)
_DAG_STACK: list = []
_GROUP_STACK: list = []


def current_dag():
    return _DAG_STACK[-1] if _DAG_STACK else None


class DependencyMixin:
    def __rshift__(self, other):
        self.set_downstream(other)
        return other

    def __lshift__(self, other):
        self.set_upstream(other)
        return other

    def __rrshift__(self, other):  # [a, b] >> self
        self.set_upstream(other)
        return self

    def __rlshift__(self, other):  # [a, b] << self
        self.set_downstream(other)
        return self

    def set_downstream(self, other, *_a, **_k):
        for label in _items(other):
            if isinstance(label, Label):
                label.sources.extend(_leaves(self))
        for up in _leaves(self):
            for down in _roots(other):
                _link(up, down)

    def set_upstream(self, other, *_a, **_k):
        for up in _leaves(other):
            for down in _roots(self):
                _link(up, down)


def _items(x):
    if isinstance(x, (list, tuple, set, frozenset)):
        for i in x:
            yield from _items(i)
    else:
        yield x


def _roots(x):
    out = []
    for i in _items(x):
        if isinstance(i, XComArg):
            out.append(i.operator)
        elif isinstance(i, TaskGroup):
            out.extend(i.roots())
        elif isinstance(i, Label):
            continue
        elif isinstance(i, BaseOperator):
            out.append(i)
    return out


def _leaves(x):
    out = []
    for i in _items(x):
        if isinstance(i, XComArg):
            out.append(i.operator)
        elif isinstance(i, TaskGroup):
            out.extend(i.leaves())
        elif isinstance(i, Label):
            out.extend(i.sources)
        elif isinstance(i, BaseOperator):
            out.append(i)
    return out


def _link(up, down):
    if up is down:
        return
    up.downstream_task_ids.add(down.task_id)
    down.upstream_task_ids.add(up.task_id)


class Label(DependencyMixin):
    """An edge label: `a >> Label("x") >> b` links a to b."""

    def __init__(self, label=""):
        self.label = label
        self.sources = []

    def set_upstream(self, other, *_a, **_k):
        self.sources.extend(_leaves(other))

    def set_downstream(self, other, *_a, **_k):
        for up in self.sources:
            up.set_downstream(other)


class DAG:
    def __init__(self, dag_id=None, description=None, schedule=_UNSET, *args,
                 schedule_interval=_UNSET, timetable=None, default_args=None, **kwargs):
        if args:
            raise TypeError("DAG() takes dag_id, description and schedule positionally at most")
        self.dag_id = dag_id or kwargs.pop("dag_display_name", None)
        if not self.dag_id:
            raise TypeError("DAG() needs a dag_id")
        self.description = description
        self.schedule_keyword = None
        self.schedule = None
        if schedule is not _UNSET:
            self.schedule, self.schedule_keyword = schedule, "schedule"
        elif schedule_interval is not _UNSET:
            self.schedule, self.schedule_keyword = schedule_interval, "schedule_interval"
        elif timetable is not None:
            self.schedule, self.schedule_keyword = timetable, "timetable"
        self.default_args = dict(default_args or {})
        self.params = kwargs.get("params") or {}
        self.kwargs = kwargs
        self.task_dict = {}
        DAGS.append(self)

    @property
    def tasks(self):
        return list(self.task_dict.values())

    @property
    def task_ids(self):
        return list(self.task_dict)

    def get_task(self, task_id):
        return self.task_dict[task_id]

    def add_task(self, task):
        if task.task_id in self.task_dict:
            raise ValueError(f"duplicate task_id {task.task_id!r} in DAG {self.dag_id!r}")
        self.task_dict[task.task_id] = task

    def __enter__(self):
        _DAG_STACK.append(self)
        return self

    def __exit__(self, *exc):
        _DAG_STACK.pop()
        return False

    def test(self, *args, **kwargs):
        """Run every task once, in dependency order, in this process (see _run_dag)."""
        return _run_dag(self)

    def cli(self):
        return None


class TaskGroup(DependencyMixin):
    def __init__(self, group_id=None, prefix_group_id=True, parent_group=None, dag=None,
                 default_args=None, tooltip="", **kwargs):
        self.group_id = group_id
        self.prefix_group_id = prefix_group_id
        self.parent = parent_group or (_GROUP_STACK[-1] if _GROUP_STACK else None)
        self.dag = dag or current_dag()
        self.default_args = dict(default_args or {})
        self.children = []
        if self.parent is not None:
            self.parent.children.append(self)

    def prefix(self):
        outer = self.parent.prefix() if self.parent is not None else ""
        if self.group_id and self.prefix_group_id:
            return f"{outer}{self.group_id}."
        return outer

    def tasks(self):
        out = []
        for c in self.children:
            out.extend(c.tasks() if isinstance(c, TaskGroup) else [c])
        return out

    def roots(self):
        mine = self.tasks()
        ids = {t.task_id for t in mine}
        return [t for t in mine if not (t.upstream_task_ids & ids)]

    def leaves(self):
        mine = self.tasks()
        ids = {t.task_id for t in mine}
        return [t for t in mine if not (t.downstream_task_ids & ids)]

    def __enter__(self):
        _GROUP_STACK.append(self)
        return self

    def __exit__(self, *exc):
        _GROUP_STACK.pop()
        return False


class BaseOperator(DependencyMixin):
    template_fields = ()

    def __init__(self, task_id=None, *, dag=None, task_group=None, default_args=None,
                 retries=_UNSET, trigger_rule="all_success", **kwargs):
        if not task_id:
            raise TypeError(f"{type(self).__name__}() needs a task_id")
        self.dag = dag or current_dag()
        group = task_group or (_GROUP_STACK[-1] if _GROUP_STACK else None)
        merged = {}
        if self.dag is not None:
            merged.update(self.dag.default_args)
        g = group
        chain_groups = []
        while g is not None:
            chain_groups.append(g)
            g = g.parent
        for g in reversed(chain_groups):
            merged.update(g.default_args)
        merged.update(default_args or {})
        self.default_args = merged
        self.retries = merged.get("retries", 0) if retries is _UNSET else retries
        self.trigger_rule = str(getattr(trigger_rule, "value", trigger_rule))
        self.kwargs = kwargs
        for k in ("retry_delay", "pool", "queue", "owner", "execution_timeout"):
            setattr(self, k, kwargs.get(k, merged.get(k)))
        self.task_id = (group.prefix() if group is not None else "") + str(task_id)
        self.upstream_task_ids = set()
        self.downstream_task_ids = set()
        if group is not None:
            group.children.append(self)
        if self.dag is not None:
            self.dag.add_task(self)

    @property
    def task_type(self):
        return type(self).__name__

    @property
    def output(self):
        return XComArg(self)

    def execute(self, context):  # replaced by the real operators; never run here
        raise NotImplementedError


class BashOperator(BaseOperator):
    def __init__(self, task_id=None, bash_command=None, env=None, append_env=False, cwd=None,
                 skip_on_exit_code=99, output_encoding="utf-8", **kwargs):
        super().__init__(task_id, **kwargs)
        self.bash_command = bash_command
        self.env = env
        self.append_env = append_env
        self.cwd = cwd
        self.skip_on_exit_code = skip_on_exit_code


class PythonOperator(BaseOperator):
    def __init__(self, task_id=None, python_callable=None, op_args=None, op_kwargs=None,
                 templates_dict=None, show_return_value_in_logs=True, **kwargs):
        if not callable(python_callable):
            raise TypeError("python_callable must be callable")
        super().__init__(task_id, **kwargs)
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})


class BranchPythonOperator(PythonOperator):
    pass


class ShortCircuitOperator(PythonOperator):
    def __init__(self, *args, ignore_downstream_trigger_rules=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.ignore_downstream_trigger_rules = ignore_downstream_trigger_rules


class EmptyOperator(BaseOperator):
    pass


DummyOperator = EmptyOperator


class XComArg(DependencyMixin):
    def __init__(self, operator, key="return_value"):
        self.operator = operator
        self.key = key

    def __getitem__(self, key):
        return XComArg(self.operator, key)

    def set_downstream(self, other, *_a, **_k):
        self.operator.set_downstream(other)

    def set_upstream(self, other, *_a, **_k):
        self.operator.set_upstream(other)

    def map(self, fn):
        return self

    def zip(self, *others, **_k):
        return self


def chain(*tasks):
    for up, down in zip(tasks, tasks[1:]):  # noqa: B905 - any Python
        many_up, many_down = isinstance(up, (list, tuple)), isinstance(down, (list, tuple))
        if many_up and many_down:
            if len(up) != len(down):
                raise ValueError("chain() of two lists needs lists of the same length")
            for a, b in zip(up, down):  # noqa: B905 - any Python
                a.set_downstream(b)
        elif many_up:
            for a in up:
                a.set_downstream(down)
        else:
            up.set_downstream(down)


def cross_downstream(from_tasks, to_tasks):
    for up in from_tasks:
        up.set_downstream(list(to_tasks))


# -- TaskFlow ---------------------------------------------------------------------------
class _DecoratedOperator(BaseOperator):
    def __init__(self, task_id=None, python_callable=None, op_args=(), op_kwargs=None,
                 kind="python", **kwargs):
        super().__init__(task_id, **kwargs)
        self.python_callable = python_callable
        self.decorator_kind = kind
        self.op_args = list(op_args)
        self.op_kwargs = dict(op_kwargs or {})
        self.bash_command = None
        if kind == "bash" and not any(_is_dep(a) for a in [*op_args, *self.op_kwargs.values()]):
            try:  # @task.bash: the function returns the command (Airflow calls it at run time)
                cmd = python_callable(*op_args, **self.op_kwargs)
                self.bash_command = cmd if isinstance(cmd, str) else None
            except Exception:  # noqa: BLE001
                self.bash_command = None
        self.cwd = kwargs.get("cwd")
        self.env = kwargs.get("env")


def _is_dep(x):
    return isinstance(x, (XComArg, BaseOperator))


_OP_KEYS = {"retries", "retry_delay", "trigger_rule", "pool", "queue", "owner",
            "execution_timeout", "default_args", "cwd", "env", "skip_on_exit_code"}


class _Task:
    def __init__(self, fn, kind, kwargs):
        self.function = fn
        self.kind = kind
        self.kwargs = dict(kwargs)
        functools.update_wrapper(self, fn)

    def override(self, **kwargs):
        return _Task(self.function, self.kind, {**self.kwargs, **kwargs})

    def _task_id(self):
        base = self.kwargs.get("task_id") or self.function.__name__
        dag = current_dag()
        prefix = _GROUP_STACK[-1].prefix() if _GROUP_STACK else ""
        if dag is None or prefix + base not in dag.task_dict:
            return base
        n = 1
        while f"{prefix}{base}__{n}" in dag.task_dict:
            n += 1
        return f"{base}__{n}"

    def __call__(self, *args, **kwargs):
        extra = {k: v for k, v in self.kwargs.items() if k != "task_id"}
        op = _DecoratedOperator(self._task_id(), python_callable=self.function, op_args=args,
                                op_kwargs=kwargs, kind=self.kind, **extra)
        for a in [*args, *kwargs.values()]:
            for dep in _items(a):
                if _is_dep(dep):
                    op.set_upstream(dep)
        return XComArg(op)

    def partial(self, **kwargs):
        return _Partial(self, kwargs)

    def expand(self, **kwargs):
        return self(**kwargs)

    def expand_kwargs(self, arg):
        return self(arg)


class _Partial:
    def __init__(self, task, kwargs):
        self.task, self.kwargs = task, kwargs

    def expand(self, **kwargs):
        return self.task(**self.kwargs, **kwargs)

    def expand_kwargs(self, arg):
        return self.task(arg, **self.kwargs)


def _decorator(kind):
    def deco(python_callable=None, **kwargs):
        if callable(python_callable) and not kwargs:
            return _Task(python_callable, kind, {})
        return lambda fn: _Task(fn, kind, kwargs)
    return deco


class _TaskDecorator:
    python = staticmethod(_decorator("python"))
    branch = staticmethod(_decorator("branch"))
    short_circuit = staticmethod(_decorator("short_circuit"))
    bash = staticmethod(_decorator("bash"))
    virtualenv = staticmethod(_decorator("python"))
    external_python = staticmethod(_decorator("python"))
    branch_virtualenv = staticmethod(_decorator("branch"))
    branch_external_python = staticmethod(_decorator("branch"))
    docker = staticmethod(_decorator("other"))
    kubernetes = staticmethod(_decorator("other"))
    sensor = staticmethod(_decorator("other"))
    pyspark = staticmethod(_decorator("other"))

    def __call__(self, python_callable=None, **kwargs):
        return _decorator("python")(python_callable, **kwargs)


task = _TaskDecorator()


def dag(dag_id=None, *args, **kwargs):
    def deco(fn):
        @functools.wraps(fn)
        def factory(*a, **k):
            d = DAG(kwargs.pop("dag_id", None) or (dag_id if isinstance(dag_id, str) else None)
                    or fn.__name__, *args, **kwargs)
            with d:
                fn(*a, **k)
            return d
        return factory
    if callable(dag_id):
        fn, dag_id = dag_id, None
        return deco(fn)
    return deco


def task_group(group_id=None, **kwargs):
    def deco(fn):
        @functools.wraps(fn)
        def make(*a, **k):
            with TaskGroup(kwargs.get("group_id") or (group_id if isinstance(group_id, str)
                                                      else None) or fn.__name__,
                           **{k2: v for k2, v in kwargs.items() if k2 != "group_id"}) as g:
                fn(*a, **k)
            return g
        return make
    if callable(group_id):
        fn, group_id = group_id, None
        return deco(fn)
    return deco


# -- odds and ends DAG files import --------------------------------------------------------
class AirflowException(Exception):
    pass


class AirflowSkipException(AirflowException):
    pass


class AirflowFailException(AirflowException):
    pass


class Param:
    def __init__(self, default=None, *args, **kwargs):
        self.value = default


class Variable:
    @staticmethod
    def get(key, default_var=_UNSET, deserialize_json=False, default=_UNSET):
        value = default if default is not _UNSET else default_var
        if value is _UNSET:
            raise KeyError(f"Variable {key} does not exist")
        return value

    @staticmethod
    def set(*args, **kwargs):
        return None


class Asset:
    def __init__(self, uri="", *args, **kwargs):
        self.uri = uri


Dataset = Asset


class TriggerRule:
    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_SKIPPED = "all_skipped"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"


def get_current_context():
    raise RuntimeError("get_current_context() is only valid while a task runs")


def days_ago(n, hour=0, minute=0, second=0, microsecond=0):
    import datetime

    today = datetime.datetime.now(datetime.timezone.utc).replace(
        hour=hour, minute=minute, second=second, microsecond=microsecond)
    return today - datetime.timedelta(days=n)


# -- dag.test(): one local run, for tests -------------------------------------------------------
class TaskRun:
    """What one task did in a stand-in dag.test(): state, output, XCom return value."""

    def __init__(self, task_id, state, output="", xcom=None, error=None, skipped_by=None):
        self.task_id, self.state, self.output, self.xcom, self.error = \
            task_id, state, output, xcom, error
        self.skipped_by = skipped_by  # the short-circuit or branch that skipped this task

    def __repr__(self):
        return f"TaskRun({self.task_id!r}, {self.state!r})"


def _order(dag):
    done, out = set(), []
    pending = list(dag.task_dict)
    while pending:
        ready = [t for t in pending if dag.task_dict[t].upstream_task_ids <= done]
        if not ready:
            raise ValueError(f"DAG {dag.dag_id!r} has a cycle among {pending}")
        for t in ready:
            out.append(t)
            done.add(t)
            pending.remove(t)
    return out


def _descendants(dag, task_id):
    seen, stack = set(), [task_id]
    while stack:
        for d in dag.task_dict[stack.pop()].downstream_task_ids:
            if d not in seen:
                seen.add(d)
                stack.append(d)
    return seen


def _resolve(value, runs):
    if isinstance(value, XComArg):
        got = runs[value.operator.task_id].xcom
        return got if value.key == "return_value" else (got or {}).get(value.key)
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, runs) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, runs) for k, v in value.items()}
    return value


def _run_bash(t):
    import os
    import subprocess

    env = None
    if t.env is not None:
        env = {**os.environ, **t.env} if t.append_env else dict(t.env)
    limit = float(os.environ.get("MLPIPE_TASK_TIMEOUT_S") or 0) or None  # a gate's drill
    try:
        proc = subprocess.run(["bash", "-c", t.bash_command], cwd=t.cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              stdin=subprocess.DEVNULL, check=False, timeout=limit)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return "failed", out + f"\n[timed out after {limit:g} s]", None
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    skip = t.skip_on_exit_code
    skip = set(skip) if isinstance(skip, (list, tuple, set)) else {skip}
    if proc.returncode in skip:
        return "skipped", proc.stdout, None
    state = "success" if proc.returncode == 0 else "failed"
    return state, proc.stdout, (lines[-1] if lines else None)


def _run_dag(dag, stop=None):
    """Each task once, in dependency order: Bash commands through `bash -c` in their cwd (the
    XCom is the last line printed, as Airflow's BashOperator pushes it), Python callables with
    their XCom arguments. Trigger rule all_success: a task runs only when every upstream task
    succeeded; a short-circuit that returns a falsy value skips everything downstream of it, a
    branch skips the direct downstream tasks it did not name. `stop(task_id)` true: that task
    is not run when its turn comes but recorded as "reached", and what follows it as
    "not_run" (a gate's drill runs a DAG up to a decision). Returns {task_id: TaskRun}."""
    runs = {}
    skipped_by = {}
    for tid in _order(dag):
        t = dag.task_dict[tid]
        ups = [runs[u].state for u in t.upstream_task_ids]
        if tid in skipped_by or "skipped" in ups:
            runs[tid] = TaskRun(tid, "skipped", skipped_by=skipped_by.get(tid))
            continue
        if any(s in ("failed", "upstream_failed") for s in ups):
            runs[tid] = TaskRun(tid, "upstream_failed")
            continue
        if any(s in ("reached", "not_run") for s in ups):
            runs[tid] = TaskRun(tid, "not_run")
            continue
        if stop is not None and stop(tid):
            runs[tid] = TaskRun(tid, "reached")
            continue
        if t.trigger_rule != "all_success":
            raise NotImplementedError(f"stand-in dag.test(): trigger rule {t.trigger_rule!r}")
        try:
            if getattr(t, "bash_command", None) is not None and hasattr(t, "skip_on_exit_code"):
                state, output, xcom = _run_bash(t)
                runs[tid] = TaskRun(tid, state, output, xcom)
                continue
            fn = getattr(t, "python_callable", None)
            if fn is None:
                runs[tid] = TaskRun(tid, "success")  # EmptyOperator
                continue
            value = fn(*_resolve(t.op_args, runs), **_resolve(t.op_kwargs, runs))
        except Exception as e:  # noqa: BLE001 - a failing task is a state, as in Airflow
            runs[tid] = TaskRun(tid, "failed", error=f"{type(e).__name__}: {e}")
            continue
        runs[tid] = TaskRun(tid, "success", xcom=value)
        kind = getattr(t, "decorator_kind", None) or (
            "short_circuit" if isinstance(t, ShortCircuitOperator) else
            "branch" if isinstance(t, BranchPythonOperator) else "python")
        if kind == "short_circuit" and not value:
            for d in _descendants(dag, tid):
                skipped_by[d] = tid
        elif kind == "branch":
            chosen = {value} if isinstance(value, str) else set(value or ())
            for d in t.downstream_task_ids - chosen:
                skipped_by[d] = tid
    return runs
