"""Starting the workspace's API for a check: a free 127.0.0.1 port, scrubbed env, wait for /health."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext

API_APP = "deployment.api.main:app"


class ApiDown(Exception):
    """The API did not come up (the message says why, with the server log's tail)."""


@dataclass
class RunningApi:
    port: int
    server: proc.Server
    health: dict[str, Any]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def http(method: str, url: str, body: bytes | None = None,
         timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - 127.0.0.1 only
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@contextmanager
def running_api(ctx: CheckContext, startup_s: float = 90.0, env: dict[str, str] | None = None,
                while_starting: Callable[[], object] | None = None) -> Iterator[RunningApi]:
    """The workspace's API on a free port, up once /health answered 200. `while_starting` runs
    right after the server process started, before waiting for /health (work that can overlap
    the API's start-up, e.g. running the saved model in another process)."""
    if not (ctx.workspace / "deployment" / "api" / "main.py").is_file():
        raise ApiDown("deployment/api/main.py does not exist")
    port = proc.free_port()
    argv = [ctx.python, "-m", "uvicorn", API_APP, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning"]
    log = ctx.workspace / ".mlpipe" / "gate-logs" / f"api-{port}.log"
    # the gate's traffic is not production traffic: an API that logs its inputs for drift
    # detection (the built-in one reads INPUT_LOG_DIR) logs them beside the gate's own logs
    full_env = proc.scrubbed_env(extra={**ctx.env, "PYTHONPATH": str(ctx.workspace),
                                        "PYTHONDONTWRITEBYTECODE": "1",
                                        "INPUT_LOG_DIR": str(log.with_suffix("")) + "-inputs",
                                        **(env or {})})
    with proc.start_server(argv, cwd=ctx.workspace, log_path=log, env=full_env) as server:
        if while_starting is not None:
            while_starting()
        deadline = time.monotonic() + startup_s
        last = "no answer"
        while True:
            if not server.alive():
                raise ApiDown(f"the API exited with status {server.proc.returncode} before "
                              f"/health answered; log: {' | '.join(server.log_tail(6))}")
            try:
                status, body = http("GET", f"http://127.0.0.1:{port}/health", timeout=2)
                if status == 200:
                    health = json.loads(body)
                    if not isinstance(health, dict):
                        raise ApiDown("/health did not return a JSON object")
                    break
                last = f"HTTP {status}"
            except (OSError, ValueError) as e:
                last = type(e).__name__
            if time.monotonic() > deadline:
                raise ApiDown(f"/health did not answer 200 within {startup_s:.0f}s ({last}); "
                              f"log: {' | '.join(server.log_tail(6))}")
            time.sleep(0.25)
        yield RunningApi(port, server, health)


def test_records(ctx: CheckContext, n: int) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """(feature frame, JSON-ready records, model meta) for the first n rows of the test split."""
    import pandas as pd

    meta = json.loads((ctx.workspace / "artifacts" / "model_meta.json").read_text(encoding="utf-8"))
    features = list(meta["feature_columns"])
    frame = pd.read_csv(ctx.workspace / "data" / "splits" / "test.csv").head(n)[features]
    records = json.loads(frame.to_json(orient="records"))
    return frame, records, meta
