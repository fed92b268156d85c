"""Scripted memories for stage tests: chosen times, chosen enrichment, written straight into the store.

The stage tests do not depend on an enrichment provider: they write `raw.memories` rows and matching
`enriched.memory_enrichment` rows whose importance, salience, sentiment, goal/task/action, locations and
embedding the test chooses, so every expectation follows from the script.

Stable API (other stage tests use it; add, never change):

    from scenario import BASE_TIME, Memory, at, topic_vector, insert_memories, mark_deleted, write_memories
    from scenario import stage_assets, materialize_stages, query

- `at(seconds=0, minutes=0, hours=0, days=0)`: a naive-UTC time relative to BASE_TIME (a window start).
- `topic_vector(axis, dim=384, toward=None, mix=0.0)`: a unit embedding along one axis, optionally tilted
  toward another axis (cosine to the pure axis = cos(mix * pi/2)): scripted "topics" for similarity.
- `Memory(id, content, created_at, ...)`: one scripted memory; `enriched=False` writes no enrichment row
  (the stages must then use neutral defaults); `deleted_at` marks it deleted at its source.
- `insert_memories(con, memories, model="scripted/test")`: insert into raw.memories (+ enrichment); returns
  the count. `con` must be bootstrapped (the `store` fixture, or `codex_dreams.store.open_store`).
- `write_memories(settings, memories, ...)`: the same through a short-lived connection (open late, close
  early: Dagster runs need the file afterwards).
- `mark_deleted(settings_or_con, ids, at=None)`: set deleted_at (a deletion at the source).
- `stage_assets()`: raw_memories, the dbt assets and the stage modules' Python assets and asset checks.
- `materialize_stages(resources, *groups_or_keys)`: materialize the given dbt groups (e.g.
  "working_memory", "short_term_memory") or asset keys ("working_memory/wm_attention"); raises on failure
  and returns the ExecuteInProcessResult.
- `query(settings, sql, params=None)`: rows of a read-only query against the test's store.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Sequence

import duckdb

# A Monday, 09:00:00 UTC: a multiple of 30 s, so at(0) starts a working-memory window.
BASE_TIME = datetime(2025, 1, 6, 9, 0, 0)
EMBEDDING_DIM = 384


def at(seconds: float = 0, *, minutes: float = 0, hours: float = 0, days: float = 0,
       base: datetime = BASE_TIME) -> datetime:
    return base + timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)


def topic_vector(axis: int, dim: int = EMBEDDING_DIM, *, toward: int | None = None, mix: float = 0.0
                 ) -> list[float]:
    """A unit vector on `axis`, tilted by `mix` (0..1) toward axis `toward` (cosine to `axis` is cos(mix*pi/2))."""
    vector = [0.0] * dim
    angle = mix * math.pi / 2
    vector[axis % dim] = math.cos(angle)
    if toward is not None:
        vector[toward % dim] += math.sin(angle)
    return vector


@dataclass
class Memory:
    id: str
    content: str
    created_at: datetime
    importance: float | None = 0.5
    emotional_salience: float | None = 0.0
    sentiment: float | None = 0.0
    topics: list[str] | None = None
    entities: list[str] | None = None
    goal: str | None = None
    task: str | None = None
    action: str | None = None
    locations: list[str] | None = None
    embedding: list[float] | None = None
    enriched: bool = True
    deleted_at: datetime | None = None
    updated_at: datetime | None = None
    metadata: dict = field(default_factory=dict)
    source: str = "test"


def insert_memories(con: duckdb.DuckDBPyConnection, memories: Iterable[Memory], *, model: str = "scripted/test",
                    provider: str = "scripted", enriched_at: datetime | None = None) -> int:
    """Insert scripted memories (and their enrichment rows, one per memory for `model`)."""
    memories = list(memories)
    raw_rows = [
        (m.id, m.content, m.created_at, m.updated_at or m.created_at, json.dumps(m.metadata), m.source,
         m.deleted_at)
        for m in memories
    ]
    if raw_rows:
        con.executemany(
            "insert into raw.memories (id, content, created_at, updated_at, metadata, source, deleted_at) "
            "values (?, ?, ?, ?, ?, ?, ?)",
            raw_rows,
        )
    enrichment_rows = [
        (m.id, f"hash:{m.id}", provider, model, m.entities or [], m.topics or [], m.sentiment,
         m.emotional_salience, m.importance, m.goal, m.task, m.action, m.locations or [], m.embedding,
         "scripted" if m.embedding is not None else None, len(m.embedding) if m.embedding is not None else None,
         enriched_at or m.created_at)
        for m in memories if m.enriched
    ]
    if enrichment_rows:
        con.executemany(
            "insert into enriched.memory_enrichment (memory_id, content_hash, provider, model, entities, topics, "
            "sentiment, emotional_salience, importance, goal, task, action, locations, embedding, "
            "embedding_model, embedding_dim, enriched_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            enrichment_rows,
        )
    return len(raw_rows)


def write_memories(settings, memories: Iterable[Memory], **kwargs) -> int:
    """insert_memories through a short-lived, bootstrapped connection to the settings' store."""
    from codex_dreams.store import open_store

    with open_store(settings) as con:
        return insert_memories(con, memories, **kwargs)


def mark_deleted(target, ids: Sequence[str], at_time: datetime | None = None) -> None:
    """Mark memories deleted at their source (`target`: a connection or a Settings object)."""
    when = at_time or datetime(2099, 1, 1)

    def _mark(con):
        con.executemany("update raw.memories set deleted_at = ? where id = ?", [(when, i) for i in ids])

    if isinstance(target, duckdb.DuckDBPyConnection):
        _mark(target)
    else:
        from codex_dreams.store import open_store

        with open_store(target) as con:
            _mark(con)


def query(settings, sql: str, params: Sequence | None = None) -> list[tuple]:
    """Rows of a query against the test's store (read-only connection, closed at once)."""
    from codex_dreams.store import connect

    con = connect(settings.database_path, read_only=True, extension_dir=settings.extension_dir)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def stage_assets() -> list:
    """raw_memories, the dbt assets and every stage module's Python assets and asset checks."""
    from codex_dreams.dbt import build_dbt_assets
    from codex_dreams.definitions import STAGE_MODULES
    from codex_dreams.stages import sensory_input

    assets = [sensory_input.raw_memories, build_dbt_assets()]
    for module in STAGE_MODULES:
        assets.extend(module.assets)
        assets.extend(module.asset_checks)
    return assets


def materialize_stages(resources: dict, *targets: str, extra_assets: Sequence = (), raise_on_error: bool = True):
    """Materialize dbt groups ("working_memory") or asset keys ("short_term_memory/stm_memories")."""
    import dagster as dg

    selection = None
    for target in targets:
        part = (dg.AssetSelection.assets(dg.AssetKey(target.split("/"))) if "/" in target
                else dg.AssetSelection.groups(target))
        selection = part if selection is None else selection | part
    result = dg.materialize([*stage_assets(), *extra_assets], resources=resources, selection=selection,
                            raise_on_error=raise_on_error)
    return result
