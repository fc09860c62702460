"""An open-loop HTTP load generator: a constant arrival rate over a pool of keep-alive
HTTP/1.1 connections (asyncio streams), latency measured from each request's *intended*
send time, so a server that stalls cannot hide its tail by slowing the client down.

Standard library only; runs in the calling thread (`run_load` starts its own event loop).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LoadResult:
    target_rps: float
    duration_s: float
    sent: int
    ok: int
    errors: int
    achieved_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    error_samples: list[str] = field(default_factory=list)
    served_rps: float = 0.0  # every 2xx response over the whole run, warm-up included
    latency_quantiles_ms: dict[str, float] = field(default_factory=dict)  # "p50": ms, ...
    latency_histogram_ms: dict[str, Any] = field(default_factory=dict)  # "le": [ms], "count"

    @property
    def error_rate(self) -> float:
        return self.errors / self.sent if self.sent else 1.0

    def evidence(self) -> dict[str, Any]:
        d = asdict(self)
        d["error_rate"] = round(self.error_rate, 5)
        for k in ("achieved_rps", "served_rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "duration_s"):
            d[k] = round(d[k], 2)
        return d


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[idx]


#: the latency distribution kept beside the percentiles (for `mlpipe report`): a fixed set of
#: quantiles, and counts in log-spaced buckets, BUCKETS_PER_DECADE a decade from 0.1 ms to 100 s
QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)
BUCKETS_PER_DECADE = 8
BUCKET_LE_MS = tuple(round(0.1 * 10 ** (k / BUCKETS_PER_DECADE), 4)
                     for k in range(1, 6 * BUCKETS_PER_DECADE + 1))


def quantiles(sorted_ms: Sequence[float]) -> dict[str, float]:
    return {f"p{q:g}": round(percentile(sorted_ms, q), 3) for q in QUANTILES} if sorted_ms else {}


def histogram(sorted_ms: Sequence[float]) -> dict[str, Any]:
    """Counts per bucket (le_ms[i-1], le_ms[i]] (the first from 0, the last also holding
    anything slower), from the first non-empty bucket to the last: a dozen numbers or so."""
    if not sorted_ms:
        return {"le": [], "count": []}
    counts = [0] * len(BUCKET_LE_MS)
    for v in sorted_ms:
        counts[min(len(counts) - 1, bisect.bisect_left(BUCKET_LE_MS, v))] += 1
    lo = next(i for i, c in enumerate(counts) if c)
    hi = max(i for i, c in enumerate(counts) if c)
    return {"le": list(BUCKET_LE_MS[lo:hi + 1]), "count": counts[lo:hi + 1]}


def _request_bytes(host: str, port: int, method: str, path: str, body: bytes | None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value.strip())
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    body = b""
    if length is not None:
        body = await reader.readexactly(length)
    elif chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            body += (await reader.readexactly(size + 2))[:size]
            if size == 0:
                break
    return status, body


async def _load(host: str, port: int, path: str, bodies: Sequence[bytes | None], rate: float,
                duration_s: float, warmup_s: float, connections: int, timeout_s: float,
                method: str, keep: dict[int, bytes] | None = None,
                keep_every: int = 0) -> LoadResult:
    reqs = [_request_bytes(host, port, method, path, b) for b in bodies] or [
        _request_bytes(host, port, method, path, None)]
    total = int((warmup_s + duration_s) * rate)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    errors: list[str] = []
    measured_sent = [0]
    last_done = [0.0]
    start = time.perf_counter() + 0.05
    measure_from = start + warmup_s

    served = [0, start]

    def record(intended: float, ok: bool, why: str = "") -> None:
        now = time.perf_counter()
        if ok:
            served[0] += 1
            served[1] = now
        if intended < measure_from:
            return
        last_done[0] = max(last_done[0], now)
        if ok:
            latencies.append(now - intended)
        else:
            errors.append(why)

    async def worker() -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while True:
            item = await queue.get()
            if item is None:
                break
            i, intended = item
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
                reader, writer = conn
                writer.write(reqs[i % len(reqs)])
                status, body = await asyncio.wait_for(_read_response(reader), timeout_s)
                record(intended, 200 <= status < 300, f"HTTP {status}")
                if keep is not None and keep_every and i % keep_every == 0:
                    keep[i] = body
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    asyncio.TimeoutError, ValueError, IndexError) as e:
                record(intended, False, f"{type(e).__name__}: {e}"[:120])
                if conn is not None:
                    conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    sent = 0
    while sent < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1) if now >= start else 0
        while sent < due:
            intended = start + sent / rate
            if intended >= measure_from:
                measured_sent[0] += 1
            queue.put_nowait((sent, intended))
            sent += 1
        await asyncio.sleep(0.0005)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait(workers, timeout=timeout_s + 5)
    for w in workers:
        w.cancel()
    unanswered = measured_sent[0] - len(latencies) - len(errors)
    errors.extend(["no response"] * max(0, unanswered))
    span = max(duration_s, (last_done[0] or measure_from + duration_s) - measure_from)
    lat = sorted(x * 1000 for x in latencies)
    samples = sorted(set(errors))[:5]
    return LoadResult(target_rps=rate, duration_s=span, sent=measured_sent[0], ok=len(lat),
                      errors=len(errors), achieved_rps=len(lat) / span if span > 0 else 0.0,
                      p50_ms=percentile(lat, 50), p95_ms=percentile(lat, 95),
                      p99_ms=percentile(lat, 99), max_ms=lat[-1] if lat else float("nan"),
                      error_samples=samples, latency_quantiles_ms=quantiles(lat),
                      latency_histogram_ms=histogram(lat),
                      served_rps=served[0] / max(served[1] - start, 1e-9) if served[0] else 0.0)


def run_load(host: str, port: int, path: str, bodies: Sequence[bytes | None], *, rate: float,
             duration_s: float, warmup_s: float = 2.0, connections: int = 64,
             timeout_s: float = 10.0, method: str = "POST", keep: dict[int, bytes] | None = None,
             keep_every: int = 0) -> LoadResult:
    """Drive `rate` requests per second at host:port for warm-up + duration; measure after
    warm-up. With `keep` and `keep_every`, the body answering request i (bodies[i % n]) is kept
    in keep[i] for every i divisible by keep_every: a sample to check what was served."""
    runner: Any = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    return runner(_load(host, port, path, bodies, rate, duration_s, warmup_s, connections,
                        timeout_s, method, keep, keep_every))
