"""The generated project's continuous-training loop closes (issue 11), run for real:

- the drift job reads the inputs the API logs (data/production/inputs-*.jsonl): no folder is "no
  production data" (exit 3, status no_data), not "no drift"; a clean log is quiet; a shifted one
  is flagged;
- labelled feedback (data/feedback/*.csv) is merged into the training set retraining uses;
- the continuous-training DAG runs (Airflow's own `dag.test()` when Airflow is installed, else
  the recording stand-in's local run): drift decides, so retraining is skipped on a clean log and
  on no data, and runs on a shifted one; a promoted version goes to the canary, which rolls back
  when it cannot observe the new version (no Prometheus);
- the canary's router really shifts traffic between two running instances.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import REPO
from ml_workspace import copy

STANDIN = REPO / "src" / "mlpipe_flow" / "checks" / "airflow_standin"
DAG = "airflow_dags/continuous_training.py"
AIRFLOW = find_spec("airflow") is not None
RUNNERS = [pytest.param("airflow", marks=pytest.mark.skipif(
               not AIRFLOW, reason="apache-airflow is not installed in this interpreter "
               "(pip install 'mlpipe[airflow]' runs this test with Airflow's own dag.test())")),
           "stand-in"]

# runs the DAG file once, the way `python airflow_dags/continuous_training.py` does, and prints
# {task_id: state}: Airflow's DagRun when Airflow is importable, else the stand-in's run
RUN_DAG = r'''
import importlib.util, json, sys
dag_file, standin = sys.argv[1], sys.argv[2]
try:
    import airflow  # noqa: F401
    real = True
except ImportError:
    sys.path.append(standin)
    real = False
spec = importlib.util.spec_from_file_location("dag_under_test", dag_file)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
run = module.dag.test()
if real:
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}
else:
    states = {t: r.state for t, r in run.items()}
print("DAG-STATES " + json.dumps(states))
'''


@pytest.fixture(scope="module")
def ws6(telco_ct: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's Telco workspace built through phase 6 by the built-in agent."""
    return copy(telco_ct, tmp_path_factory.mktemp("ct") / "ws")


def unseen(ws: Path) -> pd.DataFrame:
    """Rows the model did not train on (valid + test splits)."""
    return pd.concat([pd.read_csv(ws / "data/splits/valid.csv"),
                      pd.read_csv(ws / "data/splits/test.csv")], ignore_index=True)


def log_inputs(ws: Path, frame: pd.DataFrame, features: list[str], extra: list[str] = ()) -> Path:
    """The API's input log as issue 11 specifies it: JSONL, feature values plus `ts`; one line
    cut short (a restart mid-write) to be skipped."""
    folder = ws / "data" / "production"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "inputs-20261201.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i, row in enumerate(frame[[*extra, *features]].to_dict("records")):
            clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            f.write(json.dumps({**clean, "ts": f"2026-12-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z"})
                    + "\n")
        f.write('{"tenure": 3, "Contr')
    return path


def meta(ws: Path) -> dict[str, Any]:
    return json.loads((ws / "artifacts/model_meta.json").read_text())


def shifted(ws: Path, frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    m = meta(ws)
    train = pd.read_csv(ws / "data/splits/train.csv")
    col = next(c for c in m["feature_columns"] if train[c].dtype.kind == "f"
               and train[c].nunique() > 20)
    out = frame.copy()
    out[col] = out[col] + 1.0 * train[col].std()
    return out, col


def drift_job(ws: Path) -> tuple[int, dict[str, Any]]:
    res = subprocess.run([sys.executable, "monitoring/drift_detection/detect_drift.py"], cwd=ws,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode in (0, 1, 3), res.stderr[-2000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    saved = json.loads((ws / "monitoring/drift_detection/latest_report.json").read_text())
    assert saved == report
    return res.returncode, report


def test_the_drift_job_reads_the_logged_inputs(ws6: Path, tmp_path: Path) -> None:
    ws = copy(ws6, tmp_path / "ws")
    features = meta(ws)["feature_columns"]
    code, report = drift_job(ws)
    assert code == 3 and report["status"] == "no_data" and report["drift_detected"] is None
    assert report["production"]["files"] == 0

    clean = unseen(ws)
    log_inputs(ws, clean, features)
    code, report = drift_job(ws)
    assert (code, report["status"], report["drift_detected"]) == (0, "no_drift", False), report
    assert report["production"] == {"folder": "data/production", "files": 1,
                                    "rows": len(clean), "skipped_lines": 1}

    moved, col = shifted(ws, clean)
    log_inputs(ws, moved, features)
    code, report = drift_job(ws)
    assert (code, report["status"]) == (1, "drift") and col in report["drifted_features"], report
    # the chart of the per-feature effects, beside the report: a real PNG, redrawn each run
    assert report["plot"] == "monitoring/drift_detection/latest_drift.png"
    png = (ws / report["plot"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


def test_labelled_feedback_joins_the_training_set(ws6: Path, tmp_path: Path) -> None:
    """Feedback by id (features looked up in the logged inputs, else the ingested data) and as
    whole rows; rows whose id is in the hold-out split stay out of training, ids found nowhere
    are counted."""
    ws = copy(ws6, tmp_path / "ws")
    m = meta(ws)
    features, target = m["feature_columns"], m["target"]
    valid = pd.read_csv(ws / "data/splits/valid.csv")
    test = pd.read_csv(ws / "data/splits/test.csv")
    log_inputs(ws, valid.iloc[:100], features, extra=["customerID"])
    (ws / "data/feedback").mkdir(parents=True)
    by_id = pd.concat([valid.iloc[:100], test.iloc[:7]])[["customerID", target]]
    nobody = pd.DataFrame({"customerID": ["no-such-customer"], target: [by_id[target].iloc[0]]})
    pd.concat([by_id, nobody]).to_csv(ws / "data/feedback/crm-2026-12.csv", index=False)
    valid.iloc[100:150][[*features, target]].to_csv(ws / "data/feedback/rows.csv", index=False)
    res = subprocess.run([sys.executable, "monitoring/drift_detection/production_data.py"],
                         cwd=ws, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    train = pd.read_csv(ws / "data/splits/train.csv")
    assert got["out"] == "data/retrain/train.csv" and got["feedback"]["unmatched_ids"] == 1
    # the 7 hold-out customers' features come from data/interim/dataset.csv; they stay out
    assert (got["train_rows"], got["feedback_rows"], got["held_out"]) == (len(train), 150, 7)
    merged = pd.read_csv(ws / "data/retrain/train.csv")
    assert len(merged) == len(train) + 150 and merged[target].notna().all()
    assert set(valid.iloc[:100]["customerID"]) <= set(merged["customerID"])
    assert not set(test["customerID"]) & set(merged["customerID"])

    (ws / "data/feedback/bad.csv").write_text("customerID\nx1\n")
    res = subprocess.run([sys.executable, "monitoring/drift_detection/production_data.py"],
                         cwd=ws, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "no target column" in res.stderr, res.stderr


def run_dag(ws: Path, runner: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "PROMETHEUS_URL": "http://127.0.0.1:9",  # nothing listens: the canary sees no data
           "CANARY_SOAK_S": "0",
           "AIRFLOW_HOME": str(ws.parent / "airflow-home"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    for k in ("CANARY_ROUTER_URL", "CANARY_INGRESS", "ML_PROJECT_DIR"):
        env.pop(k, None)
    if runner == "airflow":
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                       capture_output=True, timeout=300)
    script = ws.parent / "run_dag.py"
    script.write_text(RUN_DAG)
    res = subprocess.run([sys.executable, str(script), str(ws / DAG), str(STANDIN)], cwd=ws,
                         env=env, capture_output=True, text=True, timeout=600)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("DAG-STATES ")), None)
    assert line is not None, (res.returncode, res.stdout[-3000:], res.stderr[-3000:])
    return json.loads(line.removeprefix("DAG-STATES "))


def decisions(ws: Path) -> list[dict[str, Any]]:
    p = ws / "registry/decisions.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.is_file() else []


AFTER_GATE = ("training_set", "retrain", "promoted", "canary_rollout")


@pytest.mark.parametrize("runner", RUNNERS)
def test_drift_decides_whether_the_dag_retrains(ws6: Path, tmp_path: Path, runner: str) -> None:
    ws = copy(ws6, tmp_path / "ws")
    features = meta(ws)["feature_columns"]
    before = decisions(ws)
    champion = json.loads((ws / "registry/champion.json").read_text())["version"]

    states = run_dag(ws, runner)  # no production data: skipped, and the report says why
    assert states["check_drift"] == "success" and states["drift_decides"] == "success", states
    assert {states[t] for t in AFTER_GATE} == {"skipped"}, states
    report = json.loads((ws / "monitoring/drift_detection/latest_report.json").read_text())
    assert report["status"] == "no_data"

    clean = unseen(ws)
    log_inputs(ws, clean, features)
    states = run_dag(ws, runner)
    assert {states[t] for t in AFTER_GATE} == {"skipped"}, states
    assert decisions(ws) == before  # nothing retrained

    moved, _ = shifted(ws, clean)
    log_inputs(ws, moved, features)
    valid = pd.read_csv(ws / "data/splits/valid.csv")
    (ws / "data/feedback").mkdir(parents=True)
    valid.iloc[:80][[*features, meta(ws)["target"]]].to_csv(ws / "data/feedback/l.csv",
                                                            index=False)
    states = run_dag(ws, runner)
    assert states["training_set"] == "success" and states["retrain"] == "success", states
    new = decisions(ws)[len(before):]
    retrain = new[0]
    assert retrain["decision"] in ("promote", "keep_champion")
    assert retrain["rows"] == len(pd.read_csv(ws / "data/splits/train.csv")) + 80
    if retrain["decision"] == "keep_champion":
        assert (states["promoted"], states["canary_rollout"]) == ("success", "skipped"), states
        return
    # promoted: the canary ran, saw no Prometheus (no data), rolled back and failed its task
    assert states["canary_rollout"] == "failed", states
    assert new[-1]["decision"] == "canary_rolled_back" and new[-1]["rollback_ok"] is True
    assert json.loads((ws / "registry/champion.json").read_text())["version"] == champion


def test_a_retry_after_a_rollback_rolls_back_nothing(ws6: Path, tmp_path: Path) -> None:
    """Airflow retries a failed canary task: the second run must not roll back again."""
    ws = copy(ws6, tmp_path / "ws")
    champion = json.loads((ws / "registry/champion.json").read_text())["version"]
    res = subprocess.run([sys.executable, "continuous_training/retrain.py", "--force-promote"],
                         cwd=ws, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    canary = [sys.executable, "canary_deployment/canary.py", "--prometheus",
              "http://127.0.0.1:9", "--soak-s", "0"]
    for _ in range(2):
        res = subprocess.run(canary, cwd=ws, capture_output=True, text=True, timeout=120)
        assert res.returncode == 1, (res.stdout[-2000:], res.stderr[-2000:])
        assert json.loads((ws / "registry/champion.json").read_text())["version"] == champion
    assert "already rolled back" in res.stdout


def test_the_image_ships_the_champion(ws6: Path, tmp_path: Path) -> None:
    """The Dockerfile copies registry/: the image's API loads the registry's exported champion,
    as the project's API does, not the phase-3 artifacts/ (issue 11)."""
    from mlpipe_flow.checks.dockerfile_build import assemble

    image = assemble(ws6 / "deployment/docker/Dockerfile", ws6, tmp_path / "image")
    app = image.host("/app")
    champion = json.loads((ws6 / "registry/champion.json").read_text())
    assert json.loads((app / "registry/champion.json").read_text()) == champion
    probe = "from deployment.api.main import model_dir; print(model_dir())"
    res = subprocess.run([sys.executable, "-c", probe], cwd=app, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(app)}, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    served = Path(res.stdout.strip().splitlines()[-1])
    assert served == app / "registry" / "versions" / str(champion["version"])
    assert (served / "model.joblib").is_file() and (served / "model_meta.json").is_file()


# -- the router -----------------------------------------------------------------------------
def canary_module(ws: Path) -> Any:
    """The workspace's canary_deployment/canary.py, imported (it imports the registry)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"canary_of_{ws.name}",
                                                  ws / "canary_deployment/canary.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    sys.path.insert(0, str(ws))
    try:
        spec.loader.exec_module(module)
    finally:
        # canary.py puts its project first on sys.path too: left there, every later import in
        # this worker (a spawned child re-importing a test module's `conftest`) finds the
        # workspace's files first
        sys.path[:] = saved
    return module


class Named(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = json.dumps({"instance": self.server.name, "echo": body.decode()}).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


def instance(name: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Named)
    server.name = name  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_router_shifts_real_traffic(ws6: Path, tmp_path: Path) -> None:
    import httpx

    from mlpipe_flow.proc import free_port

    stable, canary = instance("stable"), instance("canary")
    port = free_port()
    router = subprocess.Popen(
        [sys.executable, str(ws6 / "canary_deployment/router.py"),
         "--stable", f"http://127.0.0.1:{stable.server_port}",
         "--canary", f"http://127.0.0.1:{canary.server_port}", "--port", str(port),
         "--state", str(tmp_path / "weight.json")], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        mod = canary_module(ws6)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/-/canary-weight", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and router.poll() is None, \
                    router.stderr.read() if router.stderr else ""
                time.sleep(0.1)
        set_weight = mod.router_weight(url)
        with httpx.Client(timeout=10) as client:
            for weight, low, high in ((0, 0, 0), (25, 0.17, 0.33), (100, 1, 1)):
                set_weight(weight)
                hits = [client.post(f"{url}/predict", content=b'{"x": 1}') for _ in range(300)]
                assert all(h.status_code == 200 and h.json()["echo"] == '{"x": 1}' for h in hits)
                share = sum(h.json()["instance"] == "canary" for h in hits) / len(hits)
                assert low <= share <= high, (weight, share)
                assert {h.headers["x-canary-track"] for h in hits} <= {"stable", "canary"}
        assert json.loads((tmp_path / "weight.json").read_text()) == {"weight": 100}
        with pytest.raises(OSError):
            mod.router_weight("http://127.0.0.1:9")(5)  # nothing there: the rollout must see it
        got = mod.rollout(mod.router_weight("http://127.0.0.1:9"), lambda t: {}, 0)
        assert got["result"] == "rolled_back" and "could not set" in got["reason"]
    finally:
        router.terminate()
        router.wait(timeout=10)
        stable.shutdown()
        canary.shutdown()


def test_no_router_is_said_not_hidden(ws6: Path, tmp_path: Path) -> None:
    ws = copy(ws6, tmp_path / "ws")
    res = subprocess.run([sys.executable, "canary_deployment/canary.py", "--prometheus",
                          "http://127.0.0.1:9", "--soak-s", "0"], cwd=ws, capture_output=True,
                         text=True, timeout=120)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["router"] == "none" and "not applied" in res.stderr
    assert out["result"] == "rolled_back" and out["reason"].startswith("no data")


def test_local_pair_serves_two_versions_behind_the_router(ws6: Path, tmp_path: Path) -> None:
    """local.py: the previous champion on the stable instance, the new one on the canary, and
    the weight the canary script sets decides which answers /predict."""
    import signal

    import httpx

    from mlpipe_flow.proc import free_port

    ws = copy(ws6, tmp_path / "ws")
    res = subprocess.run([sys.executable, "continuous_training/retrain.py", "--force-promote"],
                         cwd=ws, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    new = json.loads(res.stdout.strip().splitlines()[-1])
    port = free_port()
    local = subprocess.Popen([sys.executable, "canary_deployment/local.py", "--port", str(port)],
                             cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = local.stdout.readline()  # type: ignore[union-attr]
        assert line, local.stderr.read()[-3000:]  # type: ignore[union-attr]
        info = json.loads(line)
        url = info["router"]
        rows = pd.read_csv(ws / "data/splits/test.csv").head(3)
        records = json.loads(rows[meta(ws)["feature_columns"]].to_json(orient="records"))
        mod = canary_module(ws)
        with httpx.Client(timeout=10) as client:
            for weight, track, version in ((0, "stable", new["champion"]),
                                           (100, "canary", new["challenger"])):
                mod.router_weight(url)(weight)
                for _ in range(10):
                    r = client.post(f"{url}/predict", json={"records": records})
                    assert r.status_code == 200, r.text
                    assert r.headers["x-canary-track"] == track
                    assert r.json()["model_version"] == version, (track, r.json())
    finally:
        local.send_signal(signal.SIGINT)
        assert local.wait(timeout=60) == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{info['instances']['stable']}/health", timeout=2)
