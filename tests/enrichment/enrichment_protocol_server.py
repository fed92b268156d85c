"""A real HTTP server that speaks the Ollama and OpenAI-compatible protocols, for tests and benchmarks.

It is a protocol test double: answers are derived deterministically from the request text, and faults are
switched on per route ("chat", "embed", "models") or scripted request by request:

    ok            a valid answer
    error         500
    rate_limit    429 with Retry-After: 0
    garbage       200, but the chat content is not JSON (embed: `embeddings` is a string)
    bad_body      200 with a body that is not JSON at all
    out_of_range  200, chat sentiment 3.5 (embed: one zero vector)
    missing       200, chat answer without `importance`
    wrong_dim     200, embed vectors one dimension longer
    hang          sleep `hang_seconds` before answering (beyond the client's timeout)

Every request is recorded (method, path, headers, decoded body) so tests can check endpoints, model names,
schemas and the Authorization header.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROUTES = {
    ("POST", "/api/chat"): ("ollama", "chat"),
    ("POST", "/api/embed"): ("ollama", "embed"),
    ("GET", "/api/tags"): ("ollama", "models"),
    ("POST", "/v1/chat/completions"): ("openai", "chat"),
    ("POST", "/v1/embeddings"): ("openai", "embed"),
    ("GET", "/v1/models"): ("openai", "models"),
}
_POSITIVE = ("love", "great", "happy", "wonderful", "delight", "thrilled")
_NEGATIVE = ("awful", "sad", "terrible", "hate", "furious", "scared")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    api: str
    route: str
    headers: dict[str, str]
    body: Any


def fake_enrichment(text: str) -> dict:
    """A deterministic, valid enrichment derived from the text."""
    lower = text.lower()
    sentiment = 0.7 if any(w in lower for w in _POSITIVE) else -0.7 if any(w in lower for w in _NEGATIVE) else 0.0
    words = re.findall(r"[A-Za-z]+", text)
    entities = sorted({w for w in words[1:] if w[0].isupper() and w != "I"})
    topics = sorted({w.lower() for w in words if len(w) > 6})[:3] or ["note"]
    place = re.search(r"\bin ([A-Z][a-z]+)", text)
    return {
        "entities": entities,
        "topics": topics,
        "sentiment": sentiment,
        "emotional_salience": abs(sentiment),
        "importance": 0.8 if "!" in text else 0.4,
        "goal": None,
        "task": "reply" if "need to" in lower else None,
        "action": None,
        "locations": [place.group(1)] if place else [],
        "egocentric_locations": [],
    }


def fake_embedding(text: str, dim: int) -> list[float]:
    """Deterministic, never zero (every component is at least 1)."""
    return [1.0 + (sum(map(ord, text[i::dim])) % 97) / 97.0 for i in range(dim)]


class ProtocolServer:
    """Start with `start()` (or as a context manager); `url` is the Ollama base, `openai_url` the /v1 base."""

    def __init__(self, *, latency: float = 0.0, embedding_dim: int = 16, hang_seconds: float = 3.0) -> None:
        self.latency = latency
        self.embedding_dim = embedding_dim
        self.hang_seconds = hang_seconds
        self.require_api_key: str | None = None  # if set, OpenAI routes answer 401 without "Bearer <key>"
        self.reject_json_schema = False  # if set, OpenAI chat answers 400 to response_format json_schema
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._modes: dict[str, str] = {}
        self._patterns: dict[str, Any] = {}
        self._queues: dict[str, deque[str]] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- control --------------------------------------------------------------------------------------
    def set_mode(self, route: str, mode: str) -> None:
        """Answer every request on `route` ("chat", "embed", "models" or "all") in `mode`."""
        with self._lock:
            for name in (("chat", "embed", "models") if route == "all" else (route,)):
                self._modes[name] = mode
                self._patterns.pop(name, None)
                self._queues.pop(name, None)

    def set_pattern(self, route: str, modes: list[str]) -> None:
        """Cycle through `modes`, one per request on `route` (e.g. a flapping server)."""
        with self._lock:
            self._patterns[route] = itertools.cycle(modes)

    def queue(self, route: str, modes: list[str]) -> None:
        """Answer the next len(modes) requests on `route` with these modes, then as before."""
        with self._lock:
            self._queues.setdefault(route, deque()).extend(modes)

    def reset(self) -> None:
        with self._lock:
            self._modes.clear()
            self._patterns.clear()
            self._queues.clear()
            self.requests.clear()

    def count(self, route: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if route is None or r.route == route)

    def bodies(self, route: str) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests if r.route == route]

    def _next_mode(self, route: str) -> str:
        with self._lock:
            queue = self._queues.get(route)
            if queue:
                return queue.popleft()
            if route in self._patterns:
                return next(self._patterns[route])
            return self._modes.get(route, "ok")

    # ---- lifecycle ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> "ProtocolServer":
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "ProtocolServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    owner: ProtocolServer
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and delayed ACKs
        # add ~40 ms to every keep-alive request (Go's net/http, which Ollama uses, sets it too).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _send(self, status: int, payload: Any = None, *, raw: bytes | None = None,
              headers: dict[str, str] | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to do

    def _dispatch(self, method: str) -> None:
        server = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode(errors="replace")
        route_info = ROUTES.get((method, self.path))
        api, route = route_info if route_info else ("unknown", "unknown")
        with server._lock:
            server.requests.append(RecordedRequest(method, self.path, api, route,
                                                   {k.lower(): v for k, v in self.headers.items()}, body))
        if route_info is None:
            self._send(404, {"error": f"no route {method} {self.path}"})
            return
        mode = server._next_mode(route)
        if server.latency:
            time.sleep(server.latency)
        if mode == "hang":
            time.sleep(server.hang_seconds)
            mode = "ok"
        if api == "openai" and server.require_api_key is not None:
            if self.headers.get("Authorization") != f"Bearer {server.require_api_key}":
                self._send(401, {"error": {"message": "invalid api key"}})
                return
        if mode == "error":
            self._send(500, {"error": "internal error"})
        elif mode == "rate_limit":
            self._send(429, {"error": "slow down"}, headers={"Retry-After": "0"})
        elif mode == "bad_body":
            self._send(200, raw=b"<html>this is not json")
        elif route == "models":
            self._models(api)
        elif route == "chat":
            self._chat(api, body, mode)
        else:
            self._embed(api, body, mode)

    def _models(self, api: str) -> None:
        if api == "ollama":
            self._send(200, {"models": [{"name": "fake-chat:latest", "model": "fake-chat:latest"},
                                        {"name": "fake-embed:latest", "model": "fake-embed:latest"}]})
        else:
            self._send(200, {"object": "list", "data": [{"id": "fake-chat", "object": "model"},
                                                        {"id": "fake-embed", "object": "model"}]})

    def _chat(self, api: str, body: dict, mode: str) -> None:
        server = self.owner
        if api == "openai" and server.reject_json_schema and body["response_format"]["type"] == "json_schema":
            self._send(400, {"error": {"message": "response_format json_schema is not supported"}})
            return
        text = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        schema = body.get("format") if api == "ollama" else \
            (body.get("response_format") or {}).get("json_schema", {}).get("schema")
        if isinstance(schema, dict) and "insights" in schema.get("properties", {}):
            # a request for narrative insights: answer in that schema, citing how much it was given
            answer = {"insights": [{"title": "A pattern", "body": f"Derived from {len(text.splitlines())} findings."}]}
        else:
            answer = fake_enrichment(text)
        if mode == "out_of_range":
            answer["sentiment"] = 3.5
        elif mode == "missing":
            del answer["importance"]
        content = "{'entities': [oops" if mode == "garbage" else json.dumps(answer)
        if api == "ollama":
            self._send(200, {"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                             "message": {"role": "assistant", "content": content},
                             "done": True, "done_reason": "stop"})
        else:
            self._send(200, {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": content}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def _embed(self, api: str, body: dict, mode: str) -> None:
        dim = self.owner.embedding_dim + (1 if mode == "wrong_dim" else 0)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = [fake_embedding(text, dim) for text in texts]
        if mode == "out_of_range" and vectors:
            vectors[0] = [0.0] * dim
        if api == "ollama":
            self._send(200, {"model": body["model"], "embeddings": "oops" if mode == "garbage" else vectors})
        else:
            # Reversed on purpose: clients must order by `index`, not by position.
            data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)][::-1]
            self._send(200, {"object": "list", "model": body["model"],
                             "data": "oops" if mode == "garbage" else data})
