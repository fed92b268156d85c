"""A synthetic short-term memory for the consolidation tests: the contract tables (stm_memories, stm_episodes,
stm_coactivation, enrichment embeddings) written directly into an in-memory DuckDB, so the cycle functions run
in milliseconds with every input chosen by the test. The Dagster/dbt tests use the real models instead
(tests/stages/scenario.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from codex_dreams.params import biological_params
from codex_dreams.stages import cycles
from codex_dreams.store import bootstrap

T0 = datetime(2026, 3, 2, 9, 0, 0)  # a Monday morning


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def hippocampal(hour_offset: int) -> cycles.Cycle:
    """The hippocampal cycle `hour_offset` hours after T0's hour (as_of = that tick)."""
    return cycles.cycle_for("hippocampal", T0 + timedelta(hours=hour_offset))


def cycle(cycle_type: str, hour_offset: float) -> cycles.Cycle:
    return cycles.cycle_for(cycle_type, T0 + timedelta(hours=hour_offset))


def unit(axis: int, toward: int | None = None, cosine: float = 1.0, dim: int = 8) -> list[float]:
    """A unit vector on `axis`, tilted toward `toward` so its cosine to the pure axis is `cosine`."""
    vector = [0.0] * dim
    vector[axis] = cosine
    if toward is not None:
        vector[toward] = math.sqrt(max(0.0, 1 - cosine * cosine))
    return vector


@dataclass
class Mem:
    id: str
    episode: str
    at: datetime
    encoding: float = 0.8
    salience: float = 0.3
    topics: list[str] = field(default_factory=list)
    embedding: list[float] | None = None


@dataclass
class Pair:
    a: str
    b: str
    window: int = 1
    episode: int = 1

    @property
    def count(self) -> int:
        return self.window + self.episode


def new_store(path: str | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path or ":memory:")
    bootstrap(con)
    con.execute("create schema if not exists short_term_memory")
    con.execute("""create table short_term_memory.stm_memories (memory_id varchar, episode_id varchar,
        created_at timestamp, encoding_strength double, emotional_salience double, topics varchar[],
        entities varchar[])""")
    con.execute("create table short_term_memory.stm_episodes (episode_id varchar, salience double)")
    con.execute("""create table short_term_memory.stm_coactivation (memory_a varchar, memory_b varchar,
        window_coactivations integer, episode_coactivations integer, coactivation_count integer)""")
    return con


def add(con: duckdb.DuckDBPyConnection, memories: list[Mem], pairs: list[Pair] = (),
        episode_salience: dict[str, float] | None = None) -> None:
    """Add memories (raw + STM + embeddings), their episodes (salience: given, else the members' mean) and
    co-activated pairs."""
    for m in memories:
        con.execute("insert into raw.memories (id, content, created_at, updated_at, source) values (?, ?, ?, ?, 'test')",
                    [m.id, f"memory {m.id}", m.at, m.at])
        con.execute("insert into short_term_memory.stm_memories values (?, ?, ?, ?, ?, ?, [])",
                    [m.id, m.episode, m.at, m.encoding, m.salience, m.topics])
        if m.embedding is not None:
            con.execute("""insert into enriched.memory_enrichment (memory_id, content_hash, provider, model, embedding,
                           embedding_dim) values (?, 'h', 'test', 'test', ?, ?)""", [m.id, m.embedding, len(m.embedding)])
    con.execute("delete from short_term_memory.stm_episodes")
    given = episode_salience or {}
    con.execute("""insert into short_term_memory.stm_episodes
        select episode_id, avg(emotional_salience) from short_term_memory.stm_memories group by 1""")
    for episode, salience in given.items():
        con.execute("update short_term_memory.stm_episodes set salience = ? where episode_id = ?", [salience, episode])
    for p in pairs:
        a, b = sorted((p.a, p.b))
        con.execute("insert into short_term_memory.stm_coactivation values (?, ?, ?, ?, ?)",
                    [a, b, p.window, p.episode, p.count])


def add_link(con: duckdb.DuckDBPyConnection, a: str, b: str, strength: float, link_type: str = "hebbian",
             key: str = "hippocampal:2000-01-01T00", at: datetime | None = None) -> None:
    """A link last set at `at` (default T0; forgetting runs on the event time since then)."""
    a, b = sorted((a, b))
    at = at or T0
    con.execute(f"""insert into {cycles.ASSOCIATIONS} (memory_a, memory_b, strength, link_type, created_at,
        updated_at, created_cycle_key, updated_cycle_key) values (?, ?, ?, ?, ?, ?, ?, ?)""",
                [a, b, strength, link_type, at, at, key, key])


def params(**overrides) -> dict:
    return biological_params(overrides)


def links(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], float]:
    return {(a, b): s for a, b, s in con.execute(f"select memory_a, memory_b, strength from {cycles.ASSOCIATIONS}").fetchall()}


def link_rows(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], tuple]:
    rows = con.execute(f"select memory_a, memory_b, strength, link_type, label from {cycles.ASSOCIATIONS}").fetchall()
    return {(a, b): (s, t, label) for a, b, s, t, label in rows}


STATE_TABLES = (cycles.ASSOCIATIONS, cycles.MEMORY_CONSOLIDATION, cycles.LEDGER)


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Every row of the consolidation state, sorted: equal snapshots = nothing changed."""
    return {table: sorted(con.execute(f"select * from {table}").fetchall(), key=repr) for table in STATE_TABLES}
