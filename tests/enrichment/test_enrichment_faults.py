"""Faults at the server: every memory is still enriched exactly once, fallbacks are counted, the breaker works."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from enrichment_protocol_server import ProtocolServer
from enrichment_store_helpers import FAST, SAMPLE_TEXTS, enrichment_rows, insert_memories

from codex_dreams.enrichment import enrich_pending
from codex_dreams.enrichment.providers import OllamaProvider, TransientHTTPError
from codex_dreams.enrichment.resilience import CircuitBreaker, CircuitOpenError

N = len(SAMPLE_TEXTS)


@pytest.fixture
def ollama(make_settings, server):
    def make(**env):
        base = dict(CODEX_LLM_PROVIDER="ollama", OLLAMA_URL=server.url, OLLAMA_MODEL="fake-chat",
                    EMBEDDING_MODEL="fake-embed", OLLAMA_TIMEOUT=2, MAX_CONCURRENCY=4)
        return make_settings(**{**base, **env})

    return make


def _assert_every_memory_once(settings, key_rows=None):
    rows = enrichment_rows(settings) if key_rows is None else key_rows
    assert sorted(r["memory_id"] for r in rows) == sorted(f"m{i}" for i in range(N))
    for row in rows:
        # readers test "has a vector" on embedding_dim, never reading the vectors (docs/architecture.md)
        assert (row["embedding"] is None) == (row["embedding_dim"] is None)
        if row["embedding"] is not None:
            vector = np.asarray(row["embedding"])
            assert len(vector) == row["embedding_dim"] and abs(np.linalg.norm(vector) - 1) < 1e-5
    return rows


def test_server_down_falls_back_then_backfills_embeddings_when_it_returns(ollama, dead_url):
    settings = ollama(OLLAMA_URL=dead_url)
    insert_memories(settings, SAMPLE_TEXTS)
    stats = enrich_pending(settings, resilience=replace(FAST, breaker_cooldown_s=60))

    assert stats.enriched == N and stats.by_provider == {"offline": N} and stats.fallbacks == N
    # Memories the open breaker kept from the server carry the failure that opened it, not "circuit_open".
    assert stats.fallback_reasons == {"unavailable": N}
    assert stats.first_failure.startswith("unavailable: ollama POST") and "ConnectError" in stats.first_failure
    assert stats.breaker_opens >= 1 and stats.http_errors == stats.requests
    # Only a handful of requests went out before the breaker stopped calling the dead server: the threshold,
    # plus at most one in flight on each other worker when it opened.
    assert stats.requests <= FAST.breaker_failure_threshold + settings.max_concurrency - 1
    rows = _assert_every_memory_once(settings)
    assert all(r["fallback_reason"].startswith("unavailable: ollama POST") for r in rows)
    assert any(r["fallback_reason"].endswith("[circuit open: not sent]") for r in rows)
    # An offline vector is never mixed into the remote model's space: embeddings wait for the server.
    assert all(r["embedding"] is None and r["embedding_model"] is None for r in rows)
    assert stats.embeddings_pending == N and stats.embedded == 0

    with ProtocolServer() as revived:
        settings = ollama(OLLAMA_URL=revived.url)
        again = enrich_pending(settings, resilience=FAST)
        assert revived.count("chat") == 0  # the enrichment is not redone, only the embeddings are fetched
        assert revived.count("embed") == -(-N // FAST.embed_batch_size)
        assert again.embedded == N and again.enriched == 0
        rows = _assert_every_memory_once(settings)
        assert all(r["provider"] == "offline" and r["embedding_model"] == "fake-embed" for r in rows)
        assert all(r["embedding_dim"] == 16 for r in rows)
        revived.reset()
        assert enrich_pending(settings, resilience=FAST).pending == 0 and revived.count() == 0


def test_hanging_chat_times_out_and_falls_back(ollama, server):
    server.set_mode("chat", "hang")
    server.hang_seconds = 2.0
    settings = ollama(OLLAMA_TIMEOUT=0.3)
    insert_memories(settings, SAMPLE_TEXTS)
    stats = enrich_pending(settings, resilience=FAST)

    # the client gave up after its 0.3 s timeout instead of waiting for the 2 s answers: each chat request is one
    # the server saw abandoned (an answered request is not), and the failure names the timeout
    assert "timed out after 0.3 s" in stats.first_failure
    deadline = time.monotonic() + 30  # the server notices a closed connection within its 20 ms poll
    while server.abandoned < server.count("chat") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.abandoned == server.count("chat") >= 1
    assert stats.by_provider == {"offline": N} and stats.fallbacks == N
    assert stats.breaker_opens >= 1
    _assert_every_memory_once(settings)
    server.reset()
    second = enrich_pending(settings, resilience=FAST)
    # The open breaker may also have refused embedding requests: the next run asks for those and nothing else.
    assert server.count("chat") == 0 and second.enriched == 0
    assert second.embedded == stats.embeddings_pending
    server.reset()
    assert enrich_pending(settings, resilience=FAST).pending == 0 and server.count() == 0


def test_garbage_answers_are_retried_once_then_fall_back(ollama, server):
    server.set_mode("chat", "garbage")
    settings = ollama()
    insert_memories(settings, SAMPLE_TEXTS)
    stats = enrich_pending(settings, resilience=FAST)

    assert server.count("chat") == 2 * N  # one retry per memory, no more
    assert stats.fallback_reasons == {"invalid_output": N} and stats.by_provider == {"offline": N}
    rows = _assert_every_memory_once(settings)
    assert all(r["fallback_reason"].startswith("invalid_output: answer is not JSON")
               and r["embedding_model"] == "fake-embed" for r in rows)
    server.reset()
    assert enrich_pending(settings, resilience=FAST).pending == 0
    assert server.count() == 0


@pytest.mark.parametrize("bad", ["out_of_range", "missing", "bad_body"])
def test_one_invalid_answer_is_retried_and_the_retry_is_used(ollama, server, bad):
    settings = ollama(MAX_CONCURRENCY=1)
    insert_memories(settings, SAMPLE_TEXTS[:1])
    server.queue("chat", [bad])
    stats = enrich_pending(settings, resilience=FAST)
    assert server.count("chat") == 2
    assert stats.by_provider == {"ollama": 1} and stats.fallbacks == 0 and stats.failures == 1


def test_out_of_range_twice_falls_back_and_is_never_clamped(ollama, server):
    settings = ollama()
    insert_memories(settings, SAMPLE_TEXTS[:2])
    server.set_mode("chat", "out_of_range")
    stats = enrich_pending(settings, resilience=FAST)
    rows = enrichment_rows(settings)
    assert stats.fallback_reasons == {"invalid_output": 2}
    assert all(-1 <= r["sentiment"] <= 1 and r["provider"] == "offline" for r in rows)


def test_zero_vectors_from_the_server_are_never_stored(ollama, server):
    settings = ollama()
    insert_memories(settings, SAMPLE_TEXTS[:3])
    server.set_mode("embed", "out_of_range")  # the first vector of every response is all zeros
    stats = enrich_pending(settings, resilience=FAST)
    assert stats.embedding_failures == 3 and stats.embeddings_pending == 3
    assert all(r["embedding"] is None for r in enrichment_rows(settings))

    server.set_mode("embed", "ok")
    assert enrich_pending(settings, resilience=FAST).embedded == 3
    assert all(np.linalg.norm(r["embedding"]) > 0.99 for r in enrichment_rows(settings))


def test_flapping_server_succeeds_on_retries(ollama, server):
    settings = ollama(MAX_CONCURRENCY=1)  # one worker makes the alternation deterministic
    server.set_pattern("chat", ["error", "ok"])
    server.set_pattern("embed", ["error", "ok"])
    insert_memories(settings, SAMPLE_TEXTS)
    stats = enrich_pending(settings, resilience=FAST)

    assert stats.by_provider == {"ollama": N} and stats.fallbacks == 0
    assert stats.retries == N + 2 and stats.breaker_opens == 0  # every error retried once; 2 embed chunks
    assert server.count("chat") == 2 * N
    _assert_every_memory_once(settings)
    server.reset()
    assert enrich_pending(settings, resilience=FAST).pending == 0 and server.count() == 0


def test_rate_limit_is_backed_off_not_counted_as_an_outage(ollama, server):
    settings = ollama(MAX_CONCURRENCY=1)
    insert_memories(settings, SAMPLE_TEXTS[:3])
    server.queue("chat", ["rate_limit"])
    stats = enrich_pending(settings, resilience=replace(FAST, breaker_failure_threshold=1))
    assert stats.by_provider == {"ollama": 3} and stats.retries == 1 and stats.breaker_opens == 0


def test_breaker_recovers_within_a_run_when_the_server_comes_back(ollama, server):
    settings = ollama(MAX_CONCURRENCY=1)
    insert_memories(settings, SAMPLE_TEXTS)
    server.queue("chat", ["error", "error", "error"])  # a short outage: three failed requests
    stats = enrich_pending(settings, resilience=replace(FAST, breaker_cooldown_s=0.0))

    # m0 fails twice (retry included) and falls back; m1's first failure opens the breaker, its retry is the
    # half-open probe, which succeeds and closes it; everything after goes to the server.
    assert stats.breaker_opens == 1 and stats.breaker_recoveries == 1
    assert stats.by_provider == {"offline": 1, "ollama": N - 1}
    assert stats.fallback_reasons == {"unavailable": 1}


def test_breaker_opens_stops_calling_and_closes_after_cool_down(server):
    server.set_mode("chat", "error")
    provider = OllamaProvider(base_url=server.url, chat_model="fake-chat", embedding_model="fake-embed",
                              timeout=1.0, max_concurrency=2, options=FAST)
    with provider:
        with pytest.raises(TransientHTTPError):
            provider.enrich("first")  # two failed attempts
        with pytest.raises(CircuitOpenError):
            provider.enrich("second")  # third failure opens the breaker; the retry is refused
        assert provider.breaker.state == "open" and server.count("chat") == 3
        with pytest.raises(CircuitOpenError):
            provider.enrich("third")
        assert server.count("chat") == 3  # open: the server is not called

        time.sleep(FAST.breaker_cooldown_s + 0.05)
        assert provider.breaker.state == "half_open"
        with pytest.raises(CircuitOpenError):
            provider.enrich("probe fails")  # the one probe fails: open again, its retry is refused
        assert server.count("chat") == 4
        assert provider.breaker.opens == 2 and provider.breaker.state == "open"

        server.set_mode("chat", "ok")
        time.sleep(FAST.breaker_cooldown_s + 0.05)
        assert provider.enrich("probe succeeds").importance == 0.4
        assert provider.breaker.state == "closed" and provider.breaker.recoveries == 1


def test_half_open_lets_exactly_one_probe_through():
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=10.0, clock=lambda: now[0])
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and not breaker.allow()  # one probe only
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.recoveries == 1
