"""The DAG checks load a DAG file the way Airflow does (here with mlpipe's recording stand-in
of Airflow's API) and judge what the import built: real edges only, tasks that run workspace
code, Airflow 3's `schedule`. Small hand-made projects in tmp_path, one DAG file each."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from mlpipe_flow.checks import CHECKS, CheckContext
from mlpipe_flow.models import CheckResult

HEAD = '''
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator

PROJECT = Path(__file__).resolve().parents[1]
ARGS = {"retries": 2, "retry_delay": timedelta(minutes=5)}
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    ws = tmp_path / "proj"
    (ws / "pipeline").mkdir(parents=True)
    (ws / "pipeline" / "__init__.py").write_text("")
    (ws / "pipeline" / "steps.py").write_text(textwrap.dedent('''
        import json
        from pathlib import Path

        def ingest():
            rows = Path("data.csv").read_text().splitlines()
            Path("ingested.json").write_text(json.dumps(rows))

        def validate():
            rows = json.loads(Path("ingested.json").read_text())
            if not rows:
                raise ValueError("no rows")

        def features():
            rows = json.loads(Path("ingested.json").read_text())
            Path("features.json").write_text(json.dumps([r.upper() for r in rows]))

        def stub():
            print("pretending")

        if __name__ == "__main__":
            ingest()
        '''))
    (ws / "scripts").mkdir()
    (ws / "scripts" / "validate.py").write_text(
        "from pipeline.steps import validate\n\nvalidate()\n")
    (ws / "scripts" / "noop.py").write_text("print('validated')\n")
    (ws / "airflow_dags").mkdir()
    (ws / "ml-spec.yaml").write_text("retraining:\n  schedule: 0 2 * * 1\n")
    return ws


def judge(ws: Path, body: str, kind: str = "dag_structure", **params: object) -> CheckResult:
    rel = "airflow_dags/continuous_training.py" if kind == "dag_parses" else \
        "airflow_dags/data_pipeline.py"
    (ws / rel).write_text(HEAD + textwrap.dedent(body))
    k = CHECKS[kind]
    ctx = CheckContext(workspace=ws, phase="test", timeout_s=60, python=sys.executable,
                       scratch=ws.parent / f"scratch-{len(list(ws.parent.iterdir()))}")
    ctx.scratch.mkdir()  # type: ignore[union-attr]
    return k.run(ctx, k.params(**{"path": rel, **params}))


BASH = '''
with DAG("pipe", schedule="0 2 * * *", start_date=datetime(2024, 1, 1), default_args=ARGS) as dag:
    ingest = BashOperator(task_id="ingest_data", cwd=str(PROJECT), bash_command={a!r})
    validate = BashOperator(task_id="validate_data", cwd=str(PROJECT), bash_command={b!r})
    features = BashOperator(task_id="build_features", cwd=str(PROJECT), bash_command={c!r})
    {chain}
'''


def bash(a: str = "python -m pipeline.steps", b: str = "python scripts/validate.py",
         c: str = "python -m pipeline.steps --features",
         chain: str = "ingest >> validate >> features") -> str:
    return BASH.format(a=a, b=b, c=c, chain=chain)


def test_bash_tasks_running_project_code_pass(project: Path) -> None:
    r = judge(project, bash())
    assert r.status == "passed", r
    assert r.evidence["path"] == ["ingest_data", "validate_data", "build_features"]
    assert r.evidence["schedule"] == "0 2 * * *" and r.evidence["loader"] == "stand-in"
    assert r.evidence["edges"] == ["ingest_data >> validate_data", "validate_data >> build_features"]


@pytest.mark.parametrize(("chain", "ok"), [
    ("ingest >> [validate] >> features", True),
    ("features << validate << ingest", True),
    ("ingest.set_downstream(validate); validate.set_downstream(features)", True),
    ("features.set_upstream(validate); validate.set_upstream(ingest)", True),
    ("from airflow.models.baseoperator import chain; chain(ingest, validate, features)", True),
    ("from airflow.utils.edgemodifier import Label; ingest >> Label('ok') >> validate >> features",
     True),
    ("if False:\n        ingest >> validate >> features", False),
    ("def later():\n        ingest >> validate >> features", False),
    ("ingest >> features >> validate", False),
])
def test_only_edges_the_import_creates_count(project: Path, chain: str, ok: bool) -> None:
    r = judge(project, bash(chain=chain))
    assert (r.status == "passed") is ok, r
    if not ok:
        assert "no dependency path" in r.message


@pytest.mark.parametrize(("field", "command", "why"), [
    ("a", "echo ingesting", "runs no workspace code"),
    ("b", "sleep 5", "runs no workspace code"),
    ("b", "python scripts/validate.py || true", "swallows"),
    ("b", "python scripts/validate.py; echo done", "ignores the exit status"),
    ("b", "python scripts/validate.py | tee log.txt", "without set -o pipefail"),
    ("b", "python scripts/noop.py", "does nothing but print"),
    ("b", "python scripts/missing.py", "does not exist"),
    ("b", "python -m pipeline.nothing", "no module of the project"),
    ("b", "python -c 'print(1)'", "inline python"),
    ("b", "cd /nonexistent && python scripts/validate.py", "not a folder of this project"),
])
def test_bash_tasks_that_run_nothing_real_fail(project: Path, field: str, command: str,
                                               why: str) -> None:
    r = judge(project, bash(**{field: command}))
    assert r.status == "failed" and why in r.message, r


@pytest.mark.parametrize("command", [
    "set -e; python scripts/validate.py; echo done",
    "set -o pipefail; python scripts/validate.py | tee log.txt",
    "python scripts/validate.py; case $? in 0) exit 99;; 1) exit 0;; *) exit 1;; esac",
    "python scripts/validate.py || exit 1",
    "cd scripts && cd .. && python scripts/validate.py --strict > out.log 2>&1",
    "PYTHONPATH=. python3 -u scripts/validate.py",
])
def test_bash_tasks_that_keep_failures_pass(project: Path, command: str) -> None:
    r = judge(project, bash(b=command))
    assert r.status == "passed", r


def test_a_bash_task_without_cwd_runs_in_a_temporary_folder(project: Path) -> None:
    body = bash().replace('task_id="validate_data", cwd=str(PROJECT), ', 'task_id="validate_data", ')
    r = judge(project, body)
    assert r.status == "failed" and "no working directory" in r.message, r
    body = body.replace("bash_command='python scripts/validate.py'",
                        'bash_command=f"cd {PROJECT} && python scripts/validate.py"')
    assert judge(project, body).status == "passed"


def test_python_callables_must_reach_project_code(project: Path) -> None:
    body = '''
    sys.path.insert(0, str(PROJECT))
    from pipeline import steps
    from pipeline.steps import ingest as do_ingest

    def validate_wrapper():
        from pipeline.steps import validate
        validate()

    with DAG("pipe", schedule="@daily", start_date=datetime(2024, 1, 1), default_args=ARGS):
        a = PythonOperator(task_id="ingest", python_callable=do_ingest)
        b = PythonOperator(task_id="validate", python_callable=validate_wrapper)
        c = PythonOperator(task_id="features", python_callable=lambda: steps.features())
        a >> b >> c
    '''
    assert judge(project, body).status == "passed"
    stub = body.replace("python_callable=do_ingest", "python_callable=steps.stub")
    r = judge(project, stub)
    assert r.status == "failed" and "'ingest'" in r.message and "does real work" in r.message, r
    local = body.replace("python_callable=do_ingest", "python_callable=lambda: print('hi')")
    assert judge(project, local).status == "failed"


def test_project_imports_fail_without_the_project_on_sys_path(project: Path) -> None:
    body = '''
    from pipeline.steps import ingest, validate, features

    with DAG("pipe", schedule="@daily", start_date=datetime(2024, 1, 1), default_args=ARGS):
        a = PythonOperator(task_id="ingest", python_callable=ingest)
        b = PythonOperator(task_id="validate", python_callable=validate)
        c = PythonOperator(task_id="features", python_callable=features)
        a >> b >> c
    '''
    r = judge(project, body)
    assert r.status == "failed" and "No module named 'pipeline'" in r.message, r


def test_taskflow_and_task_groups(project: Path) -> None:
    body = '''
    sys.path.insert(0, str(PROJECT))
    from airflow.decorators import dag, task, task_group
    from airflow.operators.empty import EmptyOperator
    from pipeline import steps

    @dag(schedule="0 3 * * *", start_date=datetime(2024, 1, 1), default_args=ARGS)
    def pipeline():
        start = EmptyOperator(task_id="start")

        @task
        def ingest():
            steps.ingest()
            return "ok"

        @task(retries=3)
        def validate(flag):
            steps.validate()

        @task_group
        def feature_group():
            @task
            def features():
                steps.features()
            features()

        start >> validate(ingest()) >> feature_group()

    pipeline()
    '''
    r = judge(project, body)
    assert r.status == "passed", r
    assert r.evidence["path"] == ["ingest", "validate", "feature_group.features"], r.evidence
    assert r.evidence["retries"]["validate"] == 3
    assert judge(project, body.replace("    pipeline()\n", "")).status == "failed"


def test_empty_operators_and_missing_retries(project: Path) -> None:
    body = bash().replace('BashOperator(task_id="validate_data", cwd=str(PROJECT), '
                          "bash_command='python scripts/validate.py')",
                          'EmptyOperator(task_id="validate_data")')
    body = "from airflow.operators.empty import EmptyOperator\n" + body
    r = judge(project, body)
    assert r.status == "failed" and "EmptyOperator: it runs nothing" in r.message, r
    r = judge(project, bash().replace("default_args=ARGS", "default_args={}"))
    assert r.status == "failed" and "no retries" in r.message, r


def test_schedule_interval_and_missing_schedule_are_flagged(project: Path) -> None:
    r = judge(project, bash().replace('schedule="0 2 * * *"', 'schedule_interval="0 2 * * *"'))
    assert r.status == "failed" and "schedule_interval" in r.message, r
    r = judge(project, bash().replace('schedule="0 2 * * *", ', ""))
    assert r.status == "failed" and "no literal schedule" in r.message, r


def test_import_errors_and_stand_in_gaps(project: Path) -> None:
    r = judge(project, bash() + "\nraise RuntimeError('broken at import')\n")
    assert r.status == "failed" and "broken at import" in r.message, r
    r = judge(project, "from airflow.providers.amazon.aws.operators.s3 import S3Operator\n"
              + bash())
    assert r.status == "error" and "install apache-airflow" in r.message, r


def test_dag_parses_checks_the_spec_schedule_and_trigger_rules(project: Path) -> None:
    body = '''
    with DAG("ct", schedule="0 2 * * 1", start_date=datetime(2024, 1, 1), default_args=ARGS):
        check = BashOperator(task_id="check_drift", cwd=str(PROJECT),
                             bash_command="python scripts/validate.py")
        retrain = BashOperator(task_id="retrain", cwd=str(PROJECT),
                               bash_command="python -m pipeline.steps")
        canary = BashOperator(task_id="canary", cwd=str(PROJECT),
                              bash_command="python -m pipeline.steps --canary")
        check >> retrain >> canary
    '''
    assert judge(project, body, "dag_parses").status == "passed"
    r = judge(project, body.replace('"0 2 * * 1"', '"@daily"'), "dag_parses")
    assert r.status == "failed" and "differs from ml-spec.yaml" in r.message, r
    r = judge(project, body.replace('task_id="retrain",', 'task_id="retrain", '
                                    'trigger_rule="all_done",'), "dag_parses")
    assert r.status == "failed" and "trigger_rule 'all_done'" in r.message, r


def test_cycles_repeated_steps_help_and_hidden_stubs_fail(project: Path) -> None:
    r = judge(project, bash(chain="ingest >> validate >> features >> ingest"))
    assert r.status == "failed" and "cycle" in r.message.lower(), r
    r = judge(project, bash(c="python -m pipeline.steps"))
    assert r.status == "failed" and "run the same thing" in r.message, r
    r = judge(project, bash(b="python scripts/validate.py --help"))
    assert r.status == "failed" and "help" in r.message, r
    (project / "scripts" / "hollow.py").write_text(
        "def main():\n    print('validated')\n\n\nif __name__ == '__main__':\n    main()\n")
    r = judge(project, bash(b="python scripts/hollow.py"))
    assert r.status == "failed" and "does nothing but print" in r.message, r


def test_python_callables_that_swallow_failures_fail(project: Path) -> None:
    body = '''
    sys.path.insert(0, str(PROJECT))
    from pipeline import steps

    def validate_quietly():
        try:
            steps.validate()
        except Exception as e:
            print("validation failed, carrying on", e)

    def validate_strictly():
        try:
            steps.validate()
        except Exception:
            print("validation failed")
            raise

    with DAG("pipe", schedule="@daily", start_date=datetime(2024, 1, 1), default_args=ARGS):
        a = PythonOperator(task_id="ingest", python_callable=steps.ingest)
        b = PythonOperator(task_id="validate", python_callable=validate_quietly)
        c = PythonOperator(task_id="features", python_callable=steps.features)
        a >> b >> c
    '''
    r = judge(project, body)
    assert r.status == "failed" and "swallows failures" in r.message, r
    assert judge(project, body.replace("=validate_quietly", "=validate_strictly")).status == \
        "passed"


def test_the_stand_in_runs_a_dag_once_for_tests(tmp_path: Path) -> None:
    """The stand-in's dag.test() (what the generated DAGs' tests use without Airflow): Bash
    commands in their cwd with the last line as XCom, short-circuits skipping everything after
    them, a failure leaving the tasks after it upstream_failed."""
    import subprocess

    from mlpipe_flow.checks.dag_checks import STANDIN

    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "d.py").write_text(textwrap.dedent('''
        from datetime import datetime
        from pathlib import Path
        from airflow.sdk import DAG, task
        from airflow.providers.standard.operators.bash import BashOperator

        HERE = str(Path(__file__).parent)

        @task.short_circuit
        def go_on(line):
            return line.strip() == "yes"

        with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
            say = BashOperator(task_id="say", cwd=HERE, bash_command="cat answer.txt")
            after = BashOperator(task_id="after", cwd=HERE, bash_command="echo ran > ran.txt")
            boom = BashOperator(task_id="boom", bash_command="exit 3")
            never = BashOperator(task_id="never", bash_command="echo no")
            skip = BashOperator(task_id="skip", bash_command="exit 99")
            go_on(say.output) >> after
            boom >> never

        if __name__ == "__main__":
            import json
            print(json.dumps({t: r.state for t, r in dag.test().items()}))
        '''))
    env = {**os.environ, "PYTHONPATH": str(STANDIN)}

    def run(answer: str) -> dict[str, str]:
        (tmp_path / "dags" / "answer.txt").write_text(f"chatter\n{answer}\n")
        res = subprocess.run([sys.executable, str(tmp_path / "dags" / "d.py")], env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout.splitlines()[-1])

    got = run("no")
    assert got == {"say": "success", "go_on": "success", "after": "skipped", "boom": "failed",
                   "never": "upstream_failed", "skip": "skipped"}, got
    assert not (tmp_path / "dags" / "ran.txt").exists()
    assert run("yes")["after"] == "success" and (tmp_path / "dags" / "ran.txt").is_file()


def test_the_loader_runs_a_dag_up_to_a_task(tmp_path: Path) -> None:
    """`dag_loader.py --run CHECK STOP` (the phase-6 drift drill): the stand-in's dag.test() up
    to the first task whose id holds STOP, which is recorded as reached and not run; what
    follows it is not run; a short-circuit's skips name it; a real Airflow is never used."""
    import subprocess

    from mlpipe_flow.checks.dag_checks import LOADER, STANDIN

    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "ct.py").write_text(textwrap.dedent('''
        from datetime import datetime
        from pathlib import Path
        from airflow.sdk import DAG, task
        from airflow.providers.standard.operators.bash import BashOperator

        HERE = str(Path(__file__).parent)

        @task.short_circuit
        def decide(line):
            return line.strip() == "drift"

        with DAG("ct", schedule="@weekly", start_date=datetime(2024, 1, 1)) as dag:
            check = BashOperator(task_id="check_drift", cwd=HERE, bash_command="cat verdict.txt")
            prep = BashOperator(task_id="prepare", cwd=HERE, bash_command="touch prepared")
            retrain = BashOperator(task_id="retrain", cwd=HERE, bash_command="touch retrained")
            canary = BashOperator(task_id="canary", cwd=HERE, bash_command="touch canary")
            decide(check.output) >> prep >> retrain >> canary
        '''))

    def run(verdict: str) -> dict:
        (tmp_path / "dags" / "verdict.txt").write_text(f"testing...\n{verdict}\n")
        out = tmp_path / f"run-{verdict}.json"
        res = subprocess.run([sys.executable, str(LOADER), str(tmp_path / "dags" / "ct.py"),
                              str(STANDIN), str(out), "--run", "check", "retrain"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        return json.loads(out.read_text())

    calm = run("no_drift")
    assert calm["error"] is None and calm["check"] == "check_drift" and calm["retrain"] == "retrain"
    assert calm["brief"] == {"check_drift": "success", "decide": "success",
                             "prepare": "skipped (by decide)", "retrain": "skipped (by decide)",
                             "canary": "skipped (by decide)"}, calm["brief"]
    assert calm["states"]["check_drift"]["last"] == "no_drift"
    shifted = run("drift")
    assert shifted["brief"] == {"check_drift": "success", "decide": "success",
                                "prepare": "success", "retrain": "reached",
                                "canary": "not_run"}, shifted["brief"]
    assert (tmp_path / "dags" / "prepared").is_file()
    assert not (tmp_path / "dags" / "retrained").exists()
    assert not (tmp_path / "dags" / "canary").exists()
