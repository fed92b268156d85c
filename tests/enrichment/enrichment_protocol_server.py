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

Behaviours of real servers, switched on per test:

    accepted_formats     the OpenAI `response_format` forms answered (json_schema, json_object+schema,
                         json_object, text); any other is refused with `format_refusal` (status, body)
    like_llama_cpp_python()   what llama-cpp-python's server does: json_schema refused with HTTP 500 and its
                         body, json_object with or without a `schema` accepted, one embedding vector per token,
                         /models listing only the GGUF file it serves; any model name is answered
    per_token_embeddings one vector per token (a model served without pooling)
    served_models        what /models and /api/tags list (default: fake-chat, fake-embed)

A hanging request that the client gives up on (closes its connection) is noticed and counted in `abandoned`,
as a server that stops generating for a client that left; `max_in_flight` is the most requests it held at once.
"""

from __future__ import annotations

import itertools
import json
import re
import select
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
# What llama-cpp-python's server (0.3.36, seen here) answers to response_format json_schema: HTTP 500 with its
# request validation error (llama.cpp's own server once said 'response_format type must be one of "text" or
# "json_object"' with a 500 as well).
LLAMA_CPP_FORMAT_REFUSAL = (500, {"error": {
    "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
               "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
               "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  File \"llama_cpp/server/app.py\", "
               "line 376, in create_chat_completion\n    POST /v1/chat/completions",
    "type": "internal_server_error", "param": None, "code": None}})
LLAMA_CPP_MODEL = "/models/gemma-3-270m-q4_k_m.gguf"  # its /v1/models lists the --model path
ALL_FORMATS = frozenset({"json_schema", "json_object+schema", "json_object", "text"})
MEMORY_LABEL = "Memory:\n"  # the client puts the memory after this line, below its instructions
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


def fake_token_embeddings(text: str, dim: int) -> list[list[float]]:
    """One vector per "token" (word), as a model served without pooling answers."""
    return [fake_embedding(token, dim) for token in text.split()] or [fake_embedding(text, dim)]


def memory_text(user_content: str) -> str:
    """The memory inside a user message that also carries instructions (the text after the label line)."""
    _, found, after = user_content.partition(MEMORY_LABEL)
    return after if found else user_content


def response_format_form(body: dict) -> str:
    response_format = body.get("response_format") or {}
    kind = response_format.get("type", "text")
    if kind == "json_object" and "schema" in response_format:
        return "json_object+schema"
    return kind


class ProtocolServer:
    """Start with `start()` (or as a context manager); `url` is the Ollama base, `openai_url` the /v1 base."""

    def __init__(self, *, latency: float = 0.0, embedding_dim: int = 16, hang_seconds: float = 3.0,
                 slots: int | None = None) -> None:
        self.latency = latency
        # Requests worked on at once (None: unlimited); the others wait, as in a server with few parallel slots.
        self._slots = threading.BoundedSemaphore(slots) if slots else None
        self.embedding_dim = embedding_dim
        self.hang_seconds = hang_seconds
        self.require_api_key: str | None = None  # if set, OpenAI routes answer 401 without "Bearer <key>"
        self.accepted_formats: frozenset[str] = ALL_FORMATS
        self.format_refusal: tuple[int, dict] = (400, {"error": {"message": "response_format is not supported"}})
        self.per_token_embeddings = False
        self.echo_authorization = False  # a 401 body repeats the Authorization header (some proxies do)
        self.served_models: list[str] | None = None
        self.abandoned = 0  # hanging requests whose client closed the connection before the answer
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._modes: dict[str, str] = {}
        self._patterns: dict[str, Any] = {}
        self._queues: dict[str, deque[str]] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- control --------------------------------------------------------------------------------------
    def like_llama_cpp_python(self) -> "ProtocolServer":
        self.accepted_formats = frozenset({"json_object+schema", "json_object", "text"})
        self.format_refusal = LLAMA_CPP_FORMAT_REFUSAL
        self.per_token_embeddings = True
        self.served_models = [LLAMA_CPP_MODEL]
        return self

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
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            if server._slots is None:
                self._answer(method, route_info, api, route, body)
            else:
                with server._slots:
                    self._answer(method, route_info, api, route, body)
        finally:
            with server._lock:
                server.in_flight -= 1

    def _client_left(self, seconds: float) -> bool:
        """Wait up to `seconds`; True as soon as the client closes the connection (as llama.cpp checks)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
            if readable:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
        return False

    def _answer(self, method: str, route_info, api: str, route: str, body: Any) -> None:
        server = self.owner
        if route_info is None:
            self._send(404, {"error": f"no route {method} {self.path}"})
            return
        mode = server._next_mode(route)
        if server.latency:
            time.sleep(server.latency)
        if mode == "hang":
            if self._client_left(server.hang_seconds):
                with server._lock:
                    server.abandoned += 1
                self.close_connection = True
                return
            mode = "ok"
        if api == "openai" and server.require_api_key is not None:
            if self.headers.get("Authorization") != f"Bearer {server.require_api_key}":
                message = "invalid api key"
                if server.echo_authorization:
                    message += f" in header Authorization: {self.headers.get('Authorization')}"
                self._send(401, {"error": {"message": message}})
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
        served = self.owner.served_models
        if api == "ollama":
            names = served if served is not None else ["fake-chat:latest", "fake-embed:latest"]
            self._send(200, {"models": [{"name": name, "model": name} for name in names]})
        else:
            names = served if served is not None else ["fake-chat", "fake-embed"]
            self._send(200, {"object": "list", "data": [{"id": name, "object": "model"} for name in names]})

    def _chat(self, api: str, body: dict, mode: str) -> None:
        server = self.owner
        if api == "openai" and response_format_form(body) not in server.accepted_formats:
            status, payload = server.format_refusal
            self._send(status, payload)
            return
        user = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        text = memory_text(user)
        response_format = body.get("response_format") or {}
        schema = body.get("format") if api == "ollama" else \
            response_format.get("json_schema", {}).get("schema") or response_format.get("schema")
        asks_insights = (isinstance(schema, dict) and "insights" in schema.get("properties", {})) or \
            (schema is None and '"insights"' in user)
        if asks_insights:
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
        if self.owner.per_token_embeddings:
            vectors = [fake_token_embeddings(text, dim) for text in texts]
        else:
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
