"""Enrich what is pending: read briefly, call providers with no connection open, write each batch briefly.

Rules (docs/enrichment.md has the long form):
- The fields of a memory come from the configured provider; if its answer is invalid the chat is retried once,
  and if that fails too (or the server is unreachable, or the breaker is open) the memory falls back to the
  offline heuristics. `provider` records who produced the row, `fallback_reason` why it fell back.
- Embeddings come from exactly one embedding model per model key: MiniLM for the offline key, the configured
  remote embedding model otherwise. A failed remote embedding is never replaced by an offline vector (the
  spaces differ): the row is written without one, counted, and the embedding is fetched on a later run.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from codex_dreams.enrichment import cache
from codex_dreams.enrichment.cache import EnrichedRow, PendingMemory
from codex_dreams.enrichment.embeddings import OFFLINE_EMBEDDING_DIM, offline_embedder
from codex_dreams.enrichment.models import EnrichedText, Enrichment, InvalidOutputError
from codex_dreams.enrichment.offline import OfflineEnricher
from codex_dreams.enrichment.providers import (
    Log,
    ProviderError,
    RemoteProvider,
    build_remote_provider,
    fallback_reason,
    reason_kind,
)
from codex_dreams.enrichment.resilience import CircuitOpenError, ResilienceOptions
from codex_dreams.settings import Settings
from codex_dreams.sources.records import content_hash, utc_now
from codex_dreams.store import open_store

logger = logging.getLogger(__name__)

# A few fallbacks are normal (a hiccup, one odd answer); more than a fifth of the memories means the server or
# its configuration is wrong. Above it the asset check `llm_fallback_share` fails (WARN) and `codex health`
# reports degraded.
MAX_FALLBACK_SHARE = 0.2


class EmbeddingUnavailable(RuntimeError):
    """The configured remote embedding model could not embed the texts (and no other model may stand in)."""


@dataclass
class EnrichmentStats:
    """What one `enrich_pending` run did; `as_metadata()` is what the Dagster asset reports."""

    model_key: str
    configured_provider: str
    embedding_model: str
    pending: int = 0  # memories that needed enrichment or an embedding at the start of the run
    enriched: int = 0  # rows written (new or replaced)
    embedded: int = 0  # embeddings written (with their rows or late)
    embeddings_pending: int = 0  # rows written without an embedding (remote embedding failed; retried later)
    by_provider: dict[str, int] = field(default_factory=dict)  # rows written per producing provider
    fallbacks: int = 0  # memories the configured remote provider did not produce
    fallback_reasons: dict[str, int] = field(default_factory=dict)  # by kind (the reason's first word)
    first_failure: str | None = None  # why the first memory fell back: "<kind>: <status and body>", as stored
    first_embedding_failure: str | None = None  # why the first embedding request failed
    failures: int = 0  # remote calls that ended in an error or an invalid answer (after retries)
    embedding_failures: int = 0  # texts whose embedding request failed
    requests: int = 0  # HTTP requests sent
    retries: int = 0  # HTTP retries after a transient failure
    http_errors: int = 0  # requests answered with an error status or lost in transport (retries included)
    breaker_opens: int = 0
    breaker_recoveries: int = 0
    structured_output: str | None = None  # the response_format form in use (OpenAI-compatible servers)
    stored_rows: int = 0  # rows of live memories under this key after the run
    stored_fallbacks: int = 0  # ... of which fell back to the offline heuristics
    stored_fallback_reason: str | None = None  # the most common stored fallback reason
    mean_latency_ms: float = 0.0  # per memory: producing its fields (remote call incl. retries, or heuristics)
    embedding_dim: int | None = None
    duration_s: float = 0.0
    _latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def llm_answers(self) -> int:
        """Rows whose fields the configured remote provider produced in this run."""
        return 0 if self.configured_provider == "offline" else self.by_provider.get(self.configured_provider, 0)

    @property
    def fallback_share(self) -> float:
        return self.fallbacks / self.enriched if self.enriched else 0.0

    @property
    def stored_fallback_share(self) -> float:
        return self.stored_fallbacks / self.stored_rows if self.stored_rows else 0.0

    def fallback_alert(self) -> str | None:
        """What went wrong, when more than MAX_FALLBACK_SHARE of the memories fell back (in this run, or among
        the stored rows of the key) or were left without an embedding in this run; else None. The asset check
        and `codex health` both say this."""
        if self.configured_provider == "offline":
            return None
        said = []
        if self.fallback_share > MAX_FALLBACK_SHARE:
            said.append(f"{self.fallback_share:.0%} of the memories enriched in this run ({self.fallbacks} of "
                        f"{self.enriched}) fell back to the offline heuristics; first cause: "
                        f"{self.first_failure or 'unknown'}")
        elif self.stored_fallback_share > MAX_FALLBACK_SHARE:
            said.append(f"{self.stored_fallback_share:.0%} of the stored memories for {self.model_key} "
                        f"({self.stored_fallbacks} of {self.stored_rows}) fell back to the offline heuristics; most "
                        f"common cause: {self.stored_fallback_reason or 'unknown'}. Once the server answers, "
                        "`codex consolidate --type working --reenrich-fallbacks` asks it again")
        embeddable = self.embedded + self.embeddings_pending
        if embeddable and self.embeddings_pending / embeddable > MAX_FALLBACK_SHARE:
            said.append(f"{self.embeddings_pending / embeddable:.0%} of the memories in this run "
                        f"({self.embeddings_pending} of {embeddable}) got no embedding from {self.embedding_model!r}: "
                        f"{self.first_embedding_failure or 'unknown'}")
        return "; ".join(said) or None

    def as_metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "model_key": self.model_key,
            "configured_provider": self.configured_provider,
            "embedding_model": self.embedding_model,
            "embedding_dim": self.embedding_dim,  # None until this key has stored a vector
            "pending": self.pending,
            "enriched": self.enriched,
            "llm_answers": self.llm_answers,
            "embedded": self.embedded,
            "embeddings_pending": self.embeddings_pending,
            "fallbacks": self.fallbacks,
            "fallback_share": round(self.fallback_share, 4),
            "stored_fallback_share": round(self.stored_fallback_share, 4),
            "failures": self.failures,
            "embedding_failures": self.embedding_failures,
            "requests": self.requests,
            "retries": self.retries,
            "http_errors": self.http_errors,
            "breaker_opens": self.breaker_opens,
            "mean_latency_ms": round(self.mean_latency_ms, 2),
            "duration_s": round(self.duration_s, 3),
        }
        # Text entries only when there is something to say (Dagster metadata has no null text).
        for name, value in (("first_failure", self.first_failure),
                            ("first_embedding_failure", self.first_embedding_failure),
                            ("structured_output", self.structured_output), ("fallback_alert", self.fallback_alert())):
            if value:
                metadata[name] = value
        for provider, count in sorted(self.by_provider.items()):
            metadata[f"rows_{provider}"] = count
        for reason, count in sorted(self.fallback_reasons.items()):
            metadata[f"fallback_{reason}"] = count
        return metadata


# ---- engines: produce EnrichedRows for a batch, no database involved ---------------------------------------

class _OfflineEngine:
    """Heuristic fields and MiniLM embeddings, in process."""

    def __init__(self, enricher: OfflineEnricher) -> None:
        self.enricher = enricher
        self.embedder = offline_embedder()
        self.embedding_model = self.embedder.model_name
        # ONNX releases the GIL: embedding a batch on one thread while the heuristics (pure Python) run on
        # this one keeps both cores busy.
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def run(self, batch: Sequence[PendingMemory], stats: EnrichmentStats) -> list[EnrichedRow]:
        embedding = self.pool.submit(self.embedder.embed, [memory.content for memory in batch])
        rows = []
        for memory in batch:
            started = time.perf_counter()
            enrichment = None if memory.embedding_only else self.enricher.enrich(memory.content)
            rows.append(EnrichedRow(memory.memory_id, memory.content_hash, None if enrichment is None else "offline",
                                    None, enrichment, None, None, (time.perf_counter() - started) * 1000))
        for row, vector in zip(rows, embedding.result()):
            row.embedding, row.embedding_model = vector, self.embedding_model
        return rows


class _RemoteEngine:
    """Chat and embedding calls on a bounded thread pool; offline heuristics as the per-memory fallback."""

    def __init__(self, provider: RemoteProvider, enricher: OfflineEnricher, options: ResilienceOptions,
                 max_concurrency: int, known_dim: int | None, log: Log) -> None:
        self.provider = provider
        self.enricher = enricher
        self.options = options
        self.log = log
        self.embedding_model = provider.embedding_model
        self.known_dim = known_dim  # the dimension already stored for this key; a different one is refused
        self._lock = threading.Lock()
        self.first_failure: str | None = None  # the first reason a memory's fields fell back
        self.first_embedding_failure: str | None = None
        self._embedding_failure_logged = False
        self._dim_mismatch_logged = False
        self.pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="enrich")

    def close(self, *, abandon: bool = False) -> None:
        if abandon:
            # Nothing queued is sent any more, and the provider stops: the server is not left working for a
            # run that no longer waits (a request in flight ends at its timeout, closing its connection).
            self.provider.close()
            self.pool.shutdown(wait=False, cancel_futures=True)
            return
        self.pool.shutdown(wait=True)
        self.provider.close()

    def _first(self, reason: str) -> None:
        with self._lock:
            if self.first_failure is not None:
                return
            self.first_failure = reason
        # Said once per run, at WARNING, with the server's own words: the one line that explains the fallbacks.
        self.log.warning(f"enrichment: {self.provider.name} failed: {reason}; memories it does not answer fall "
                         "back to the offline heuristics (their embeddings wait for the server)")

    def enrich_one(self, text: str) -> tuple[Enrichment, str, str | None, float, int]:
        """(enrichment, producing provider, fallback reason, latency ms, failed calls)."""
        started = time.perf_counter()
        reason, failed = None, 0
        for _ in range(1 + self.options.invalid_output_retries):
            try:
                enrichment = self.provider.enrich(text)
                return enrichment, self.provider.name, None, (time.perf_counter() - started) * 1000, failed
            except InvalidOutputError as error:
                reason, failed = fallback_reason(error), failed + 1
                continue  # an invalid answer may be a sampling accident: ask once more
            except CircuitOpenError as error:
                reason = fallback_reason(error)
                break
            except ProviderError as error:
                reason, failed = fallback_reason(error), failed + 1
                break  # transport failures were already retried with backoff
            except Exception as error:  # an unforeseen client error must not sink the batch: fall back, but say so
                logger.warning("%s chat failed unexpectedly; using the offline fallback", self.provider.name,
                               exc_info=True)
                reason, failed = fallback_reason(error), failed + 1
                break
        self._first(reason)
        return self.enricher.enrich(text), "offline", reason, (time.perf_counter() - started) * 1000, failed

    def embed_chunk(self, texts: list[str]) -> np.ndarray | None:
        """Unit vectors, or None when the chunk could not be embedded (the rows stay pending)."""
        try:
            vectors = self.provider.embed(texts)
        except Exception as error:  # the rows stay pending rather than failing the run
            if not isinstance(error, (ProviderError, CircuitOpenError, InvalidOutputError)):
                logger.warning("%s embedding failed unexpectedly", self.embedding_model, exc_info=True)
            reason = fallback_reason(error)
            with self._lock:
                first, self._embedding_failure_logged = not self._embedding_failure_logged, True
                if first:
                    self.first_embedding_failure = reason
            if first:
                self.log.warning(f"enrichment: embeddings from {self.embedding_model!r} failed: {reason}; the rows "
                                 "are written without a vector and the next run asks again")
            return None
        dim = vectors.shape[1]
        with self._lock:
            if self.known_dim is None:
                self.known_dim = dim
            expected = self.known_dim
            report = dim != expected and not self._dim_mismatch_logged
            self._dim_mismatch_logged |= report
        if dim != expected:
            # Same model name, other dimension: the server swapped the model. Mixing would break every
            # cosine, so nothing is stored; a new embedding model name starts a clean key.
            if report:
                self.log.warning(f"enrichment: {self.embedding_model!r} returned {dim}-d vectors but {expected}-d "
                                 "are stored for this model key; not storing them (set another embedding model "
                                 "name to start a new key)")
            return None
        return vectors

    def run(self, batch: Sequence[PendingMemory], stats: EnrichmentStats) -> list[EnrichedRow]:
        chats: dict[int, Future] = {
            i: self.pool.submit(self.enrich_one, memory.content)
            for i, memory in enumerate(batch) if not memory.embedding_only
        }
        size = max(1, self.options.embed_batch_size)
        to_embed = [i for i, memory in enumerate(batch) if memory.stored_embedding is None]
        chunks = [to_embed[start:start + size] for start in range(0, len(to_embed), size)]
        embeds = [self.pool.submit(self.embed_chunk, [batch[i].content for i in chunk]) for chunk in chunks]
        rows = [EnrichedRow(m.memory_id, m.content_hash, None, None, None, m.stored_embedding,
                            m.stored_embedding_model, None) for m in batch]
        for i, future in chats.items():
            enrichment, provider, reason, latency, failed = future.result()
            row = rows[i]
            row.enrichment, row.provider, row.fallback_reason, row.latency_ms = enrichment, provider, reason, latency
            stats.failures += failed
        for chunk, future in zip(chunks, embeds):
            vectors = future.result()
            if vectors is None:
                stats.failures += 1
                stats.embedding_failures += len(chunk)
                continue
            for i, vector in zip(chunk, vectors):
                rows[i].embedding, rows[i].embedding_model = vector, self.embedding_model
        return rows


def _engine(settings: Settings, options: ResilienceOptions, known_dims: dict[str, int], log: Log):
    enricher = OfflineEnricher()
    if settings.llm_provider == "offline":
        return _OfflineEngine(enricher)
    provider = build_remote_provider(settings, options, log=log)
    return _RemoteEngine(provider, enricher, options, settings.max_concurrency,
                         known_dims.get(provider.embedding_model), log)


def _tally(stats: EnrichmentStats, rows: list[EnrichedRow], configured: str) -> None:
    for row in rows:
        if row.enrichment is not None:
            stats.enriched += 1
            stats.by_provider[row.provider] = stats.by_provider.get(row.provider, 0) + 1
            stats._latencies.append(row.latency_ms or 0.0)
            if row.fallback_reason is not None and configured != "offline":
                stats.fallbacks += 1
                kind = reason_kind(row.fallback_reason)
                stats.fallback_reasons[kind] = stats.fallback_reasons.get(kind, 0) + 1
        if row.embedding is None:
            stats.embeddings_pending += 1  # written without a vector, or a late embedding that failed again
        else:
            stats.embedded += 1
            stats.embedding_dim = len(row.embedding)
    if stats._latencies:
        stats.mean_latency_ms = float(np.mean(stats._latencies))


def _count_stored(stats: EnrichmentStats, con, key: str) -> None:
    stats.stored_rows, stats.stored_fallbacks, stats.stored_fallback_reason = cache.fallback_counts(con, key)


def enrich_pending(settings: Settings, *, log: Log | None = None, batch_size: int = 256,
                   resilience: ResilienceOptions | None = None, reenrich_fallbacks: bool = False) -> EnrichmentStats:
    """Enrich every live memory that lacks a current enrichment for the active model key; return the counts.

    The store is opened briefly to read what is pending (and to refresh the `enriched.current_enrichment`
    view), closed during provider calls, and reopened briefly per batch of `batch_size` to write it.
    `reenrich_fallbacks` also asks the LLM again for the memories whose fields fell back to the heuristics
    (their stored embeddings are kept).
    """
    log = log or logger
    options = resilience or ResilienceOptions()
    started = time.perf_counter()
    key = cache.active_model_key(settings)
    stats = EnrichmentStats(model_key=key, configured_provider=settings.llm_provider,
                            embedding_model=cache.active_embedding_model(settings))
    reenrich_fallbacks = reenrich_fallbacks and settings.llm_provider != "offline"
    with open_store(settings) as con:
        con.execute(cache.current_enrichment_view_sql(key))
        pending = cache.read_pending(con, key, reenrich_fallbacks=reenrich_fallbacks)
        known_dims = cache.stored_embedding_dims(con, key)
        if not pending:
            _count_stored(stats, con, key)
    stats.pending = len(pending)
    stats.embedding_dim = known_dims.get(stats.embedding_model)
    if not pending:
        log.info(f"enrichment: nothing pending for {key}")
        stats.duration_s = time.perf_counter() - started
        return stats
    log.info(f"enrichment: {len(pending)} memories pending for {key}"
             + (" (re-asking the LLM for fallbacks)" if reenrich_fallbacks else ""))
    engine = _engine(settings, options, known_dims, log)
    opens_logged = 0
    abandoned = True
    try:
        for start in range(0, len(pending), max(1, batch_size)):
            batch = pending[start:start + batch_size]
            rows = engine.run(batch, stats)
            with open_store(settings) as con:
                cache.write_rows(con, key, rows, utc_now())
                if start + len(batch) >= len(pending):
                    _count_stored(stats, con, key)
            _tally(stats, rows, settings.llm_provider)
            if isinstance(engine, _RemoteEngine):
                opens = sum(breaker.opens for breaker in engine.provider.breakers)
                if opens > opens_logged:
                    opens_logged = opens
                    log.warning(f"enrichment: {engine.provider.name} kept failing; circuit open "
                                f"(cool-down {engine.provider.breaker.cooldown_s:g} s), continuing with the "
                                "offline fallback")
            log.info(f"enrichment: {start + len(batch)}/{len(pending)} done; by provider {stats.by_provider}, "
                     f"fallbacks {stats.fallbacks}, embeddings pending {stats.embeddings_pending}")
        abandoned = False
    finally:
        if isinstance(engine, _RemoteEngine):
            provider = engine.provider
            stats.requests, stats.retries, stats.http_errors = provider.requests, provider.retries, provider.http_errors
            stats.breaker_opens = sum(breaker.opens for breaker in provider.breakers)
            stats.breaker_recoveries = sum(breaker.recoveries for breaker in provider.breakers)
            stats.structured_output = getattr(provider, "structured_output", None)
            stats.first_failure = engine.first_failure
            stats.first_embedding_failure = engine.first_embedding_failure
            engine.close(abandon=abandoned)
        else:
            engine.close()
        stats.duration_s = time.perf_counter() - started
    return stats


# ---- single-shot helpers ------------------------------------------------------------------------------

def embed_texts(texts: Sequence[str], settings: Settings, *,
                resilience: ResilienceOptions | None = None) -> np.ndarray:
    """Unit-length float32 embeddings [n, d] with the active key's embedding model (e.g. a recall query).

    Raises EmbeddingUnavailable if a remote embedding model fails: an offline vector would not be comparable
    with the stored ones.
    """
    texts = list(texts)
    if settings.llm_provider == "offline":
        if not texts:
            return np.zeros((0, OFFLINE_EMBEDDING_DIM), dtype=np.float32)
        return offline_embedder().embed(texts)
    options = resilience or ResilienceOptions()
    with build_remote_provider(settings, options) as provider:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        parts = []
        size = max(1, options.embed_batch_size)
        for start in range(0, len(texts), size):
            try:
                parts.append(provider.embed(texts[start:start + size]))
            except (ProviderError, CircuitOpenError, InvalidOutputError) as error:
                raise EmbeddingUnavailable(f"{provider.embedding_model}: {error}") from None
        return np.vstack(parts)


def enrich_texts(texts: Sequence[str], settings: Settings, *,
                 resilience: ResilienceOptions | None = None) -> list[EnrichedText]:
    """Enrich and embed texts with the configured provider (same fallback rules), storing nothing."""
    texts = list(texts)
    options = resilience or ResilienceOptions()
    pending = [PendingMemory(str(i), text, content_hash(text), False) for i, text in enumerate(texts)]
    if not pending:
        return []
    stats = EnrichmentStats(model_key=cache.active_model_key(settings), configured_provider=settings.llm_provider,
                            embedding_model=cache.active_embedding_model(settings))
    engine = _engine(settings, options, {}, logger)
    try:
        rows = engine.run(pending, stats)
    finally:
        engine.close()
    return [
        EnrichedText(text=text, enrichment=row.enrichment, provider=row.provider, fallback_reason=row.fallback_reason,
                     embedding=row.embedding, embedding_model=row.embedding_model, latency_ms=row.latency_ms or 0.0)
        for text, row in zip(texts, rows)
    ]

