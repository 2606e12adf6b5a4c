"""A small OpenAI-compatible chat server for tests, scripted by markers in the last user message.

Markers (anywhere in the text of the last user message):
  [slow:S]     sleep S seconds before answering (cut short when the server stops)
  [500:N]      answer HTTP 500 the first N times this exact prompt is seen
  [429:N]      answer HTTP 429 with `Retry-After: 0.2` the first N times this exact prompt is seen
  [malformed]  answer 200 with a body that is not JSON
  [nochoices]  answer 200 with a JSON completion that has no `choices`
  [400]        answer HTTP 400
Otherwise the reply text is `responder(request_json)` (default: "A clean description of: <text>").

    with FakeOpenAIServer() as server:
        client = OpenAIChatClient(base_url=server.base_url, model="fake")
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict], str]

RETRY_AFTER_S = 0.2


def last_user_text(request: dict) -> str:
    """The text parts of the last user message (images left out)."""
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1].get("content", "")
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content if p.get("type") == "text")


def describe(request: dict) -> str:
    return f"A clean description of: {last_user_text(request)}"


class FakeOpenAIServer:
    """ThreadingHTTPServer on 127.0.0.1 (free port) in a daemon thread; a context manager."""

    def __init__(self, responder: Responder = describe, model: str = "fake-model") -> None:
        self.responder = responder
        self.model = model
        self.requests: list[dict] = []  # every chat-completion body received, in arrival order
        self.headers: list[dict[str, str]] = []  # their headers, same order
        self.max_in_flight = 0
        self._in_flight = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        # A short poll interval so leaving the context (shutdown) takes milliseconds, not 0.5 s.
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.02)
        self._thread = threading.Thread(target=serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def prompts(self) -> list[str]:
        """The last user text of every request received, in arrival order."""
        with self._lock:
            return [last_user_text(r) for r in self.requests]

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # wakes handlers sleeping on [slow:S]
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _begin(self, body: dict, headers: dict[str, str]) -> int:
        """Record a request; return how many times its prompt has been seen, this one included."""
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            prompt = last_user_text(body)
            self._seen[prompt] += 1
            return self._seen[prompt]

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _chat(self, body: dict, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """(status, extra response headers, payload) for one chat-completion request."""
        seen = self._begin(body, headers)
        try:
            text = last_user_text(body)
            slow = re.search(r"\[slow:([\d.]+)\]", text)
            if slow:
                self._stop.wait(float(slow.group(1)))
            for code in (500, 429):
                scripted = re.search(rf"\[{code}:(\d+)\]", text)
                if scripted and seen <= int(scripted.group(1)):
                    retry = {"Retry-After": str(RETRY_AFTER_S)} if code == 429 else {}
                    return code, retry, _json({"error": {"message": f"scripted {code}", "code": code}})
            if "[400]" in text:
                return 400, {}, _json({"error": {"message": "scripted bad request", "code": 400}})
            if "[malformed]" in text:
                return 200, {}, b'{"choices": [ this is not json'
            if "[nochoices]" in text:
                return 200, {}, _json({"id": "chatcmpl-fake", "object": "chat.completion"})
            reply = self.responder(body)
            return 200, {}, _json(_completion(body.get("model", self.model), reply))
        finally:
            self._end()


def _completion(model: str, reply: str) -> dict[str, Any]:
    tokens = len(reply.split())
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1},
    }


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do, so the client's pool is exercised
        timeout = 5  # idle keep-alive connections end on their own

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                data = [{"id": server.model, "object": "model", "owned_by": "fake"}]
                self._send(200, {}, _json({"object": "list", "data": data}))
            else:
                self._send(404, {}, _json({"error": {"message": f"no route {self.path}"}}))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {}, _json({"error": {"message": f"no route {self.path}"}}))
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, {}, _json({"error": {"message": "request body is not JSON"}}))
                return
            status, headers, payload = server._chat(body, dict(self.headers))
            self._send(status, headers, payload)

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout); nothing left to tell it

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
