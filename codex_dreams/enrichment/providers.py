"""HTTP clients for the remote providers: Ollama's native API and OpenAI-compatible servers.

Both speak JSON over httpx with an explicit timeout, retry transient failures (tenacity) and share one circuit
breaker per provider instance (chat and embeddings go to the same server). Every chat answer is validated by
`Enrichment`; every embedding response is checked (count, one dimension, finite, non-zero) and normalised.
Error messages name the provider, endpoint and status, never a header or an API key.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Sequence

import httpx
import numpy as np
import tenacity

from codex_dreams.enrichment.embeddings import l2_normalize
from codex_dreams.enrichment.models import Enrichment, InvalidOutputError, enrichment_json_schema, parse_enrichment
from codex_dreams.enrichment.resilience import CircuitBreaker, CircuitOpenError, ResilienceOptions
from codex_dreams.settings import Settings, redact_url

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = """You annotate one personal memory for a long-term memory system.
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


class ProviderError(RuntimeError):
    """A remote call failed; `kind` is the fallback reason recorded for the memory."""

    kind = "unavailable"


class TransientHTTPError(ProviderError):
    """Timeout, refused connection, 5xx or 429: worth retrying after a pause."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RejectedError(ProviderError):
    """A 4xx other than 429: retrying the same request will not help (wrong model name, bad key, ...)."""

    kind = "rejected"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def failure_kind(error: BaseException) -> str:
    """The fallback reason for an exception raised by a provider call."""
    if isinstance(error, CircuitOpenError):
        return "circuit_open"
    if isinstance(error, InvalidOutputError):
        return "invalid_output"
    if isinstance(error, ProviderError):
        return error.kind
    return "error"


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def validate_embeddings(vectors: Any, expected: int, who: str) -> np.ndarray:
    """Decoded embedding lists -> unit float32 matrix; InvalidOutputError for anything unusable.

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


class RemoteProvider:
    """Shared HTTP plumbing: timeout, connection pool, retries with backoff, circuit breaker, counters."""

    name = "remote"

    def __init__(self, *, base_url: str, chat_model: str, embedding_model: str, timeout: float,
                 max_concurrency: int, options: ResilienceOptions, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.chat_model = chat_model
        self.embedding_model = embedding_model
        self.timeout = timeout
        self.options = options
        self.breaker = CircuitBreaker(options.breaker_failure_threshold, options.breaker_cooldown_s)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers=headers or {},
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )
        self._counts_lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self._backoff = tenacity.wait_exponential_jitter(initial=options.backoff_initial_s,
                                                         max=options.backoff_max_s)

    def __repr__(self) -> str:  # no headers: an API key must never reach a log line
        return f"{type(self).__name__}(base_url={redact_url(self.base_url)!r}, chat_model={self.chat_model!r})"

    def close(self) -> None:
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

    def _attempt(self, method: str, path: str, body: dict | None) -> Any:
        if not self.breaker.allow():
            raise CircuitOpenError(f"{self.name}: circuit open after repeated failures; not calling {path}")
        with self._counts_lock:
            self.requests += 1
        where = f"{self.name} {method} {redact_url(self.base_url)}{path}"
        # Every allowed attempt records exactly one outcome, or a half-open breaker would wait forever.
        try:
            response = self._client.request(method, self.base_url + path, json=body)
        except httpx.TimeoutException:
            self.breaker.record_failure()
            raise TransientHTTPError(f"{where} timed out after {self.timeout:g} s") from None
        except httpx.HTTPError as error:
            self.breaker.record_failure()
            raise TransientHTTPError(f"{where} failed: {type(error).__name__}") from None
        except BaseException:
            self.breaker.record_failure()
            raise
        status = response.status_code
        if status == 429:
            self.breaker.record_success()  # alive, asking us to slow down: back off, do not trip
            raise TransientHTTPError(f"{where} was rate limited (429)", _retry_after_seconds(response))
        if status >= 500 or status == 408:
            self.breaker.record_failure()
            raise TransientHTTPError(f"{where} answered {status}")
        if status >= 400:
            # 400 is about this request (the caller may adapt it); 401/403/404 mean a misconfigured server,
            # which counts towards the breaker so a dead configuration stops being called.
            (self.breaker.record_success if status == 400 else self.breaker.record_failure)()
            raise RejectedError(f"{where} answered {status}", status)
        self.breaker.record_success()
        try:
            return response.json()
        except ValueError:
            raise InvalidOutputError(f"{where} answered with a body that is not JSON") from None

    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.options.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(TransientHTTPError),
            before_sleep=self._count_retry,
            reraise=True,
        )
        return retrying(self._attempt, method, path, body)

    # ---- API -------------------------------------------------------------------------------------------
    def chat(self, system: str, user: str, schema: dict, schema_name: str) -> str:
        """One chat completion constrained to a JSON schema; returns the raw content text."""
        raise NotImplementedError

    def enrich(self, text: str) -> Enrichment:
        return parse_enrichment(self.chat(SYSTEM_PROMPT, text, enrichment_json_schema(), "memory_enrichment"))

    def complete_json(self, prompt: str, schema: dict, system: str = "Answer with JSON only.",
                      schema_name: str = "answer") -> Any:
        """A JSON answer to `prompt` under `schema` (InvalidOutputError if the reply is not JSON)."""
        content = self.chat(system, prompt, schema, schema_name)
        try:
            return json.loads(content)
        except (TypeError, ValueError):
            raise InvalidOutputError(f"{self.name} answered with content that is not JSON") from None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def list_models(self) -> list[str]:
        raise NotImplementedError


class OllamaProvider(RemoteProvider):
    """Ollama's native API: /api/chat with `format` = the enrichment JSON schema, /api/embed, /api/tags."""

    name = "ollama"

    def chat(self, system: str, user: str, schema: dict, schema_name: str) -> str:
        body = {
            "model": self.chat_model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "format": schema,
            "stream": False,
            "options": {"temperature": 0},
        }
        data = self._request("POST", "/api/chat", body)
        try:
            return data["message"]["content"]
        except (KeyError, TypeError):
            raise InvalidOutputError("ollama /api/chat reply has no message.content") from None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        data = self._request("POST", "/api/embed", {"model": self.embedding_model, "input": list(texts)})
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        return validate_embeddings(vectors, len(texts), "ollama /api/embed")

    def list_models(self) -> list[str]:
        data = self._request("GET", "/api/tags")
        return [m.get("name") or m.get("model") for m in (data or {}).get("models", []) if isinstance(m, dict)]


class OpenAIProvider(RemoteProvider):
    """OpenAI-compatible API: /chat/completions with a json_schema response_format (json_object if the server
    rejects that with 400), /embeddings, /models. The API key goes only into the Authorization header."""

    name = "openai"

    def __init__(self, *, api_key: str | None = None, **kwargs) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(headers=headers, **kwargs)
        self._structured_output = True  # flips once if the server does not support json_schema

    def _chat_body(self, system: str, user: str, schema: dict, schema_name: str, structured: bool) -> dict:
        if structured:
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "strict": True, "schema": schema},
            }
        else:
            # json_object mode cannot carry the schema, so the prompt does (and must mention JSON).
            system += "\nThe JSON must match this JSON schema:\n" + json.dumps(schema)
            response_format = {"type": "json_object"}
        return {
            "model": self.chat_model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "response_format": response_format,
            "temperature": 0,
        }

    def chat(self, system: str, user: str, schema: dict, schema_name: str) -> str:
        if self._structured_output:
            try:
                data = self._request("POST", "/chat/completions",
                                     self._chat_body(system, user, schema, schema_name, structured=True))
            except RejectedError as error:
                if error.status != 400:
                    raise
                logger.info("openai: server rejected response_format json_schema (400); using json_object")
                self._structured_output = False
                data = self._request("POST", "/chat/completions",
                                     self._chat_body(system, user, schema, schema_name, structured=False))
        else:
            data = self._request("POST", "/chat/completions",
                                 self._chat_body(system, user, schema, schema_name, structured=False))
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise InvalidOutputError("openai /chat/completions reply has no choices[0].message.content") from None
        if content is None:
            raise InvalidOutputError("openai /chat/completions reply has empty content (refusal?)")
        return content

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        body = {"model": self.embedding_model, "input": list(texts), "encoding_format": "float"}
        data = self._request("POST", "/embeddings", body)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise InvalidOutputError("openai /embeddings reply has no data list")
        # The API returns an index per item; order by it rather than trusting the list order.
        items = sorted(items, key=lambda item: item.get("index", 0) if isinstance(item.get("index"), int) else 0)
        return validate_embeddings([item.get("embedding") for item in items], len(texts), "openai /embeddings")

    def list_models(self) -> list[str]:
        data = self._request("GET", "/models")
        return [m.get("id") for m in (data or {}).get("data", []) if isinstance(m, dict)]


def build_remote_provider(settings: Settings, options: ResilienceOptions | None = None) -> RemoteProvider:
    """The configured remote provider (settings.llm_provider must be "ollama" or "openai").

    OLLAMA_TIMEOUT is the per-request timeout for either server.
    """
    options = options or ResilienceOptions()
    common = dict(timeout=settings.ollama_timeout, max_concurrency=settings.max_concurrency, options=options)
    if settings.llm_provider == "ollama":
        return OllamaProvider(base_url=settings.ollama_url, chat_model=settings.ollama_model,
                              embedding_model=settings.embedding_model, **common)
    if settings.llm_provider == "openai":
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAIProvider(base_url=settings.openai_base_url, chat_model=settings.openai_model,
                              embedding_model=settings.openai_embedding_model, api_key=key, **common)
    raise ValueError(f"no remote provider for CODEX_LLM_PROVIDER={settings.llm_provider!r}")
