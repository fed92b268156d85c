"""The cache: enriched once per (memory, model key); content or model changes re-enrich only what changed."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from enrichment_store_helpers import FAST, SAMPLE_TEXTS, enrichment_rows, insert_memories, set_content

from codex_dreams.enrichment import active_model_key, current_enrichment_sql, enrich_pending
from codex_dreams.sources.records import content_hash
from codex_dreams.store import open_store

N = len(SAMPLE_TEXTS)


class Collector:
    """A stand-in for Dagster's context.log: remembers the progress messages."""

    def __init__(self):
        self.messages: list[str] = []

    def info(self, msg, *args):
        self.messages.append(msg % args if args else msg)

    warning = info


def test_offline_run_enriches_each_memory_once_with_unit_384d_vectors(make_settings, minilm):
    settings = make_settings()
    insert_memories(settings, SAMPLE_TEXTS)
    log = Collector()
    stats = enrich_pending(settings, log=log, batch_size=5)

    assert stats.pending == N and stats.enriched == N and stats.embedded == N
    assert stats.by_provider == {"offline": N} and stats.fallbacks == 0 and stats.requests == 0
    assert stats.embedding_dim == 384 and stats.mean_latency_ms > 0
    assert any(f"{N}/{N} done" in message for message in log.messages)  # progress per batch
    rows = enrichment_rows(settings)
    assert len(rows) == N
    key = active_model_key(settings)
    for row in rows:
        assert row["model"] == key and row["provider"] == "offline" and row["fallback_reason"] is None
        assert row["embedding_model"] == "all-MiniLM-L6-v2-onnx-int8" and row["embedding_dim"] == 384
        assert abs(np.linalg.norm(row["embedding"]) - 1) < 1e-5

    second = enrich_pending(settings)
    assert second.pending == 0 and second.enriched == 0
    assert enrichment_rows(settings) == rows  # untouched, enriched_at included


def test_sql_content_hash_matches_the_ingest_hash(make_settings):
    settings = make_settings()
    text = "Café in São Paulo ✓ — naïve test"
    insert_memories(settings, [text])
    enrich_pending(settings)
    assert enrichment_rows(settings)[0]["content_hash"] == content_hash(text)


def test_changing_content_re_enriches_only_that_memory(make_settings, minilm):
    settings = make_settings()
    insert_memories(settings, SAMPLE_TEXTS)
    enrich_pending(settings)
    before = {row["memory_id"]: row for row in enrichment_rows(settings)}

    set_content(settings, "m3", "Flew to Madrid with Jonas for the conference.")
    stats = enrich_pending(settings)
    after = {row["memory_id"]: row for row in enrichment_rows(settings)}

    assert stats.pending == 1 and stats.enriched == 1 and len(after) == N
    assert after["m3"]["content_hash"] == content_hash("Flew to Madrid with Jonas for the conference.")
    assert "Madrid" in after["m3"]["locations"] and after["m3"]["embedding"] != before["m3"]["embedding"]
    assert {k: v for k, v in after.items() if k != "m3"} == {k: v for k, v in before.items() if k != "m3"}


def test_deleted_memories_are_not_enriched_and_leave_the_current_view(make_settings):
    settings = make_settings()
    insert_memories(settings, SAMPLE_TEXTS[:4])
    with open_store(settings) as con:
        con.execute("update raw.memories set deleted_at = now()::timestamp where id = 'm0'")
    assert enrich_pending(settings).enriched == 3
    with open_store(settings) as con:
        con.execute("update raw.memories set deleted_at = now()::timestamp where id = 'm1'")
        view_ids = [r[0] for r in con.execute("select memory_id from enriched.current_enrichment order by 1").fetchall()]
        sql_ids = [r[0] for r in con.execute(current_enrichment_sql(active_model_key(settings)) + " order by 1").fetchall()]
    assert view_ids == sql_ids == ["m2", "m3"]


def test_changing_the_model_re_enriches_everything_under_the_new_key(make_settings, server):
    env = dict(CODEX_LLM_PROVIDER="ollama", OLLAMA_URL=server.url, OLLAMA_MODEL="chat-a", EMBEDDING_MODEL="embed-a",
               OLLAMA_TIMEOUT=2, MAX_CONCURRENCY=4)
    first = make_settings(**env)
    insert_memories(first, SAMPLE_TEXTS)
    enrich_pending(first, resilience=FAST)
    assert server.count("chat") == N

    server.reset()
    server.embedding_dim = 24  # the new embedding model has another dimension
    second = make_settings(OLLAMA_MODEL="chat-b", EMBEDDING_MODEL="embed-b")
    stats = enrich_pending(second, resilience=FAST)
    assert server.count("chat") == N and {b["model"] for b in server.bodies("chat")} == {"chat-b"}
    assert {b["model"] for b in server.bodies("embed")} == {"embed-b"}
    assert stats.enriched == N and stats.embedding_dim == 24

    old_key, new_key = active_model_key(first), active_model_key(second)
    assert old_key != new_key and new_key == "ollama|chat-b|embed-b"
    old_rows, new_rows = enrichment_rows(first, old_key), enrichment_rows(second, new_key)
    assert len(old_rows) == len(new_rows) == N
    assert {r["embedding_dim"] for r in old_rows} == {16} and {len(r["embedding"]) for r in old_rows} == {16}
    assert {r["embedding_dim"] for r in new_rows} == {24} and {len(r["embedding"]) for r in new_rows} == {24}
    with open_store(second) as con:
        assert con.execute("select count(distinct model) from enriched.current_enrichment").fetchone() == (1,)
        assert con.execute("select min(model) from enriched.current_enrichment").fetchone() == (new_key,)

    server.reset()
    assert enrich_pending(make_settings(OLLAMA_MODEL="chat-a", EMBEDDING_MODEL="embed-a"),
                          resilience=FAST).pending == 0
    assert server.count() == 0  # switching back finds the old key's rows still current


def test_a_model_that_changes_dimension_under_the_same_name_is_refused(make_settings, server, caplog):
    settings = make_settings(CODEX_LLM_PROVIDER="ollama", OLLAMA_URL=server.url, OLLAMA_TIMEOUT=2)
    insert_memories(settings, SAMPLE_TEXTS[:3])
    enrich_pending(settings, resilience=FAST)
    set_content(settings, "m1", "A new text for the same memory.")
    server.set_mode("embed", "wrong_dim")
    stats = enrich_pending(settings, resilience=FAST)

    assert stats.enriched == 1 and stats.embedding_failures == 1 and stats.embeddings_pending == 1
    rows = {r["memory_id"]: r for r in enrichment_rows(settings)}
    assert rows["m1"]["embedding"] is None and rows["m1"]["embedding_dim"] is None
    assert {r["embedding_dim"] for r in rows.values() if r["embedding"] is not None} == {16}
    assert "not storing them" in caplog.text


def test_no_connection_is_held_during_provider_calls(make_settings, server):
    """While the server is thinking, another process can open the store read-write."""
    server.latency = 1.5
    settings = make_settings(CODEX_LLM_PROVIDER="ollama", OLLAMA_URL=server.url, OLLAMA_TIMEOUT=10)
    insert_memories(settings, SAMPLE_TEXTS[:1])
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("stats", enrich_pending(settings, resilience=FAST)))
    worker.start()
    try:
        for _ in range(100):
            if server.count():
                break
            threading.Event().wait(0.02)
        assert server.count(), "the enrichment never called the server"
        probe = ("import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
                 "print(con.execute('select count(*) from raw.memories').fetchone()[0]); con.close()")
        opened = subprocess.run([sys.executable, "-c", probe, str(settings.database_path)],
                                capture_output=True, text=True, timeout=30)
    finally:
        worker.join(timeout=30)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip() == "1"
    assert result["stats"].enriched == 1


@pytest.mark.parametrize("batch_size", [1, 7])
def test_small_batches_write_the_same_rows(make_settings, minilm, batch_size):
    settings = make_settings()
    insert_memories(settings, SAMPLE_TEXTS)
    stats = enrich_pending(settings, batch_size=batch_size)
    assert stats.enriched == N and len(enrichment_rows(settings)) == N


def test_a_batch_that_repeats_a_memory_is_refused_and_writes_nothing(make_settings):
    """The table has no key index (schema migration 4): its writer keeps one row per (memory, model)."""
    from datetime import datetime

    from codex_dreams.enrichment.cache import EnrichedRow, write_rows
    from codex_dreams.enrichment.models import Enrichment

    settings = make_settings()
    first, second = insert_memories(settings, SAMPLE_TEXTS[:2])
    enrichment = Enrichment(entities=[], topics=["coffee"], sentiment=0.1, emotional_salience=0.2, importance=0.5)

    def row(memory_id: str) -> EnrichedRow:
        return EnrichedRow(memory_id, content_hash(memory_id), "offline", None, enrichment,
                           np.ones(4, dtype=np.float32) / 2, "test-embedder", 1.0)

    with open_store(settings) as con:
        with pytest.raises(ValueError, match=f"repeated: {first}"):
            write_rows(con, "test-key", [row(first), row(second), row(first)], datetime(2026, 1, 1))
        assert con.execute("select count(*) from enriched.memory_enrichment").fetchone()[0] == 0
        write_rows(con, "test-key", [row(first), row(second)], datetime(2026, 1, 1))
        write_rows(con, "test-key", [row(first)], datetime(2026, 1, 2))  # a re-enrichment replaces the row
        assert con.execute("select memory_id, count(*) from enriched.memory_enrichment group by 1 order by 1"
                           ).fetchall() == sorted([(first, 1), (second, 1)])
