"""The anthropic runner: the real SDK in mlpipe's child process against the fake Messages
API on 127.0.0.1 — phase 1 end to end, repair, prompt caching, SDK retries, budgets, and a
sandbox that holds against escape attempts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import mlpipe
from fake_anthropic import FakeAnthropic, content_text, text, tool
from llm_helpers import (
    FAKE_KEY,
    INJECTION,
    REQUIREMENTS,
    REQUIREMENTS_NO_METRICS,
    assert_injection_fenced,
    churn_csv,
    contract_files,
    fake_env,
    phase_rec,
)
from mlpipe_flow.runners.anthropic_loop import with_cache_breakpoint
from mlpipe_flow.runners.pricing import price_for, usage_cost


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    f = FakeAnthropic()
    yield f
    f.stop()


def writes(files: dict[str, str]) -> list[dict]:
    return [tool("write_file", path=name, content=body) for name, body in files.items()]


def run_phase1(ws: Path, data: Path, env: dict[str, str], *extra: str):  # type: ignore[no-untyped-def]
    return mlpipe(
        "run",
        "predict churn",
        "--data",
        str(data),
        "-w",
        str(ws),
        "--phase",
        "phase1",
        "--runner",
        "anthropic",
        *extra,
        env=env,
        timeout=240,
    )


def strip_cache(x: object) -> object:
    if isinstance(x, dict):
        return {k: strip_cache(v) for k, v in x.items() if k != "cache_control"}
    if isinstance(x, list):
        return [strip_cache(v) for v in x]
    return x


def test_pricing_table() -> None:
    assert price_for("claude-sonnet-4-5-20250929") == price_for("claude-sonnet-4-5")
    assert price_for("claude-opus-4-1")[0].output == 75.0 and price_for("claude-haiku-4-5")[0].input == 1.0
    assert price_for("some-new-model") == (price_for("claude-sonnet-4-5")[0], False)
    cost = usage_cost(
        "claude-sonnet-4-5",
        {
            "input_tokens": 1_000_000,
            "output_tokens": 1_000_000,
            "cache_creation_input_tokens": 1_000_000,
            "cache_read_input_tokens": 1_000_000,
        },
    )
    assert cost == pytest.approx(3 + 15 + 3.75 + 0.30)


def test_cache_breakpoint_moves_to_the_last_block() -> None:
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
    ]
    out = with_cache_breakpoint(msgs)
    assert "cache_control" not in out[0]["content"][0] and out[1]["content"][-1]["cache_control"]
    assert "cache_control" in msgs[0]["content"][0]  # the input is not changed


def test_phase1_with_caching_retry_and_fenced_data(fake: FakeAnthropic, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    fake.conversations = [
        [[tool("list_files", path=".")], writes(contract_files()), [text("Contract written.")]]
    ]
    fake.errors = [529]  # overloaded once; the SDK retries by itself
    env = fake_env(fake.start(), tmp_path / "home")
    data = churn_csv(tmp_path / "customers.csv", injection=True)
    res = run_phase1(ws, data, env, "--model", "claude-haiku-4-5")
    assert res.returncode == 0, res.stdout + res.stderr
    rec = phase_rec(ws)
    assert rec["status"] == "passed" and rec["attempts"] == 1
    assert rec["tokens_in"] > 0 and rec["tokens_out"] == 3 * fake.output_tokens
    assert rec["cache_read_tokens"] > 0 and rec["cache_write_tokens"] > 0 and rec["cost_usd"] > 0

    # the 529, then the same request again (the SDK's retry), then the scripted turns
    kinds = [r.kind for r in fake.requests]
    assert kinds[:2] == ["error", "main"] and fake.requests[0].status == 529
    assert fake.requests[0].body == fake.requests[1].body
    main = fake.main
    assert [r.turn for r in main] == [0, 1, 2] and main[0].body["model"] == "claude-haiku-4-5"

    # prompt caching: the stable prefix is marked and unchanged, the breakpoint moves forward
    for r in main:
        assert r.body["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert r.body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
        assert r.body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
        assert sum(json.dumps(m).count("cache_control") for m in r.body["messages"]) == 1
    for prev, cur in zip(main, main[1:], strict=False):
        assert cur.body["system"] == prev.body["system"] and cur.body["tools"] == prev.body["tools"]
        n = len(prev.body["messages"])
        assert strip_cache(cur.body["messages"][:n]) == strip_cache(prev.body["messages"])

    # the data's injected cell reaches the model only inside the untrusted block
    assert INJECTION not in json.dumps(main[0].body["system"])
    assert_injection_fenced(content_text(main[0].body["messages"][0]["content"]))
    results = fake.tool_results()
    assert results and not any(r["is_error"] for r in results)
    assert "ml-spec.yaml" in results[-1]["content"] or "wrote" in results[-1]["content"]


def test_gate_failure_then_repair(fake: FakeAnthropic, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    fake.conversations = [
        [writes(contract_files(REQUIREMENTS_NO_METRICS))],
        [
            [
                tool(
                    "edit_file",
                    path="ml-requirements.md",
                    old_text="Predict which customers leave next month.\n",
                    new_text=REQUIREMENTS.split("\n\n", 1)[1],
                )
            ]
        ],
    ]
    env = fake_env(fake.start(), tmp_path / "home")
    res = run_phase1(ws, churn_csv(tmp_path / "customers.csv"), env)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = phase_rec(ws)
    assert rec["status"] == "passed" and rec["attempts"] == 2
    repair = [r for r in fake.main if r.conversation == 1]
    prompt = content_text(repair[0].body["messages"][0]["content"])
    assert "metrics-defined" in prompt and "not found in ml-requirements.md" in prompt
    assert "ROC AUC" in (ws / "ml-requirements.md").read_text()


def test_budget_cap_stops_then_resume(fake: FakeAnthropic, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    files = contract_files()
    names = list(files)
    fake.conversations = [
        [writes({n: files[n] for n in names[:2]}), writes({n: files[n] for n in names[2:]})]
    ]
    fake.output_tokens = 100_000  # $1.50 a turn at claude-sonnet-4-5's $15/MTok output
    env = fake_env(fake.start(), tmp_path / "home")
    data = churn_csv(tmp_path / "customers.csv")
    res = run_phase1(ws, data, env, "--budget-usd", "2")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "budget" in res.stderr
    rec = phase_rec(ws)
    assert rec["status"] == "budget" and "run budget of $2.00" in rec["reason"]
    assert 1.5 <= rec["cost_usd"] <= 2.0
    assert len(fake.main) == 1  # stopped before the turn that would have passed the cap
    assert (ws / names[0]).is_file() and not (ws / names[-1]).exists()

    fake.output_tokens = 200
    res = run_phase1(ws, data, env, "--budget-usd", "10")
    assert res.returncode == 0, res.stdout + res.stderr
    rec = phase_rec(ws)
    assert rec["status"] == "passed" and (ws / names[-1]).is_file()


def test_sandbox_escape_attempts_are_refused(fake: FakeAnthropic, tmp_path: Path) -> None:
    ws = (tmp_path / "ws").resolve()
    ws.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP-SECRET")
    (ws / "etc_link").symlink_to("/etc")
    (ws / "passwd_link").symlink_to("/etc/passwd")
    (ws / "linked_dir").symlink_to(outside)
    attempts = [
        tool("read_file", path="../outside/secret.txt"),
        tool("read_file", path=str(outside / "secret.txt")),
        tool("read_file", path="/etc/passwd"),
        tool("read_file", path="etc_link/passwd"),
        tool("read_file", path="passwd_link"),
        tool("write_file", path="linked_dir/planted.txt", content="x"),
        tool("write_file", path="../planted.txt", content="x"),
        tool("read_file", path="~/.bashrc"),
        tool("read_file", path="/proc/self/environ"),
        tool("list_files", path=".."),
        tool("edit_file", path=".mlpipe/state.json", old_text="{", new_text="["),
        tool("run_command", command="cat /proc/self/environ"),
        tool("run_command", command="cat ../outside/secret.txt"),
        tool("run_command", command="bash -c 'echo $ANTHROPIC_API_KEY'"),
        tool("run_command", command="/bin/sh -c id"),
        tool("run_command", command="env"),
        tool("read_file", path="data/../../outside/secret.txt"),
        tool("run_command", command="cat linked_dir/secret.txt"),  # a symlink as an argument
        tool("run_command", command="grep -r TOP linked_dir/"),
        tool("run_command", command="cat etc_link/passwd"),
        tool("read_file", path=".mlpipe/state.json"),  # mlpipe's records: not even read
        tool("run_command", command="cat .mlpipe/state.json"),
        tool("write_file", path="mlpipe.yaml", content="workflow: /tmp/lenient\n"),
    ]
    probe = tool(
        "run_command",
        command="python -c \"import os; print('KEY=' + repr(os.environ.get('ANTHROPIC_API_KEY')))\"",
    )
    fake.conversations = [[attempts + [probe]]]
    env = fake_env(fake.start(), tmp_path / "home")
    res = run_phase1(ws, churn_csv(tmp_path / "customers.csv"), env, "--max-attempts", "1")
    assert res.returncode == 1, res.stdout + res.stderr  # the gate fails (nothing written); no crash
    assert "Traceback" not in res.stdout + res.stderr
    results = {r["tool_use_id"]: r for r in fake.tool_results()}
    assert len(results) == len(attempts) + 1
    for i, attempt in enumerate(attempts):
        r = results[f"toolu_c0t0n{i}"]
        assert r["is_error"] is True, (attempt, r)
        assert "TOP-SECRET" not in r["content"] and "root:" not in r["content"], attempt
    probe_out = results[f"toolu_c0t0n{len(attempts)}"]
    assert "KEY=None" in probe_out["content"]
    assert not (outside / "planted.txt").exists() and not (tmp_path / "planted.txt").exists()
    everything = json.dumps([r.body for r in fake.requests])
    assert FAKE_KEY not in everything and "TOP-SECRET" not in everything
    assert phase_rec(ws)["status"] == "failed"
    assert json.loads((ws / ".mlpipe" / "state.json").read_text())  # untouched by the edit attempt


def test_fake_api_plain_json_count_tokens_and_sdk_retries(fake: FakeAnthropic) -> None:
    import anthropic

    fake.conversations = [[[text("hello")]]]
    fake.errors = [429, 500]
    client = anthropic.Anthropic(api_key=FAKE_KEY, base_url=fake.start(), max_retries=3)
    tools = [{"name": "noop", "description": "d", "input_schema": {"type": "object"}}]
    msg = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=50,
        tools=tools,  # type: ignore[list-item]
        messages=[{"role": "user", "content": "hi"}],
    )
    assert msg.content[0].text == "hello" and msg.usage.output_tokens == fake.output_tokens  # type: ignore[union-attr]
    assert [(r.kind, r.status) for r in fake.requests] == [("error", 429), ("error", 500), ("main", 200)]
    n = client.messages.count_tokens(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
    assert n.input_tokens > 0 and fake.requests[-1].kind == "count_tokens"
    side = client.messages.create(
        model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "title?"}]
    )
    assert side.content and fake.requests[-1].kind == "side" and len(fake.main) == 1


def test_turn_limit_stops_the_loop(fake: FakeAnthropic, tmp_path: Path) -> None:
    from mlpipe_flow.runners.anthropic_loop import run_loop

    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "role.md").write_text("You are a tester.")
    (tmp_path / "prompt.md").write_text("list forever")
    fake.conversations = [[[tool("list_files")]] * 5]
    task = {
        "workspace": str(ws),
        "role_file": str(tmp_path / "role.md"),
        "max_turns": 2,
        "prompt_file": str(tmp_path / "prompt.md"),
        "model": "claude-haiku-4-5",
    }
    with (tmp_path / "log.txt").open("w") as log:
        r = run_loop(task, {"ANTHROPIC_API_KEY": FAKE_KEY, "ANTHROPIC_BASE_URL": fake.start()}, log=log)
    assert r["status"] == "error" and "turn limit" in r["message"] and r["turns"] == 2
    assert len(fake.main) == 2 and r["cost_usd"] > 0


def test_missing_key_is_one_line(tmp_path: Path) -> None:
    env = {"ANTHROPIC_API_KEY": "", "ANTHROPIC_AUTH_TOKEN": ""}
    res = run_phase1(tmp_path / "ws", churn_csv(tmp_path / "customers.csv"), env)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "mlpipe: error: the anthropic runner needs ANTHROPIC_API_KEY in the environment "
        "(or use --runner builtin / claude)"
    ]
