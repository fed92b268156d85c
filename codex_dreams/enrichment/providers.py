"""HTTP clients for the remote providers: Ollama's native API and OpenAI-compatible servers.

Both speak JSON over httpx with explicit timeouts, retry transient failures (tenacity) and keep one circuit
breaker per server (chat and embeddings share it when they go to the same server). Every chat answer is
validated by `Enrichment`; every embedding answer is read in the shapes servers actually send (`embeddings`,
`embedding`, `data[].embedding`, one vector per token), checked (count, one dimension, finite, non-zero) and
normalised.

What real servers taught (docs/enrichment.md has the table):
- The instructions go in the user message, with a short system message: some chat templates (gemma's) drop the
  system message.
- `max_tokens` (Ollama: `num_predict`) is always sent: without it a small model ran on for minutes.
- OpenAI-compatible servers disagree on `response_format`; the form a server accepts is negotiated once
  (`json_schema`, else `json_object` with a `schema`, else plain `json_object` with the schema in the prompt)
  and remembered (`capabilities.py`). A refusal is recognised by its body, whatever its status (400, 422, 500).
- Error messages carry the status and a shortened, scrubbed body: never a header or an API key.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import httpx
import numpy as np
import tenacity

from codex_dreams.enrichment.capabilities import STRUCTURED_OUTPUT_FORMS, FILE_NAME, CapabilityMemo
from codex_dreams.enrichment.embeddings import l2_normalize
from codex_dreams.enrichment.models import Enrichment, InvalidOutputError, enrichment_json_schema, parse_enrichment
from codex_dreams.enrichment.resilience import CircuitBreaker, CircuitOpenError, ResilienceOptions
from codex_dreams.settings import Settings, redact_url

logger = logging.getLogger(__name__)

# A complete enrichment (10 entities, 5 topics, three short phrases, a few places) is 150-400 tokens. 1024 leaves
# room for a wordy model and the whitespace a JSON grammar allows, and ends a runaway generation (one request
# without a limit ran 282 s on a CPU server) after about a thousand tokens.
ENRICHMENT_MAX_TOKENS = 1024
# complete_json's default: its one caller asks for three insights of up to 2,000 characters (~1,500 tokens).
JSON_ANSWER_MAX_TOKENS = 2048
# A server's error body is shortened to this in errors, logs and the stored fallback reason.
ERROR_BODY_CHARS = 200
# Fallback reasons stored per row are cut here (a reason is one line, not a document).
REASON_CHARS = 400
# A local server accepts a connection at once; waiting longer only delays the fallback.
CONNECT_TIMEOUT_S = 5.0

SYSTEM_MESSAGE = "You annotate personal memories. Answer with a single JSON object and nothing else."
ENRICHMENT_INSTRUCTIONS = """Annotate the personal memory below for a long-term memory system.
Answer with a single JSON object and nothing else, with these fields:
- entities: named people, organisations, products and named places in the text, as written (at most 10).
- topics: one to five short lowercase key phrases saying what the memory is about.
- sentiment: emotional valence from -1 (very negative) through 0 (neutral) to 1 (very positive).
- emotional_salience: 0 to 1, how emotionally charged the memory is, whatever the sign.
- importance: 0 to 1, how likely the person will need this later (commitments, decisions, people, health,
  strong feelings score high; routine chatter scores low).
- goal: the longer-term aim behind the memory, or null. task: the concrete thing to do or being done, or null.
  action: the main action the person took, as a short verb phrase, or null.
- locations: named places (cities, venues, addresses, rooms), or an empty list.
- egocentric_locations: places described relative to the speaker or a landmark ("to my left",
  "two blocks north of the station", "behind the house"), or an empty list.
Use only what the text says."""
MEMORY_LABEL = "Memory:"

# An error body that speaks of the output format: the server refuses the form, not the request.
_FORMAT_REFUSAL = re.compile(r"response_format|json_schema|json_object|\bschema\b|grammar", re.IGNORECASE)
_POOLING_WARNED: set[tuple[str, str]] = set()
_POOLING_LOCK = threading.Lock()
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;}]+")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^@\s/]+@")


class Log(Protocol):
    """Where a run's lines go: Dagster's context.log in the asset, else this module's logger."""

    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """`text` without the given secrets, bearer tokens or URL passwords."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _URL_PASSWORD.sub(r"\1***@", _BEARER.sub(r"\1***", text))


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def user_message(instructions: str, content: str, *, label: str | None = None, schema: dict | None = None) -> str:
    """The user message: instructions (where every chat template keeps them), the schema if the server cannot
    enforce it, then the content."""
    parts = [instructions]
    if schema is not None:
        parts.append("The JSON object must match this JSON schema:\n" + json.dumps(schema, separators=(",", ":")))
    parts.append(f"{label}\n{content}" if label else content)
    return "\n\n".join(parts)


def chat_messages(instructions: str, content: str, *, label: str | None = None,
                  schema: dict | None = None) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_MESSAGE},
            {"role": "user", "content": user_message(instructions, content, label=label, schema=schema)}]


class ProviderError(RuntimeError):
    """A remote call failed; `kind` is the fallback reason's first word, `status` the HTTP status if any."""

    kind = "unavailable"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientHTTPError(ProviderError):
    """Timeout, refused connection, 5xx or 429: worth retrying after a pause."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class RejectedError(ProviderError):
    """A 4xx other than 429: retrying the same request will not help (wrong model name, bad key, ...)."""

    kind = "rejected"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, status)


class UnsupportedFormatError(RejectedError):
    """The server refused the request's output format (`response_format` / `format`), whatever the status."""


class AbandonedError(ProviderError):
    """The provider was closed (the run ended or was stopped): the request was not sent."""

    kind = "abandoned"


def failure_kind(error: BaseException) -> str:
    """The fallback reason's kind for an exception raised by a provider call."""
    if isinstance(error, CircuitOpenError):
        return reason_kind(error.cause) if error.cause else "circuit_open"
    if isinstance(error, InvalidOutputError):
        return "invalid_output"
    if isinstance(error, ProviderError):
        return error.kind
    return "error"


def fallback_reason(error: BaseException) -> str:
    """What a row that fell back stores as `fallback_reason`: "<kind>: <what happened>". For a memory the open
    breaker kept from the server, the failure that opened it (the first real cause, not "circuit_open")."""
    if isinstance(error, CircuitOpenError):
        return shorten(f"{error.cause} [circuit open: not sent]", REASON_CHARS) if error.cause else "circuit_open"
    return shorten(f"{failure_kind(error)}: {error}", REASON_CHARS)


def reason_kind(reason: str) -> str:
    """The kind (first word) of a stored fallback reason."""
    return re.split(r"[:\s]", reason, maxsplit=1)[0]


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def validate_embeddings(vectors: Any, expected: int, who: str) -> np.ndarray:
    """Decoded embedding lists (one vector per text) -> unit float32 matrix; InvalidOutputError if unusable.

    A zero or non-finite vector has no direction: storing it would poison cosine search, so it is rejected.
    """
    if not isinstance(vectors, list) or len(vectors) != expected:
        got = len(vectors) if isinstance(vectors, list) else type(vectors).__name__
        raise InvalidOutputError(f"{who} returned {got} embeddings for {expected} texts")
    try:
        matrix = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidOutputError(f"{who} returned embeddings that are not equal-length lists of numbers") from None
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise InvalidOutputError(f"{who} returned embeddings of inconsistent or empty dimension")
    if not np.all(np.isfinite(matrix)):
        raise InvalidOutputError(f"{who} returned non-finite embedding values")
    if np.any(np.linalg.norm(matrix, axis=1) == 0):
        raise InvalidOutputError(f"{who} returned a zero embedding vector")
    return l2_normalize(matrix)


def embedding_lists(data: Any, expected: int, who: str) -> list:
    """The per-text embeddings in any common answer shape: OpenAI `data[].embedding` (ordered by `index`),
    Ollama `embeddings` (/api/embed) or `embedding` (/api/embeddings, one text), or a bare list."""
    if isinstance(data, dict) and "data" in data:
        items = data["data"]
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise InvalidOutputError(f"{who} reply has no data list")
        # The API returns an index per item; order by it rather than trusting the list order.
        items = sorted(items, key=lambda item: item.get("index", 0) if isinstance(item.get("index"), int) else 0)
        return [item.get("embedding") for item in items]
    if isinstance(data, dict) and "embeddings" in data:
        return data["embeddings"]
    if isinstance(data, dict) and "embedding" in data:
        return [data["embedding"]] if expected == 1 else data["embedding"]
    if isinstance(data, list):
        return data
    raise InvalidOutputError(f"{who} reply has none of data, embeddings, embedding")


def pool_token_vectors(vectors: list, who: str) -> tuple[list, bool]:
    """Per-text vectors; a text answered with one vector per token (a server without pooling) becomes their
    mean. Returns (vectors, whether any was pooled)."""
    pooled = False
    out = []
    for vector in vectors if isinstance(vectors, list) else []:
        if isinstance(vector, list) and vector and all(isinstance(token, list) for token in vector):
            try:
                tokens = np.asarray(vector, dtype=np.float32)
            except (TypeError, ValueError):
                raise InvalidOutputError(f"{who} returned per-token vectors of unequal length") from None
            out.append(tokens.mean(axis=0))
            pooled = True
        else:
            out.append(vector)
    return (out if isinstance(vectors, list) else vectors), pooled


@dataclass
class _Server:
    """One server the provider talks to, with its own breaker (a dead embedding server must not stop chat)."""

    base_url: str = field(repr=False)  # may hold a password
    headers: dict[str, str] = field(repr=False)  # the Authorization header: never in a repr
    breaker: CircuitBreaker
    last_failure: str | None = None  # "<kind>: <detail>" of the latest failed request
    opened_by: str | None = None  # the failure that last opened the breaker


class RemoteProvider:
    """Shared HTTP plumbing: timeouts, connection pool, retries with backoff, circuit breakers, counters."""

    name = "remote"

    def __init__(self, *, base_url: str, chat_model: str, embedding_model: str, timeout: float,
                 max_concurrency: int, options: ResilienceOptions, headers: dict[str, str] | None = None,
                 embedding_base_url: str | None = None, embedding_headers: dict[str, str] | None = None,
                 secrets: Sequence[str] = (), log: Log | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.chat_model = chat_model
        self.embedding_model = embedding_model
        self.timeout = timeout
        self.options = options
        self.log = log or logger
        self._secrets = tuple(s for s in secrets if s)
        self.chat_server = _Server(self.base_url, dict(headers or {}),
                                   CircuitBreaker(options.breaker_failure_threshold, options.breaker_cooldown_s))
        embedding_url = (embedding_base_url or base_url).rstrip("/")
        embedding_headers = dict(headers or {}) if embedding_headers is None else dict(embedding_headers)
        if embedding_url == self.base_url and embedding_headers == self.chat_server.headers:
            self.embedding_server = self.chat_server  # one server: one breaker for chat and embeddings
        else:
            self.embedding_server = _Server(embedding_url, embedding_headers, CircuitBreaker(
                options.breaker_failure_threshold, options.breaker_cooldown_s))
        connections = max_concurrency * (1 if self.embedding_server is self.chat_server else 2)
        self._client = httpx.Client(
            # Read timeout per request; a timed-out request's connection is closed (httpx does not reuse it),
            # which is how a server learns that nobody waits for the answer any more.
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S)),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self._counts_lock = threading.Lock()
        self.closed = False
        self.requests = 0
        self.retries = 0
        self.http_errors = 0  # attempts answered with an error status or lost in transport (retries included)
        self._pooling_warned = False
        self._backoff = tenacity.wait_exponential_jitter(initial=options.backoff_initial_s,
                                                         max=options.backoff_max_s)

    def __repr__(self) -> str:  # no headers: an API key must never reach a log line
        return f"{type(self).__name__}(base_url={redact_url(self.base_url)!r}, chat_model={self.chat_model!r})"

    @property
    def breaker(self) -> CircuitBreaker:
        """The chat server's breaker."""
        return self.chat_server.breaker

    @property
    def breakers(self) -> list[CircuitBreaker]:
        servers = [self.chat_server] if self.embedding_server is self.chat_server else [self.chat_server,
                                                                                         self.embedding_server]
        return [server.breaker for server in servers]

    def close(self) -> None:
        """Stop: no new request is sent, pooled connections are closed."""
        self.closed = True
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- HTTP ------------------------------------------------------------------------------------------
    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, TransientHTTPError) and error.retry_after is not None:
            return min(error.retry_after, self.options.retry_after_cap_s)
        return self._backoff(retry_state)

    def _count_retry(self, retry_state: tenacity.RetryCallState) -> None:
        with self._counts_lock:
            self.retries += 1

    def _body_excerpt(self, response: httpx.Response) -> str:
        try:
            text = response.text
        except Exception:  # undecodable bytes: the status alone must do
            return "(unreadable body)"
        return shorten(scrub(text, self._secrets), ERROR_BODY_CHARS) or "(empty body)"

    def _failed(self, server: _Server, error: ProviderError, *, trip: bool = True) -> ProviderError:
        """Count a failed attempt, remember it as a possible cause, feed the breaker; returns the error."""
        with self._counts_lock:
            self.http_errors += 1
            server.last_failure = f"{error.kind}: {error}"
        if trip:
            opens = server.breaker.opens
            server.breaker.record_failure()
            if server.breaker.opens != opens:
                server.opened_by = server.last_failure
        else:
            server.breaker.record_success()  # the server is alive and answering: not an outage
        return error

    def _attempt(self, server: _Server, method: str, path: str, body: dict | None) -> Any:
        if self.closed:
            raise AbandonedError(f"{self.name}: provider closed; not calling {path}")
        if not server.breaker.allow():
            raise CircuitOpenError(f"{self.name}: circuit open after repeated failures; not calling {path}",
                                   cause=server.opened_by or server.last_failure)
        with self._counts_lock:
            self.requests += 1
        where = f"{self.name} {method} {redact_url(server.base_url)}{path}"
        # Every allowed attempt records exactly one outcome, or a half-open breaker would wait forever.
        try:
            response = self._client.request(method, server.base_url + path, json=body, headers=server.headers)
        except httpx.TimeoutException:
            raise self._failed(server, TransientHTTPError(f"{where} timed out after {self.timeout:g} s")) from None
        except httpx.HTTPError as error:
            what = shorten(scrub(str(error), self._secrets), ERROR_BODY_CHARS)
            raise self._failed(server, TransientHTTPError(f"{where} failed: {type(error).__name__}"
                                                          + (f" ({what})" if what else ""))) from None
        except BaseException as error:
            server.breaker.record_failure()
            if self.closed:  # the client was closed under this request (the run was abandoned)
                raise AbandonedError(f"{where} abandoned") from None
            raise error
        status = response.status_code
        if status >= 400:
            detail = f"{where} answered {status}: {self._body_excerpt(response)}"
            if status == 429:  # alive, asking us to slow down: back off, do not trip
                raise self._failed(server, TransientHTTPError(detail, _retry_after_seconds(response), status),
                                   trip=False)
            if body is not None and ("response_format" in body or "format" in body) \
                    and _FORMAT_REFUSAL.search(response.text or ""):
                # A refused output form is answered 400, 422 or even 500 (llama-cpp-python): never retried as
                # transient, and it says nothing about the server's health.
                raise self._failed(server, UnsupportedFormatError(detail, status), trip=False)
            if status >= 500 or status == 408:
                raise self._failed(server, TransientHTTPError(detail, status=status))
            # 400/422 are about this request; 401/403/404 mean a misconfigured server, which counts towards the
            # breaker so a dead configuration stops being called.
            raise self._failed(server, RejectedError(detail, status), trip=status not in (400, 422))
        server.breaker.record_success()
        try:
            return response.json()
        except ValueError:
            raise InvalidOutputError(f"{where} answered with a body that is not JSON") from None

    def _request(self, server: _Server, method: str, path: str, body: dict | None = None) -> Any:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.options.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(TransientHTTPError),
            before_sleep=self._count_retry,
            reraise=True,
        )
        return retrying(self._attempt, server, method, path, body)

    # ---- API -------------------------------------------------------------------------------------------
    def chat(self, instructions: str, content: str, schema: dict, schema_name: str, *, max_tokens: int,
             label: str | None = None) -> str:
        """One chat completion constrained to a JSON schema; returns the raw content text."""
        raise NotImplementedError

    def enrich(self, text: str) -> Enrichment:
        return parse_enrichment(self.chat(ENRICHMENT_INSTRUCTIONS, text, enrichment_json_schema(),
                                          "memory_enrichment", max_tokens=ENRICHMENT_MAX_TOKENS,
                                          label=MEMORY_LABEL))

    def complete_json(self, prompt: str, schema: dict, system: str = "Answer with JSON only.",
                      schema_name: str = "answer", max_tokens: int = JSON_ANSWER_MAX_TOKENS) -> Any:
        """A JSON answer to `prompt` under `schema` (InvalidOutputError if the reply is not JSON). `system` is
        the instruction; it travels in the user message, ahead of the prompt."""
        content = self.chat(system, prompt, schema, schema_name, max_tokens=max_tokens)
        try:
            return json.loads(content)
        except (TypeError, ValueError):
            raise InvalidOutputError(f"{self.name} answered with content that is not JSON") from None

    def _embedding_matrix(self, data: Any, expected: int, who: str) -> np.ndarray:
        vectors, pooled = pool_token_vectors(embedding_lists(data, expected, who), who)
        if pooled and self._first_pooling():
            self.log.warning(
                f"{who}: {self.embedding_model!r} returned one vector per token (the server does not pool); "
                "using their mean, L2-normalised. Serve the model with pooling (llama.cpp: --pooling mean) for "
                "its own sentence embeddings.")
        return validate_embeddings(vectors, expected, who)

    def _first_pooling(self) -> bool:
        """Whether to say that this model's vectors are pooled: once per run log (a run's own provider), and once
        per process for the plain logger (a recall query builds a provider per call)."""
        with self._counts_lock:
            if self._pooling_warned:
                return False
            self._pooling_warned = True
        if self.log is not logger:
            return True
        key = (self.embedding_server.base_url, self.embedding_model)
        with _POOLING_LOCK:
            first = key not in _POOLING_WARNED
            _POOLING_WARNED.add(key)
        return first

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def list_models(self, server: str = "chat") -> list[str]:
        """Model names the chat (or "embedding") server lists."""
        raise NotImplementedError


class OllamaProvider(RemoteProvider):
    """Ollama's native API: /api/chat with `format` = the JSON schema, /api/embed, /api/tags."""

    name = "ollama"

    def chat(self, instructions: str, content: str, schema: dict, schema_name: str, *, max_tokens: int,
             label: str | None = None) -> str:
        body = {
            "model": self.chat_model,
            "messages": chat_messages(instructions, content, label=label),
            "format": schema,
            "stream": False,
            "options": {"temperature": 0, "num_predict": max_tokens},
        }
        data = self._request(self.chat_server, "POST", "/api/chat", body)
        try:
            answer = data["message"]["content"]
        except (KeyError, TypeError):
            raise InvalidOutputError("ollama /api/chat reply has no message.content") from None
        if data.get("done_reason") == "length":
            raise InvalidOutputError(f"ollama /api/chat answer was cut off at num_predict={max_tokens} tokens")
        return answer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        data = self._request(self.embedding_server, "POST", "/api/embed",
                             {"model": self.embedding_model, "input": list(texts)})
        return self._embedding_matrix(data, len(texts), "ollama /api/embed")

    def list_models(self, server: str = "chat") -> list[str]:
        data = self._request(self.chat_server if server == "chat" else self.embedding_server, "GET", "/api/tags")
        return [m.get("name") or m.get("model") for m in (data or {}).get("models", []) if isinstance(m, dict)]


def _response_format(form: str, schema: dict, schema_name: str) -> dict:
    if form == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": schema_name, "strict": True, "schema": schema}}
    if form == "json_object+schema":
        return {"type": "json_object", "schema": schema}  # llama-cpp-python's form: a grammar from the schema
    return {"type": "json_object"}  # the schema travels in the user message


class OpenAIProvider(RemoteProvider):
    """OpenAI-compatible API: /chat/completions with the negotiated `response_format`, /embeddings, /models.
    The API keys go only into the Authorization headers."""

    name = "openai"

    def __init__(self, *, api_key: str | None = None, embedding_api_key: str | None = None,
                 capabilities: CapabilityMemo | None = None, **kwargs) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        embedding_key = embedding_api_key or api_key
        embedding_headers = {"Authorization": f"Bearer {embedding_key}"} if embedding_key else {}
        super().__init__(headers=headers, embedding_headers=embedding_headers,
                         secrets=(api_key or "", embedding_key or ""), **kwargs)
        self._capabilities = capabilities or CapabilityMemo(None)
        self._negotiation = threading.Lock()
        self._refused: RejectedError | None = None  # every form refused: fail at once from then on
        self.structured_output = self._capabilities.get(self.base_url, self.chat_model)
        self._announced = False

    def _chat_body(self, form: str, instructions: str, content: str, schema: dict, schema_name: str,
                   max_tokens: int, label: str | None) -> dict:
        return {
            "model": self.chat_model,
            "messages": chat_messages(instructions, content, label=label,
                                      schema=schema if form == "json_object" else None),
            "response_format": _response_format(form, schema, schema_name),
            "temperature": 0,
            "max_tokens": max_tokens,
        }

    def _settle(self, form: str, how: str) -> None:
        if self.structured_output != form or how == "negotiated":
            self._capabilities.put(self.base_url, self.chat_model, form)
        self.structured_output = form
        if not self._announced:
            self._announced = True
            self.log.info(f"openai: structured output as response_format {form} for {self.chat_model!r} at "
                          f"{redact_url(self.base_url)} ({how})")

    def _negotiate(self, build) -> Any:
        """Try the forms in order of preference until the server accepts one (called under the lock)."""
        refusals, last = [], None
        for form in STRUCTURED_OUTPUT_FORMS:
            try:
                data = self._request(self.chat_server, "POST", "/chat/completions", build(form))
            except UnsupportedFormatError as error:
                refusals.append(f"{form}: {error.status}")
                last = error
                self.log.info(f"openai: the server refused response_format {form} ({error}); trying the next form")
                continue
            self._settle(form, "negotiated")
            return data
        self._refused = RejectedError(f"openai refused every structured output form ({', '.join(refusals)}); "
                                      f"last: {last}", last.status if last else None)
        self._capabilities.put(self.base_url, self.chat_model, None)
        raise self._refused

    def chat(self, instructions: str, content: str, schema: dict, schema_name: str, *, max_tokens: int,
             label: str | None = None) -> str:
        def build(form: str) -> dict:
            return self._chat_body(form, instructions, content, schema, schema_name, max_tokens, label)

        if self._refused is not None:
            raise self._refused
        form = self.structured_output
        data = None
        if form is not None:
            try:
                data = self._request(self.chat_server, "POST", "/chat/completions", build(form))
                if not self._announced:
                    self._settle(form, "remembered")
            except UnsupportedFormatError:
                # The remembered form stopped working (the server changed): negotiate afresh.
                with self._negotiation:
                    if self.structured_output == form:
                        self.structured_output = None
                form = None
        if form is None:
            # One request negotiates; the others wait for its answer instead of each being refused.
            with self._negotiation:
                if self._refused is not None:
                    raise self._refused
                form = self.structured_output
                if form is None:
                    data = self._negotiate(build)
            if data is None:
                data = self._request(self.chat_server, "POST", "/chat/completions", build(form))
        try:
            choice = data["choices"][0]
            answer = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise InvalidOutputError("openai /chat/completions reply has no choices[0].message.content") from None
        if answer is None:
            raise InvalidOutputError("openai /chat/completions reply has empty content (refusal?)")
        if choice.get("finish_reason") == "length":
            raise InvalidOutputError(f"openai /chat/completions answer was cut off at max_tokens={max_tokens}")
        return answer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        body = {"model": self.embedding_model, "input": list(texts), "encoding_format": "float"}
        data = self._request(self.embedding_server, "POST", "/embeddings", body)
        return self._embedding_matrix(data, len(texts), "openai /embeddings")

    def list_models(self, server: str = "chat") -> list[str]:
        data = self._request(self.chat_server if server == "chat" else self.embedding_server, "GET", "/models")
        return [m.get("id") for m in (data or {}).get("data", []) if isinstance(m, dict)]


def build_remote_provider(settings: Settings, options: ResilienceOptions | None = None, *,
                          log: Log | None = None, timeout: float | None = None) -> RemoteProvider:
    """The configured remote provider (settings.llm_provider must be "ollama" or "openai").

    OLLAMA_TIMEOUT is the per-request (read) timeout for either server unless `timeout` is given.
    """
    options = options or ResilienceOptions()
    common = dict(timeout=timeout or settings.ollama_timeout, max_concurrency=settings.max_concurrency,
                  options=options, log=log)
    if settings.llm_provider == "ollama":
        return OllamaProvider(base_url=settings.ollama_url, chat_model=settings.ollama_model,
                              embedding_model=settings.embedding_model, **common)
    if settings.llm_provider == "openai":
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        embedding_key = settings.embedding_api_key.get_secret_value() if settings.embedding_api_key else None
        return OpenAIProvider(base_url=settings.openai_base_url, chat_model=settings.openai_model,
                              embedding_model=settings.openai_embedding_model, api_key=key,
                              embedding_base_url=settings.embedding_base_url, embedding_api_key=embedding_key,
                              capabilities=CapabilityMemo(settings.codex_home.expanduser() / FILE_NAME), **common)
    raise ValueError(f"no remote provider for CODEX_LLM_PROVIDER={settings.llm_provider!r}")
