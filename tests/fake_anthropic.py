"""A fake Anthropic Messages API on 127.0.0.1 for the runner tests: scripted turns, SSE
streaming and plain JSON, count_tokens, injected errors, and a record of every request.

A script is a list of conversations; each conversation a list of turns; each turn a list of
content blocks (`text(...)`, `tool(...)`). A conversation is recognised by the text of its
first user message (a fresh prompt starts the next unused conversation); within it the next
turn is chosen from the `tool_result` ids the request carries (turn k+1 answers the tool
uses of turn k), never from the number of messages. After the last scripted turn the model
says "Done." and stops. Requests without tools (Claude Code's title/summary or quota side
requests) get a short text answer and stay out of the script; they are recorded as `side`.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Block = dict[str, Any]


def text(s: str) -> Block:
    return {"type": "text", "text": s}


def tool(name: str, **inputs: Any) -> Block:
    return {"type": "tool_use", "name": name, "input": inputs}


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    kind: str  # "main", "side", "count_tokens", "error", "other"
    conversation: int | None = None
    turn: int | None = None
    status: int = 200


@dataclass
class FakeAnthropic:
    conversations: list[list[list[Block]]] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)  # statuses for the next main requests
    output_tokens: int = 200
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._conv_by_prompt: dict[str, int] = {}
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                except json.JSONDecodeError:
                    body = {}
                fake.handle(self, self.path.split("?")[0], body)

            def do_GET(self) -> None:  # noqa: N802
                with fake._lock:
                    fake.requests.append(Recorded(self.path, {}, "other", status=404))
                fake.send_json(
                    self, 404, {"type": "error", "error": {"type": "not_found_error", "message": "not here"}}
                )

            def do_HEAD(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- views for assertions -------------------------------------------------------------
    @property
    def main(self) -> list[Recorded]:
        return [r for r in self.requests if r.kind == "main"]

    def tool_results(self) -> list[Block]:
        out: list[Block] = []
        seen: set[str] = set()
        for r in self.main:
            for b in last_user_blocks(r.body):
                if b.get("type") == "tool_result" and b["tool_use_id"] not in seen:
                    seen.add(b["tool_use_id"])
                    out.append(b)
        return out

    # -- the API ------------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler, path: str, body: dict[str, Any]) -> None:
        if path.endswith("/count_tokens"):
            with self._lock:
                self.requests.append(Recorded(path, body, "count_tokens"))
            self.send_json(h, 200, {"input_tokens": max(1, len(json.dumps(body)) // 4)})
            return
        if not path.endswith("/v1/messages"):
            with self._lock:
                self.requests.append(Recorded(path, body, "other", status=404))
            self.send_json(h, 404, {"type": "error", "error": {"type": "not_found_error", "message": path}})
            return
        with self._lock:
            if not body.get("tools"):
                self.requests.append(Recorded(path, body, "side"))
                blocks, conv, turn = [text("mlpipe phase")], None, None
            elif self.errors:
                status = self.errors.pop(0)
                self.requests.append(Recorded(path, body, "error", status=status))
                kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
                self.send_json(
                    h,
                    status,
                    {"type": "error", "error": {"type": kind, "message": f"injected {status}"}},
                    headers={"retry-after-ms": "50", "retry-after": "0"},
                )
                return
            else:
                conv, turn = self.choose(body)
                script = self.conversations[conv] if conv < len(self.conversations) else []
                blocks = script[turn] if turn < len(script) else [text("Done.")]
                blocks = [
                    dict(b, id=f"toolu_c{conv}t{turn}n{i}") if b["type"] == "tool_use" else b
                    for i, b in enumerate(blocks)
                ]
                self.requests.append(Recorded(path, body, "main", conv, turn))
        self.respond(h, body, blocks, first=turn in (None, 0))

    def choose(self, body: dict[str, Any]) -> tuple[int, int]:
        messages = body.get("messages") or []
        first = next((m for m in messages if m.get("role") == "user"), {})
        key = content_text(first.get("content"))
        if key not in self._conv_by_prompt:
            self._conv_by_prompt[key] = len(self._conv_by_prompt)
        conv = self._conv_by_prompt[key]
        turn = 0
        for m in messages:  # the latest tool_result decides
            if m.get("role") != "user" or not isinstance(m.get("content"), list):
                continue
            for b in m["content"]:
                tid = b.get("tool_use_id", "") if isinstance(b, dict) else ""
                m_id = re.fullmatch(rf"toolu_c{conv}t(\d+)n\d+", tid)
                if m_id:
                    turn = max(turn, int(m_id.group(1)) + 1)
        return conv, turn

    def respond(
        self, h: BaseHTTPRequestHandler, body: dict[str, Any], blocks: list[Block], first: bool
    ) -> None:
        prefix = len(json.dumps(body.get("system", ""))) // 4 + len(json.dumps(body.get("tools", []))) // 4
        rest = max(1, len(json.dumps(body.get("messages", []))) // 4)
        cached = any_cache_control(body)
        usage = {
            "input_tokens": rest if cached else rest + prefix,
            "cache_creation_input_tokens": prefix if cached and first else 0,
            "cache_read_input_tokens": prefix if cached and not first else 0,
            "output_tokens": self.output_tokens,
        }
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-sonnet-4-5"),
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            self.send_json(h, 200, message)
            return
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        **message,
                        "content": [],
                        "stop_reason": None,
                        "usage": {**usage, "output_tokens": 1},
                    },
                },
            )
        ]
        for i, b in enumerate(blocks):
            if b["type"] == "text":
                events += [
                    (
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": i,
                            "content_block": {"type": "text", "text": ""},
                        },
                    ),
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": b["text"]},
                        },
                    ),
                ]
            else:
                raw = json.dumps(b["input"])
                events.append(
                    (
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": i,
                            "content_block": {
                                "type": "tool_use",
                                "id": b["id"],
                                "name": b["name"],
                                "input": {},
                            },
                        },
                    )
                )
                for k in range(0, len(raw), 400):
                    events.append(
                        (
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": i,
                                "delta": {"type": "input_json_delta", "partial_json": raw[k : k + 400]},
                            },
                        )
                    )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events += [
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": self.output_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        payload = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events).encode()
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("content-length", str(len(payload)))
        h.send_header("request-id", "req_fake")
        h.end_headers()
        h.wfile.write(payload)

    @staticmethod
    def send_json(
        h: BaseHTTPRequestHandler, status: int, data: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(data).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(payload)))
        h.send_header("request-id", "req_fake")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(payload)


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def last_user_blocks(body: dict[str, Any]) -> list[Block]:
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    content = users[-1]["content"] if users else []
    return content if isinstance(content, list) else [text(content)]


def any_cache_control(body: Any) -> bool:
    if isinstance(body, dict):
        return "cache_control" in body or any(any_cache_control(v) for v in body.values())
    if isinstance(body, list):
        return any(any_cache_control(v) for v in body)
    return False
