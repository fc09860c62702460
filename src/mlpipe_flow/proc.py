"""The one place mlpipe starts subprocesses.

Every child gets stdin closed (or fed and then closed), its own process group, a wall-clock
limit and an optional no-output watchdog; on timeout or Ctrl-C the whole group is killed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SECRET_NAME = re.compile(
    r"(API_?KEY|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY|AUTH|COOKIE|SESSION_KEY"
    r"|DATABASE_URL|_DSN$|^AWS_|^ANTHROPIC_|^OPENAI_|^GOOGLE_APPLICATION|^AZURE_|^GH_|^GITHUB_|^HF_"
    r"|^MLPIPE_DATA_URL$)",
    re.IGNORECASE,
)


def scrubbed_env(
    keep: Iterable[str] = (), extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment minus anything that looks like a secret (names in `keep` survive)."""
    kept = set(keep)
    env = {k: v for k, v in (base or os.environ).items() if k in kept or not SECRET_NAME.search(k)}
    env.update(extra or {})
    return env


@dataclass
class ProcResult:
    argv: list[str]
    returncode: int | None
    output: str
    duration_s: float
    timed_out: bool = False
    idle_killed: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.idle_killed

    def describe(self) -> str:
        if self.timed_out:
            return f"killed after the {self.duration_s:.0f}s wall-clock limit"
        if self.idle_killed:
            return "killed: no output for too long (watchdog)"
        return f"exit status {self.returncode}"


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that started it ends
    (PR_SET_PDEATHSIG). A check's own process calls it first thing (`checks/child.py`)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _preexec() -> Callable[[], None] | None:
    """`die_with_parent` between fork and exec - only from the main thread: code run after a
    fork in a threaded process may deadlock (a gate's checks start from worker threads, and
    set it themselves after exec)."""
    return die_with_parent if threading.current_thread() is threading.main_thread() else None


# the children `run` and `start_server` have started and not yet reaped: Ctrl-C in the main
# thread ends those started from other threads (a gate's checks) through `kill_all`
_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()
_stopping = threading.Event()


def _track(proc: subprocess.Popen[bytes]) -> None:
    with _live_lock:
        _live.add(proc)
    if _stopping.is_set():  # started by a thread that missed kill_all
        kill_group(proc, grace_s=0.5)


def _untrack(proc: subprocess.Popen[bytes]) -> None:
    with _live_lock:
        _live.discard(proc)


def kill_all(grace_s: float = 1.0) -> None:
    """End every child still running (each with its process group) and any started from now
    on: the process is stopping (Ctrl-C), and threads waiting on children must not hold it."""
    _stopping.set()
    with _live_lock:
        procs = list(_live)
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace_s  # one grace period for all of them, not one each
    for p in procs:
        kill_group(p, grace_s=max(0.0, deadline - time.monotonic()))


def kill_group(proc: subprocess.Popen[bytes], grace_s: float = 3.0) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            # the leader is gone; make sure no straggler of the group survives it
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            return
        except subprocess.TimeoutExpired:
            continue


def run(
    argv: list[str],
    *,
    cwd: Path,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    idle_timeout_s: float | None = None,
    transcript: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    stdin_text: str | None = None,
    tail_lines: int = 400,
) -> ProcResult:
    """Run argv to completion under the limits; stdout and stderr are merged, line by line."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_preexec(),
        )
    except FileNotFoundError:
        return ProcResult(argv, 127, f"{argv[0]}: command not found", 0.0)
    except PermissionError as e:
        return ProcResult(argv, 126, f"{argv[0]}: {e.strerror}", 0.0)
    _track(proc)

    tail: deque[str] = deque(maxlen=tail_lines)
    last_output = [time.monotonic()]
    sink = transcript.open("ab") if transcript is not None else None

    def read() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            last_output[0] = time.monotonic()
            if sink is not None:
                sink.write(raw)
                sink.flush()
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            tail.append(line)
            if on_line is not None:
                try:
                    on_line(line)
                except Exception:  # noqa: BLE001 - a display bug must not kill the agent
                    pass

    def feed() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write((stdin_text or "").encode())
        except BrokenPipeError:
            pass
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    feeder = threading.Thread(target=feed, daemon=True) if stdin_text is not None else None
    if feeder is not None:
        feeder.start()

    timed_out = idle = False
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now - started > timeout_s:
                timed_out = True
            elif idle_timeout_s is not None and now - last_output[0] > idle_timeout_s:
                idle = True
            if timed_out or idle:
                kill_group(proc)
                break
            time.sleep(0.05)
    except BaseException:
        kill_group(proc, grace_s=1.0)
        raise
    finally:
        # the leader is gone; no member of its group (a daemon it started) outlives it
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _untrack(proc)
        reader.join(timeout=5)
        if feeder is not None:
            feeder.join(timeout=5)
        if sink is not None:
            sink.close()
    return ProcResult(
        argv=argv,
        returncode=proc.returncode,
        output="\n".join(tail),
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        idle_killed=idle,
    )


@dataclass
class Server:
    """A long-running child started by `start_server`: its Popen and the log it writes to."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> list[str]:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines() if ln.strip()][-lines:]


@contextmanager
def start_server(
    argv: list[str], *, cwd: Path, log_path: Path, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """Start a long-running child (a server) in its own process group, stdin closed, output to
    `log_path`; on leaving the block the whole group is killed, whatever happened inside."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_preexec(),
        )
    except OSError:
        log.close()
        raise
    _track(proc)
    try:
        yield Server(proc, log_path)
    finally:
        kill_group(proc, grace_s=3.0)
        _untrack(proc)
        log.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
