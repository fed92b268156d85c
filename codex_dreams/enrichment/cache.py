"""The enrichment cache: `enriched.memory_enrichment`, keyed by (memory_id, model) with a content hash.

`model` is the configured model key (`active_model_key`), so a memory is enriched once per configuration and
again only when its content changes (hash mismatch) or the configuration does (new key). Writes replace whole
rows in one short transaction, which makes a re-run idempotent. Nothing here holds a connection: callers pass
one that they open late and close early.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa

from codex_dreams.enrichment.embeddings import OFFLINE_EMBEDDING_MODEL
from codex_dreams.enrichment.models import Enrichment
from codex_dreams.enrichment.offline import HEURISTICS_VERSION
from codex_dreams.settings import Settings

TABLE = "enriched.memory_enrichment"
VIEW = "enriched.current_enrichment"
# The same hash as codex_dreams.sources.records.content_hash (sha256 hex, first 32 characters), in SQL.
CONTENT_HASH_SQL = "left(sha256({column}), 32)"


def active_embedding_model(settings: Settings) -> str:
    """The embedding model whose vectors the active key stores (and recall must embed queries with)."""
    if settings.llm_provider == "ollama":
        return settings.embedding_model
    if settings.llm_provider == "openai":
        return settings.openai_embedding_model
    return OFFLINE_EMBEDDING_MODEL


def active_model_key(settings: Settings) -> str:
    """The cache key of the current configuration: "<provider>|<chat model>|<embedding model>".

    e.g. "offline|heuristics-v1|all-MiniLM-L6-v2-onnx-int8" or "ollama|gpt-oss:20b|nomic-embed-text".
    Downstream models read `enriched.memory_enrichment` rows whose `model` equals this key.
    """
    if settings.llm_provider == "ollama":
        chat = settings.ollama_model
    elif settings.llm_provider == "openai":
        chat = settings.openai_model
    else:
        chat = HEURISTICS_VERSION
    return f"{settings.llm_provider}|{chat}|{active_embedding_model(settings)}"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def current_enrichment_sql(model_key: str) -> str:
    """SELECT of one enrichment row per live memory for `model_key`, only where the content hash is current."""
    return (
        f"select e.* from {TABLE} as e join raw.memories as m on m.id = e.memory_id "
        f"where e.model = {_quote(model_key)} and m.deleted_at is null "
        f"and e.content_hash = {CONTENT_HASH_SQL.format(column='m.content')}"
    )


def current_enrichment_view_sql(model_key: str) -> str:
    """DDL for the view `enriched.current_enrichment` over `current_enrichment_sql(model_key)`.

    `enrich_pending` (re)creates the view on every run with the active key, so after any enrichment run the
    view shows that configuration's rows.
    """
    return f"create or replace view {VIEW} as {current_enrichment_sql(model_key)}"


@dataclass(frozen=True)
class PendingMemory:
    memory_id: str
    content: str
    content_hash: str
    embedding_only: bool  # enrichment is current, only the (remote) embedding is still missing
    # Re-asking the LLM for a row that fell back keeps the row's vector (same text, same model): no new request.
    stored_embedding: np.ndarray | None = None
    stored_embedding_model: str | None = None


def read_pending(con: duckdb.DuckDBPyConnection, model_key: str, *,
                 reenrich_fallbacks: bool = False) -> list[PendingMemory]:
    """Live memories without a current row for `model_key`, plus current rows still lacking an embedding, plus
    (with `reenrich_fallbacks`) current rows whose fields fell back to the offline heuristics."""
    current_hash = CONTENT_HASH_SQL.format(column="m.content")
    rows = con.execute(
        f"""
        select m.id, m.content, {current_hash} as content_hash,
               coalesce(e.content_hash = {current_hash}, false)
                   and not (? and e.fallback_reason is not null) as fields_current
        from raw.memories as m
        left join {TABLE} as e on e.memory_id = m.id and e.model = ?
        where m.deleted_at is null
          -- embedding_dim is set exactly when embedding is (write_rows): testing it spares reading every vector
          and (e.memory_id is null or e.content_hash <> {current_hash} or e.embedding_dim is null
               or (? and e.fallback_reason is not null))
        order by m.created_at, m.id
        """,
        [reenrich_fallbacks, model_key, reenrich_fallbacks],
    ).fetchall()
    kept: dict[str, tuple[np.ndarray, str]] = {}
    if reenrich_fallbacks:
        # Only the fallback rows' vectors are read (the column is most of the store's bytes).
        for memory_id, hash_, vector, embedding_model in con.execute(
                f"select memory_id, content_hash, embedding, embedding_model from {TABLE} "
                "where model = ? and fallback_reason is not null and embedding_dim is not null",
                [model_key]).fetchall():
            kept[(memory_id, hash_)] = (np.asarray(vector, dtype=np.float32), embedding_model)
    pending = []
    for memory_id, content, hash_, fields_current in rows:
        vector, embedding_model = kept.get((memory_id, hash_), (None, None))
        pending.append(PendingMemory(memory_id, content, hash_, bool(fields_current), vector, embedding_model))
    return pending


def fallback_counts(con: duckdb.DuckDBPyConnection, model_key: str) -> tuple[int, int, str | None]:
    """(rows of live memories under `model_key`, how many of them fell back, the most common fallback reason).
    Reads no vector."""
    total, fallbacks, reason = con.execute(
        f"select count(*), count(e.fallback_reason), mode(e.fallback_reason) from {TABLE} as e "
        "join raw.memories as m on m.id = e.memory_id where e.model = ? and m.deleted_at is null",
        [model_key],
    ).fetchone()
    return int(total), int(fallbacks), reason


def stored_embedding_dims(con: duckdb.DuckDBPyConnection, model_key: str) -> dict[str, int]:
    """embedding_model -> dimension already stored under `model_key` (one dimension per embedding model)."""
    rows = con.execute(
        f"select embedding_model, min(embedding_dim) from {TABLE} "
        "where model = ? and embedding_dim is not null group by embedding_model",
        [model_key],
    ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


@dataclass
class EnrichedRow:
    memory_id: str
    content_hash: str
    provider: str | None  # None for an embedding-only update
    fallback_reason: str | None
    enrichment: Enrichment | None  # None for an embedding-only update
    embedding: np.ndarray | None  # unit float32, None if the remote embedding failed (row stays pending)
    embedding_model: str | None
    latency_ms: float | None


def _embedding_array(rows: list[EnrichedRow]) -> pa.Array:
    # Build list<float> from one flat buffer: far faster than converting Python lists row by row.
    offsets = [0]
    chunks = []
    for row in rows:
        if row.embedding is not None:
            chunks.append(np.asarray(row.embedding, dtype=np.float32))
            offsets.append(offsets[-1] + len(row.embedding))
        else:
            offsets.append(offsets[-1])
    flat = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float32)
    mask = pa.array([row.embedding is None for row in rows])
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), pa.array(flat, type=pa.float32()),
                                    mask=mask)


def write_rows(con: duckdb.DuckDBPyConnection, model_key: str, rows: list[EnrichedRow], enriched_at: datetime) -> None:
    """Replace full rows and fill in late embeddings, in one transaction (idempotent)."""
    full = [row for row in rows if row.enrichment is not None]
    late = [row for row in rows if row.enrichment is None and row.embedding is not None]
    # One row per (memory, model): this writer keeps it (the table has no key index, see schema migration 4).
    for kind, batch_rows in (("enrichment", full), ("late embedding", late)):
        ids = [row.memory_id for row in batch_rows]
        if len(set(ids)) != len(ids):
            repeated = sorted({memory_id for memory_id in ids if ids.count(memory_id) > 1})
            raise ValueError(f"one {kind} per memory and batch; repeated: {', '.join(repeated[:5])}")
    con.execute("begin transaction")
    try:
        if full:
            batch = pa.table({
                "memory_id": [r.memory_id for r in full],
                "content_hash": [r.content_hash for r in full],
                "provider": [r.provider for r in full],
                "fallback_reason": [r.fallback_reason for r in full],
                "entities": [r.enrichment.entities for r in full],
                "topics": [r.enrichment.topics for r in full],
                "sentiment": [r.enrichment.sentiment for r in full],
                "emotional_salience": [r.enrichment.emotional_salience for r in full],
                "importance": [r.enrichment.importance for r in full],
                "goal": [r.enrichment.goal for r in full],
                "task": [r.enrichment.task for r in full],
                "action": [r.enrichment.action for r in full],
                "locations": pa.array([r.enrichment.locations for r in full], type=pa.list_(pa.string())),
                "egocentric_locations": pa.array([r.enrichment.egocentric_locations for r in full],
                                                 type=pa.list_(pa.string())),
                "embedding": _embedding_array(full),
                "embedding_model": [r.embedding_model if r.embedding is not None else None for r in full],
                "embedding_dim": pa.array([len(r.embedding) if r.embedding is not None else None for r in full],
                                          type=pa.int32()),
                "latency_ms": [r.latency_ms for r in full],
            })
            con.register("enrichment_batch", batch)
            con.execute(f"delete from {TABLE} where model = ? and memory_id in (select memory_id from enrichment_batch)",
                        [model_key])
            con.execute(
                f"""
                insert into {TABLE} (memory_id, content_hash, provider, model, entities, topics, sentiment,
                    emotional_salience, importance, goal, task, action, locations, egocentric_locations,
                    fallback_reason, embedding, embedding_model, embedding_dim, latency_ms, enriched_at)
                select memory_id, content_hash, provider, ?, entities, topics, sentiment, emotional_salience,
                    importance, goal, task, action, locations, egocentric_locations, fallback_reason,
                    embedding, embedding_model, embedding_dim, latency_ms, ?
                from enrichment_batch
                """,
                [model_key, enriched_at],
            )
            con.unregister("enrichment_batch")
        if late:
            batch = pa.table({
                "memory_id": [r.memory_id for r in late],
                "content_hash": [r.content_hash for r in late],
                "embedding": _embedding_array(late),
                "embedding_model": [r.embedding_model for r in late],
                "embedding_dim": pa.array([len(r.embedding) for r in late], type=pa.int32()),
            })
            con.register("embedding_batch", batch)
            # Only where the enrichment is still for the same content: a newer edit waits for its own run.
            con.execute(
                f"""
                update {TABLE} as e
                set embedding = b.embedding, embedding_model = b.embedding_model, embedding_dim = b.embedding_dim
                from embedding_batch as b
                where e.model = ? and e.memory_id = b.memory_id and e.content_hash = b.content_hash
                """,
                [model_key],
            )
            con.unregister("embedding_batch")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
