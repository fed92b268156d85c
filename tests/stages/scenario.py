"""Scripted memories for stage tests: chosen times, chosen enrichment, written straight into the store.

The stage tests do not depend on an enrichment provider: they write `raw.memories` rows and matching
`enriched.memory_enrichment` rows whose importance, salience, sentiment, goal/task/action, locations and
embedding the test chooses, so every expectation follows from the script.

Stable API (other stage tests use it; add, never change):

    from scenario import BASE_TIME, Memory, at, topic_vector, insert_memories, mark_deleted, write_memories
    from scenario import stage_assets, materialize_stages, query, isolated_stage_env, stream_script

- `at(seconds=0, minutes=0, hours=0, days=0)`: a naive-UTC time relative to BASE_TIME (a window start).
- `topic_vector(axis, dim=384, toward=None, mix=0.0)`: a unit embedding along one axis, optionally tilted
  toward another axis (cosine to the pure axis = cos(mix * pi/2)): scripted "topics" for similarity.
- `Memory(id, content, created_at, ...)`: one scripted memory; `enriched=False` writes no enrichment row
  (the stages must then use neutral defaults); `deleted_at` marks it deleted at its source.
- `insert_memories(con, memories, model="scripted/test")`: insert into raw.memories (+ enrichment); returns
  the count. `con` must be bootstrapped (the `store` fixture, or `codex_dreams.store.open_store`).
- `write_memories(settings, memories, ...)`: the same through a short-lived connection (open late, close
  early: Dagster runs need the file afterwards).
- `mark_deleted(settings_or_con, ids, at_time=None)`: set deleted_at (a deletion at the source).
- `stage_assets(*stages)`: raw_memories, the dbt models under models/<stage>/ and the named stage modules'
  Python assets and asset checks (everything when no stage is named).
- `materialize_stages(resources, *groups_or_keys, extra_assets=())`: materialize the given groups (e.g.
  "working_memory", "short_term_memory") or asset keys ("working_memory/wm_attention"), with the Python
  assets/checks of exactly those stages; raises on failure and returns the ExecuteInProcessResult.
- `query(settings, sql, params=None)`: rows of a read-only query against the test's store.
- `isolated_stage_env(home)`: context manager -> (settings, resources) of a fresh store under `home`, with
  tests/conftest.py's environment isolation, for module/session fixtures (which cannot use `monkeypatch`);
  the settings and resources carry explicit paths, so they stay usable after the block.
- `stream_script()`: the scripted stream the working/short-term memory tests share (a 10-memory burst,
  held and displaced working-memory items, an unenriched and a deleted memory, a time gap, a topic shift);
  the `stream_store` fixture (tests/stages/conftest.py) materializes it once per session.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
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


# The same isolation as tests/conftest.py's `codex_home` fixture (kept in step with it).
ISOLATED_VARIABLES = {"POSTGRES_DB_URL": "", "CODEX_LLM_PROVIDER": "offline"}
CLEARED_VARIABLES = ("DUCKDB_PATH", "DAGSTER_HOME", "OPENAI_API_KEY", "MAX_CONCURRENCY", "CODEX_TIMEZONE",
                     "OLLAMA_URL", "OLLAMA_MODEL", "EMBEDDING_MODEL", "OLLAMA_TIMEOUT", "OPENAI_BASE_URL")


@contextlib.contextmanager
def isolated_stage_env(home: Path):
    """Settings and resources for a store under `home`, with the same isolation as tests/conftest.py's
    `codex_home` fixture, for module- or session-scoped fixtures (which cannot use `monkeypatch`)."""
    import pytest

    patch = pytest.MonkeyPatch()
    try:
        patch.setenv("CODEX_HOME", str(home))
        for name, value in ISOLATED_VARIABLES.items():
            patch.setenv(name, value)
        for name in CLEARED_VARIABLES:
            patch.delenv(name, raising=False)
        home.mkdir(parents=True, exist_ok=True)
        patch.chdir(home.parent)
        from codex_dreams.resources import build_resources
        from codex_dreams.settings import load_settings

        settings = load_settings()
        yield settings, build_resources(settings)
    finally:
        patch.undo()
        # the dbt asset exports DUCKDB_PATH for dbt's profiles.yml; do not leak this store's path
        os.environ.pop("DUCKDB_PATH", None)


def stage_assets(*stages: str) -> list:
    """raw_memories, the dbt models of the named stages (all models when none is named), and the Python
    assets and asset checks of the named stage modules (all of definitions.STAGE_MODULES when none)."""
    import importlib

    from codex_dreams.dbt import build_dbt_assets
    from codex_dreams.params import DBT_PROJECT_DIR
    from codex_dreams.stages import sensory_input

    folders = [stage for stage in dict.fromkeys(stages) if (DBT_PROJECT_DIR / "models" / stage).is_dir()]
    dbt_assets = (build_dbt_assets(select=" ".join(f"path:models/{folder}" for folder in folders),
                                   name="codex_dbt_" + "_".join(folders)) if folders else build_dbt_assets())
    if stages:
        modules = []
        for stage in dict.fromkeys(stages):
            try:
                modules.append(importlib.import_module(f"codex_dreams.stages.{stage}"))
            except ModuleNotFoundError:  # a dbt-only group (e.g. monitoring)
                continue
    else:
        from codex_dreams.definitions import STAGE_MODULES

        modules = list(STAGE_MODULES)
    assets = [sensory_input.raw_memories, dbt_assets]
    for module in modules:
        assets.extend(a for a in getattr(module, "assets", []) if a is not sensory_input.raw_memories)
        assets.extend(getattr(module, "asset_checks", []))
    return assets


def materialize_stages(resources: dict, *targets: str, extra_assets: Sequence = (), raise_on_error: bool = True):
    """Materialize dbt groups ("working_memory") or asset keys ("short_term_memory/stm_memories")."""
    import dagster as dg

    selection = None
    for target in targets:
        part = (dg.AssetSelection.assets(dg.AssetKey(target.split("/"))) if "/" in target
                else dg.AssetSelection.groups(target))
        selection = part if selection is None else selection | part
    stages = [target.split("/")[0] for target in targets]  # only the targeted stages' Python modules load
    result = dg.materialize([*stage_assets(*stages), *extra_assets], resources=resources, selection=selection,
                            raise_on_error=raise_on_error)
    return result


# The scripted stream the working- and short-term-memory tests share (built and materialized once).
# Times are offsets from scenario.BASE_TIME (09:00:00, a window start).
BURST_IMPORTANCE = {  # ten memories in one 30-second window, importance shuffled against arrival order
    "b00": 0.15, "b01": 0.95, "b02": 0.35, "b03": 0.75, "b04": 0.05,
    "b05": 0.55, "b06": 0.85, "b07": 0.25, "b08": 0.65, "b09": 0.45,
}


def stream_script() -> list:
    burst = [Memory(mid, f"burst memory {mid}", at(1 + i), importance=imp)
             for i, (mid, imp) in enumerate(BURST_IMPORTANCE.items())]
    held = [  # c1, c2 share a window; c3 and the unenriched u1 arrive in the next: c1, c2 are still held
        Memory("c1", "looked at the release notes", at(minutes=10, seconds=1), importance=0.6),
        Memory("c2", "checked the changelog", at(minutes=10, seconds=2), importance=0.6),
        Memory("c3", "filed a ticket", at(minutes=10, seconds=31), importance=0.6),
        Memory("u1", "a memory nobody enriched", at(minutes=10, seconds=40), enriched=False),
    ]
    displaced = [  # d1, d2 share a window; seven new items fill the next one and displace them
        Memory("d1", "first thought", at(minutes=20, seconds=1), importance=0.5),
        Memory("d2", "second thought", at(minutes=20, seconds=2), importance=0.5),
        Memory("gone", "deleted at its source", at(minutes=20, seconds=5), importance=0.9,
               deleted_at=at(days=1)),
        *[Memory(f"f{k}", f"flood item {k}", at(minutes=20, seconds=30 + k), importance=0.7) for k in range(1, 8)],
    ]
    atlas = [  # after a 40-minute pause: one episode on one topic (axis 1), with structure and places
        Memory("e1", "Grabbed coffee at Kestrel café, two blocks north of the office, before planning.",
               at(hours=1), embedding=topic_vector(1), goal="ship Atlas", task="write checklist",
               action="drafted the list", locations=["Kestrel café"], sentiment=0.6, emotional_salience=0.7),
        Memory("e2", "The whiteboard is to my left, behind the desk; reviewed the dedup fix there.",
               at(hours=1, minutes=1), embedding=topic_vector(1, toward=3, mix=0.2), goal="ship Atlas",
               task="review dedup", action="opened the PR", sentiment=0.7, emotional_salience=0.8),
        Memory("e3", "Back to the checklist for the cutover.", at(hours=1, minutes=2),
               embedding=topic_vector(1, toward=4, mix=0.2), goal="plan the trip", task="write checklist",
               action="drafted the list", sentiment=0.5, emotional_salience=0.6),
    ]
    knee = [  # a topic shift one minute later (axis 2 is orthogonal to axis 1): a new episode, low mood
        Memory("k1", "My knee aches after the run.", at(hours=1, minutes=3), embedding=topic_vector(2),
               sentiment=-0.5, emotional_salience=0.2, locations=["Laurelhurst Park"]),
        Memory("k2", "Booked a physio appointment for the knee.", at(hours=1, minutes=4),
               embedding=topic_vector(2, toward=5, mix=0.2), sentiment=-0.4, emotional_salience=0.2),
    ]
    return burst + held + displaced + atlas + knee
