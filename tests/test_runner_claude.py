"""The claude runner: argv and stream parsing on their own, then the real Claude Code CLI
driven by `mlpipe run` against the fake Messages API on 127.0.0.1."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, mlpipe
from fake_anthropic import FakeAnthropic, content_text, text, tool
from llm_helpers import (
    INJECTION,
    ML_SPEC,
    REQUIREMENTS,
    REQUIREMENTS_NO_METRICS,
    assert_injection_fenced,
    churn_csv,
    contract_files,
    fake_env,
    need_claude,
    phase_rec,
)
from mlpipe_flow import proc
from mlpipe_flow.runners import AgentTask
from mlpipe_flow.runners.claude import (
    INSTALL_HINT,
    ResultEvent,
    build_argv,
    parse_stream_line,
    result_from_event,
)


def make_task(tmp_path: Path, **kw: object) -> AgentTask:
    base: dict = dict(
        phase="phase1",
        attempt=1,
        prompt="do it",
        role="ml-engineer",
        role_prompt="You are X.",
        workspace=tmp_path,
        run_dir=tmp_path / "run",
        timeout_s=60,
        idle_timeout_s=30,
        max_turns=7,
        allowed_tools=["Read", "Write", "Bash(python:*)"],
    )
    base.update(kw)
    return AgentTask(**base)


def test_build_argv(tmp_path: Path) -> None:
    argv = build_argv(make_task(tmp_path, budget_usd=0.5, model="claude-haiku-4-5"))
    assert argv[:3] == ["claude", "-p", "do it"]
    joined = " ".join(argv)
    assert "--output-format stream-json --verbose" in joined
    assert argv[argv.index("--append-system-prompt") + 1] == "You are X."
    assert argv[argv.index("--allowedTools") + 1] == "Read,Write,Bash(python:*)"
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    assert argv[argv.index("--max-turns") + 1] == "7"
    assert argv[argv.index("--max-budget-usd") + 1] == "0.5000"
    assert argv[argv.index("--model") + 1] == "claude-haiku-4-5"
    bare = build_argv(make_task(tmp_path))
    assert "--max-budget-usd" not in bare and "--model" not in bare
    assert "bypassPermissions" not in bare


def _proc(rc: int = 0) -> proc.ProcResult:
    return proc.ProcResult(argv=["claude"], returncode=rc, output="", duration_s=1.0)


def test_parse_stream_result_line() -> None:
    line = json.dumps(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "total_cost_usd": 0.0123,
            "num_turns": 3,
            "result": "done",
            "usage": {
                "input_tokens": 10,
                "output_tokens": 20,
                "cache_creation_input_tokens": 30,
                "cache_read_input_tokens": 40,
            },
        }
    )
    ev = parse_stream_line(line)
    assert isinstance(ev, ResultEvent) and ev.success
    assert (ev.total_cost_usd, ev.num_turns, ev.output_tokens, ev.cache_read_input_tokens) == (
        0.0123,
        3,
        20,
        40,
    )
    r = result_from_event(ev, _proc())
    assert r.status == "ok" and r.cost_usd == 0.0123 and r.tokens_in == 80 and r.tokens_out == 20
    assert r.cache_write_tokens == 30 and r.turns == 3
    assert parse_stream_line('{"type":"assistant","message":{}}').kind == "assistant"  # type: ignore[union-attr]
    assert parse_stream_line("not json") is None and parse_stream_line("[1]") is None


def test_stream_without_result_line_or_with_is_error_fails() -> None:
    r = result_from_event(None, _proc(0))
    assert r.status == "error" and "no result line" in r.message
    ev = parse_stream_line(
        json.dumps({"type": "result", "subtype": "success", "is_error": True, "result": "API Error: 500"})
    )
    assert isinstance(ev, ResultEvent) and not ev.success
    assert result_from_event(ev, _proc(1)).status == "error"
    ev = parse_stream_line(
        json.dumps({"type": "result", "subtype": "error_max_budget_usd", "is_error": True})
    )
    assert result_from_event(ev, _proc(1)).status == "budget"  # type: ignore[arg-type]


def test_claude_missing_says_how_to_install(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    res = mlpipe(
        "run",
        "predict churn",
        "-w",
        str(ws),
        "--runner",
        "claude",
        "--phase",
        "phase1",
        env={"PATH": str(Path(sys.executable).parent)},
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"mlpipe: error: {INSTALL_HINT}"]
    assert "npm install -g @anthropic-ai/claude-code" in INSTALL_HINT


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    f = FakeAnthropic()
    yield f
    f.stop()


def writes(ws: Path, files: dict[str, str]) -> list[dict]:
    return [tool("Write", file_path=str(ws / name), content=body) for name, body in files.items()]


def test_phase1_through_real_claude(fake: FakeAnthropic, tmp_path: Path) -> None:
    need_claude()
    ws = (tmp_path / "ws").resolve()
    fake.conversations = [[writes(ws, contract_files()), [text("The phase-1 contract is written.")]]]
    env = fake_env(fake.start(), tmp_path / "home")
    data = churn_csv(tmp_path / "customers.csv", injection=True)
    res = mlpipe(
        "run",
        "predict churn",
        "--data",
        str(data),
        "-w",
        str(ws),
        "--phase",
        "phase1",
        "--runner",
        "claude",
        "--model",
        "claude-sonnet-4-5",
        env=env,
        timeout=240,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert (ws / "ml-spec.yaml").read_text() == ML_SPEC
    rec = phase_rec(ws)
    assert rec["status"] == "passed" and rec["attempts"] == 1
    assert rec["cost_usd"] > 0 and rec["tokens_in"] > 0 and rec["tokens_out"] > 0
    assert rec["cache_read_tokens"] + rec["cache_write_tokens"] > 0
    main = fake.main
    assert len(main) >= 2 and main[1].turn == 1  # the second turn answered the Write tool uses
    first_prompt = content_text(main[0].body["messages"][0]["content"])
    assert "predict churn" in first_prompt
    # the role arrives as system prompt; the data file's injected cell only inside the fenced block
    role = (REPO / "prompts" / "roles" / "ml-engineer.md").read_text().strip().splitlines()[-1]
    assert role in json.dumps(main[0].body["system"]).replace("\\n", "\n")
    assert INJECTION not in json.dumps(main[0].body["system"])
    assert_injection_fenced(json.dumps(main[0].body["messages"]).replace("\\n", "\n"))
    attempt = (
        ws / ".mlpipe" / "runs" / json.loads((ws / ".mlpipe/state.json").read_text())["run_id"] / "phase1"
    )
    transcript = next(attempt.glob("attempt-1*")) / "transcript.log"
    assert '"type":"result"' in transcript.read_text()


def test_claude_gate_failure_then_repair(fake: FakeAnthropic, tmp_path: Path) -> None:
    need_claude()
    ws = (tmp_path / "ws").resolve()
    fake.conversations = [
        [writes(ws, contract_files(REQUIREMENTS_NO_METRICS))],
        [
            [
                tool("Read", file_path=str(ws / "ml-requirements.md"))
            ],  # Claude Code reads before it overwrites
            [tool("Write", file_path=str(ws / "ml-requirements.md"), content=REQUIREMENTS)],
        ],
    ]
    env = fake_env(fake.start(), tmp_path / "home")
    data = churn_csv(tmp_path / "customers.csv")
    res = mlpipe(
        "run",
        "predict churn",
        "--data",
        str(data),
        "-w",
        str(ws),
        "--phase",
        "phase1",
        "--runner",
        "claude",
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    rec = phase_rec(ws)
    assert rec["status"] == "passed" and rec["attempts"] == 2
    repair = [r for r in fake.main if r.conversation == 1]
    assert repair, "no repair conversation reached the API"
    repair_prompt = content_text(repair[0].body["messages"][0]["content"])
    assert "metrics-defined" in repair_prompt and "repair" in repair_prompt
    assert "ROC AUC" in (ws / "ml-requirements.md").read_text()


def test_claude_budget_cap_stops_the_phase(fake: FakeAnthropic, tmp_path: Path) -> None:
    need_claude()
    ws = (tmp_path / "ws").resolve()
    fake.conversations = [[writes(ws, contract_files())]]
    env = fake_env(fake.start(), tmp_path / "home")
    data = churn_csv(tmp_path / "customers.csv")
    res = mlpipe(
        "run",
        "predict churn",
        "--data",
        str(data),
        "-w",
        str(ws),
        "--phase",
        "phase1",
        "--runner",
        "claude",
        "--budget-usd",
        "0.01",
        env=env,
        timeout=240,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    rec = phase_rec(ws)
    assert rec["status"] == "budget" and "run budget of $0.01" in rec["reason"]
    assert "error_max_budget_usd" in rec["reason"] and rec["attempts"] == 1
    assert rec["cost_usd"] > 0.01  # claude's first turn overshoots; the phase stops after it
