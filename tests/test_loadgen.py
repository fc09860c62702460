"""Self-test of the open-loop load generator against servers with known behaviour."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from mlpipe_flow import proc
from mlpipe_flow.checks.loadgen import run_load

SERVER = Path(__file__).parent / "servers" / "delay_server.py"


def serve(tmp_path: Path, *args: str):  # type: ignore[no-untyped-def]
    port = proc.free_port()
    cm = proc.start_server([sys.executable, str(SERVER), str(port), *args], cwd=tmp_path,
                           log_path=tmp_path / f"server-{port}.log")
    server = cm.__enter__()
    deadline = time.monotonic() + 10
    while "ready" not in (tmp_path / f"server-{port}.log").read_text():
        assert time.monotonic() < deadline and server.alive()
        time.sleep(0.05)
    return port, server, cm


@pytest.mark.alone  # latencies measured: nothing runs beside it
def test_measures_an_injected_delay(tmp_path: Path) -> None:
    port, _, cm = serve(tmp_path, "50")
    try:
        r = run_load("127.0.0.1", port, "/", [b"{}"], rate=200, duration_s=2, warmup_s=0.5)
    finally:
        cm.__exit__(None, None, None)
    assert r.errors == 0 and r.ok >= 390
    assert 49 <= r.p50_ms <= 56, r.evidence()
    assert r.achieved_rps > 190


def test_a_stalled_server_shows_a_large_tail(tmp_path: Path) -> None:
    # 1 s after the first request the server answers nothing for 600 ms: an open-loop client
    # keeps sending on schedule, so every request due in the stall waits for its end
    port, _, cm = serve(tmp_path, "0", "1.0", "600")
    try:
        r = run_load("127.0.0.1", port, "/", [b"{}"], rate=300, duration_s=3, warmup_s=0.5)
    finally:
        cm.__exit__(None, None, None)
    assert r.p50_ms < 20, r.evidence()
    assert r.p95_ms > 150 and r.max_ms > 450, r.evidence()
    # the distribution kept for the report: every answered request in a bucket, the stall's
    # tail in the buckets past 150 ms, and the quantiles the percentiles come from
    hist, q = r.latency_histogram_ms, r.latency_quantiles_ms
    assert sum(hist["count"]) == r.ok and hist["le"] == sorted(hist["le"]), hist
    tail = sum(c for le, c in zip(hist["le"], hist["count"], strict=True) if le > 150)
    assert tail >= 0.05 * r.ok and hist["le"][-1] >= r.max_ms, hist
    assert (q["p50"], q["p95"], q["p99"]) == pytest.approx((r.p50_ms, r.p95_ms, r.p99_ms), abs=1e-3)
    assert list(q.values()) == sorted(q.values()) and json.dumps(r.evidence())  # JSON as recorded


@pytest.mark.alone  # a rate measured: nothing runs beside it
def test_drives_a_trivial_server_above_1000_per_second(tmp_path: Path) -> None:
    port, server, cm = serve(tmp_path, "0")
    try:
        r = run_load("127.0.0.1", port, "/", [b"{}"], rate=1500, duration_s=3, warmup_s=0.5)
    finally:
        cm.__exit__(None, None, None)
    assert not server.alive()  # the context manager killed it
    assert r.errors == 0
    assert r.achieved_rps >= 1400, r.evidence()


def test_refused_connections_are_errors(tmp_path: Path) -> None:
    r = run_load("127.0.0.1", proc.free_port(), "/", [b"{}"], rate=100, duration_s=0.5,
                 warmup_s=0, timeout_s=2)
    assert r.ok == 0 and r.errors == r.sent > 0
