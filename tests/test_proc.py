"""The one subprocess launcher: limits, watchdog, process groups, closed stdin, scrubbed env."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mlpipe_flow import proc

PY = sys.executable


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_output_and_transcript(tmp_path: Path) -> None:
    t = tmp_path / "t.log"
    res = proc.run([PY, "-c", "print('hello'); import sys; print('err', file=sys.stderr)"],
                   cwd=tmp_path, timeout_s=30, transcript=t)
    assert res.ok and "hello" in res.output and "err" in res.output
    assert "hello" in t.read_text()


def test_stdin_is_closed(tmp_path: Path) -> None:
    res = proc.run([PY, "-c", "import sys; print(repr(sys.stdin.read()))"], cwd=tmp_path, timeout_s=30)
    assert res.ok and "''" in res.output


def test_stdin_text_is_fed_then_closed(tmp_path: Path) -> None:
    res = proc.run([PY, "-c", "import sys; print(sys.stdin.read().upper())"], cwd=tmp_path,
                   timeout_s=30, stdin_text="the prompt")
    assert "THE PROMPT" in res.output


def test_wall_clock_limit_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', "
              f"'import time; time.sleep(60)']); open({str(pidfile)!r}, 'w').write(str(c.pid)); "
              "print('started', flush=True); time.sleep(60)")
    started = time.monotonic()
    res = proc.run([PY, "-c", script], cwd=tmp_path, timeout_s=2)
    assert res.timed_out and not res.ok
    assert time.monotonic() - started < 15
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(grandchild)
    assert "wall-clock" in res.describe()


def test_idle_watchdog(tmp_path: Path) -> None:
    res = proc.run([PY, "-c", "print('one', flush=True); import time; time.sleep(60)"],
                   cwd=tmp_path, timeout_s=60, idle_timeout_s=1.5)
    assert res.idle_killed and res.duration_s < 15 and "one" in res.output


def test_missing_command(tmp_path: Path) -> None:
    res = proc.run(["definitely-not-a-command-xyz"], cwd=tmp_path, timeout_s=5)
    assert res.returncode == 127 and "not found" in res.output


def test_secrets_are_scrubbed() -> None:
    base = {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk-ant-x", "GITHUB_TOKEN": "ghp", "DB_PASSWORD": "p",
            "AWS_SECRET_ACCESS_KEY": "a", "HOME": "/root", "MY_SERVICE_TOKEN": "t", "LANG": "C"}
    env = proc.scrubbed_env(base=base, keep=["DB_PASSWORD"])
    assert env == {"PATH": "/bin", "HOME": "/root", "LANG": "C", "DB_PASSWORD": "p"}


def test_secret_does_not_reach_the_child(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    res = proc.run([PY, "-c", "import os; print(os.environ.get('ANTHROPIC_API_KEY', 'absent'))"],
                   cwd=tmp_path, timeout_s=30, env=proc.scrubbed_env())
    assert "absent" in res.output and "sk-ant-secret" not in res.output
