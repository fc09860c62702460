"""Built-in phase 4 and the deployment gate's measured checks: a passing workspace and, for each
measured check, a failing one."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ml_workspace import built, check, copy
from mutations import passed_report


@pytest.fixture(scope="module")
def ws4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built(tmp_path_factory.mktemp("p4") / "ws", ["phase4"])


def test_builtin_phase4_writes_the_contract(ws4: Path) -> None:
    for rel in ("deployment/api/main.py", "deployment/docker/Dockerfile",
                "deployment/k8s/staging/deployment.yaml", "deployment/k8s/production/hpa.yaml",
                ".github/workflows/model-api.yml", "ab_testing/ab_test.py",
                "deployment-guide.md", "tests/test_api.py"):
        assert (ws4 / rel).is_file(), rel
    assert "Churn" in (ws4 / "deployment-guide.md").read_text()


PHASE4_CHECKS = ["api", "dockerfile", "k8s-manifests", "ci-cd", "ab-testing", "deployment-guide",
                 "api-tests", "api-serves", "dockerfile-structure", "dockerfile-serves",
                 "k8s-structure", "ci-workflow", "bandit", "secrets"]


def test_phase4_gate_passes(passing) -> None:  # type: ignore[no-untyped-def]
    """The phase-4 gate the passing run (tests/mutations.py) passed with, its load included."""
    checks = passed_report(passing, "phase4")
    assert set(PHASE4_CHECKS) | {"api-load"} == set(checks)
    load = checks["api-load"]["evidence"]
    assert load["p95_ms"] < 100 and load["errors"] == 0, load


@pytest.mark.alone
def test_api_holds_an_open_loop_load(ws4: Path) -> None:
    """The load check passes on the generated API at the gate's own target, 1000 req/s
    (MLPIPE_TEST_LOAD_RATE overrides it)."""
    rate = float(os.environ.get("MLPIPE_TEST_LOAD_RATE", "1000"))
    r = check(ws4, "api_load", rate=rate, duration_s=10, warmup_s=3)
    assert r.status == "passed", (r.message, r.evidence)
    assert abs(r.evidence["sent"] - rate * 10) <= 1 and r.evidence["errors"] == 0


def test_slow_predict_fails_the_latency_check(ws4: Path, tmp_path: Path) -> None:
    ws = copy(ws4, tmp_path / "slow")
    main = ws / "deployment" / "api" / "main.py"
    text = main.read_text()
    anchor = "            labels, conf, probs = await state.batcher.predict(body.records)\n"
    assert anchor in text
    text = text.replace(anchor, "            await asyncio.sleep(0.15)  # slowed down for the test\n"
                        + anchor)
    assert "asyncio.sleep(0.15)" in text
    main.write_text(text)
    r = check(ws, "api_load", rate=100, duration_s=2, warmup_s=0.5)
    assert r.status == "failed", r
    assert "p95 not under 100 ms" in r.message
    assert r.evidence["p95_ms"] > 140


def test_api_serves_fails_when_predictions_disagree(ws4: Path, tmp_path: Path) -> None:
    ws = copy(ws4, tmp_path / "wrong")
    main = ws / "deployment" / "api" / "main.py"
    text = main.read_text()
    assert "labels = self.model.classes_[proba.argmax(axis=1)].tolist()" in text
    main.write_text(text.replace("labels = self.model.classes_[proba.argmax(axis=1)].tolist()",
                                 "labels = self.model.classes_[proba.argmin(axis=1)].tolist()"))
    r = check(ws, "api_serves")
    assert r.status == "failed" and "disagrees with the saved model" in r.message, r


def test_api_that_crashes_on_start_fails(ws4: Path, tmp_path: Path) -> None:
    ws = copy(ws4, tmp_path / "crash")
    main = ws / "deployment" / "api" / "main.py"
    main.write_text('raise RuntimeError("broken at import")\n' + main.read_text())
    r = check(ws, "api_serves", test_rows=5, valid_rows=0)
    assert r.status == "failed" and "exited" in r.message, r


def test_dockerfile_running_as_root_fails(ws4: Path, tmp_path: Path) -> None:
    ws = copy(ws4, tmp_path / "root")
    assert check(ws, "dockerfile").status == "passed"
    df = ws / "deployment" / "docker" / "Dockerfile"
    df.write_text(re.sub(r"(?m)^USER .*$", "", df.read_text()))
    r = check(ws, "dockerfile")
    assert r.status == "failed" and "runs as root" in r.message
    df.write_text(df.read_text().replace("FROM python:3.11.9-slim-bookworm",
                                         "FROM python:latest") + "\nUSER app\n")
    r = check(ws, "dockerfile")
    assert r.status == "failed" and "not pinned" in r.message and "root" not in r.message


def test_deployment_without_limits_fails(ws4: Path, tmp_path: Path) -> None:
    import yaml

    ws = copy(ws4, tmp_path / "limits")
    assert check(ws, "k8s_manifests").status == "passed"
    p = ws / "deployment" / "k8s" / "production" / "deployment.yaml"
    doc = yaml.safe_load(p.read_text())
    del doc["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    del doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    p.write_text(yaml.safe_dump(doc))
    r = check(ws, "k8s_manifests")
    assert r.status == "failed"
    assert "no cpu+memory limits" in r.message and "readinessProbe" in r.message


def test_hard_coded_api_key_fails_the_secret_scan(ws4: Path, tmp_path: Path) -> None:
    ws = copy(ws4, tmp_path / "key")
    assert check(ws, "secrets").status == "passed"
    (ws / "deployment" / "api" / "settings.py").write_text(
        'API_KEY = "sk-' + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4" + '"\n')
    r = check(ws, "secrets")
    assert r.status == "failed" and "deployment/api/settings.py:1" in r.message


def test_bandit_high_severity_finding_fails(ws4: Path, tmp_path: Path) -> None:
    ws = copy(ws4, tmp_path / "bandit")
    (ws / "deployment" / "api" / "admin.py").write_text(
        "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n")
    r = check(ws, "bandit", paths=["deployment"])
    assert r.status == "failed" and "B602" in r.message, r


@pytest.mark.parametrize("phase", ["phase4", "phase5", "phase6"])
def test_builtin_phase_without_a_model_is_one_line_exit_2(tmp_path: Path, phase: str) -> None:
    import json
    import subprocess
    import sys

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "ml-spec.yaml").write_text("problem_type: regression\ntarget: y\n")
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"phase": phase, "workspace": str(ws), "context": {}}))
    res = subprocess.run([sys.executable, "-m", "mlpipe_flow.builtin", str(task)], cwd=ws,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 2
    assert res.stdout.strip() == ("mlpipe-builtin: error: artifacts/model_meta.json is missing: "
                                  "run phase3 first"), res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in ws.iterdir()) == ["ml-spec.yaml"]


# --- the parsers behind the container and CI checks (no process started) ----------------------

def test_dockerfile_parse_joins_continuations_and_reads_heredocs() -> None:
    from mlpipe_flow.checks.dockerfile_build import parse

    ins = parse("FROM python:3.11-slim AS base\n# comment\nRUN a \\\n  && b\n"
                "COPY <<EOF /app/x.txt\nhello\nEOF\nCMD [\"python\"]\n")
    assert [i.word for i in ins] == ["FROM", "RUN", "COPY", "CMD"]
    assert ins[1].args == "a    && b" or "a" in ins[1].args and "&& b" in ins[1].args
    assert ins[2].heredocs == [("EOF", "hello\n")]


def test_dockerignore_follows_dockers_rules(tmp_path: Path) -> None:
    from mlpipe_flow.checks.dockerfile_build import Context

    (tmp_path / ".dockerignore").write_text("data/\n**/*.log\n!keep.log\nartifacts\n")
    ctx = Context(tmp_path)
    assert ctx.ignored("data/splits/test.csv") and ctx.ignored("a/b/run.log")
    assert not ctx.ignored("keep.log") and ctx.ignored("artifacts/model.joblib")
    assert not ctx.ignored("deployment/api/main.py")


@pytest.mark.parametrize(("argv", "port", "host"), [
    (["uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8080"], "8080", "0.0.0.0"),
    (["uvicorn", "app:app"], "8000", "127.0.0.1"),
    (["gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-b", "0.0.0.0:9000", "a:b"], "9000",
     "0.0.0.0"),
    (["/bin/sh", "-c", "exec uvicorn a:b --host=0.0.0.0 --port=7000"], "7000", "0.0.0.0"),
    (["python", "-m", "http.server", "8001"], "8001", None),
])
def test_listen_port_and_bind_host(argv: list[str], port: str, host: str | None) -> None:
    from mlpipe_flow.checks.image_run import bind_host, listen_port

    assert listen_port(argv, ["8000"]) == port
    assert bind_host(argv) == host


def test_ci_commands_split_and_see_swallowed_failures() -> None:
    from mlpipe_flow.checks.ci_checks import commands

    got = commands("PYTHONPATH=. pytest -q tests || true\necho done && "
                   "docker build -t x:${{ github.sha }} .\n")
    assert [c.words[0] for c in got] == ["pytest", "echo", "docker"]
    assert got[0].swallowed and not got[2].swallowed
    assert got[2].words == ["docker", "build", "-t", "x:GITHUB_EXPRESSION", "."]


def test_secret_patterns_without_word_boundaries() -> None:
    from mlpipe_flow.checks.security_checks import looks_secret, scan_source

    assert looks_secret("Zq8vR2mK7xT4bN9wE3hY6jL1pC5sD0fG8aU2iO4e")
    assert not looks_secret("${DB_PASSWORD}") and not looks_secret("changeme")
    found = scan_source("import pickle as p\nx = p.loads(b)\ne = eval\nimport yaml\n"
                        "yaml.load(s)\nyaml.load(s, Loader=yaml.SafeLoader)\n", "m.py")
    assert [f.split(" ", 1)[1] for f in found] == ["calls pickle.loads", "uses eval",
                                                   "calls yaml.load without SafeLoader"]
