"""The scripted store of the recall tests: memories, real offline embeddings (the enrichment module's MiniLM),
association rows and optional long-term-memory signals written straight into the DuckDB tables, then a
snapshot published with the same function the `recall_snapshot` asset uses. Import it directly:
`from recall_store import CORPUS, write_store, publish`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

T0 = datetime(2025, 3, 1, 9, 0)


@dataclass(frozen=True)
class M:
    id: str
    text: str
    day: int  # days after T0 (event time)
    metadata: dict = field(default_factory=dict)


# The memories the tests ask about, and enough unrelated ones to make ranking meaningful.
KITTEN = M("kitten", "I adopted a grey kitten named Pixel from the animal shelter.", 3, {"mood": "happy"})
ZOLTAN = M("zoltan", "Met Zoltan Kovacsevic at the conference in Lisbon to discuss the research grant.", 5)
FERRY = M("ferry", "Booked the ferry tickets to Hydra for our anniversary weekend.", 8)
BILLS = M("bills", "Paid the electricity bill and renewed the car insurance online.", 8)  # linked to FERRY only
TOMATO = M("tomato", "Watered the tomato plants on the balcony before breakfast.", 9)  # two hops from FERRY
CORPUS = [
    KITTEN, ZOLTAN, FERRY, BILLS, TOMATO,
    M("rescue", "The mountain rescue team ran a training exercise near the ski centre.", 1),
    M("home", "Moved the bookshelf into the new home office and hung two paintings.", 2),
    M("flight", "Flight LH1234 to Zurich leaves at 7:45 from gate B12.", 4, {"kind": "travel"}),
    M("budget", "The quarterly budget review is scheduled for next Tuesday with finance.", 4),
    M("bakery", "Bought sourdough bread and oat milk at the corner bakery.", 6),
    M("wedding", "My sister's wedding will be in Porto in June; I am giving a toast.", 6),
    M("novel", "Finished reading a novel about a lighthouse keeper on a remote island.", 7),
    M("dentist", "The dentist appointment moved to Friday afternoon at three.", 7),
    M("run", "Ran ten kilometres along the river in fifty-two minutes, a new personal best.", 10),
    M("python", "Refactored the data pipeline to stream records instead of loading them all.", 10),
    M("guitar", "Practised the new fingerpicking pattern on the acoustic guitar for an hour.", 11),
    M("dinner", "Cooked a mushroom risotto for dinner with friends from work.", 11),
    M("piano", "Booked a piano tuner for the old upright in the living room.", 12),
    M("garden", "The neighbour's apple tree dropped branches over our fence in the storm.", 12),
    M("laptop", "The laptop battery drains fast since the last operating system update.", 13),
    M("museum", "Visited the natural history museum and saw the blue whale skeleton.", 13),
    M("chess", "Lost a long chess game after blundering my queen in the endgame.", 14),
    M("coffee", "Switched to decaf coffee after lunch to sleep better.", 14),
    M("plumber", "The plumber fixed the leaking kitchen tap and replaced a valve.", 15),
    M("birthday", "Ordered a chocolate cake for Maya's tenth birthday party on Saturday.", 15),
    M("language", "Started learning Portuguese with a daily fifteen minute lesson.", 16),
    M("meeting", "The design review meeting agreed to postpone the launch by two weeks.", 16),
    M("hike", "Hiked to the waterfall trail and saw a family of deer at dusk.", 17),
    M("car", "The car needs new winter tyres before the trip north.", 17),
    M("podcast", "Listened to a podcast about the history of maps and navigation.", 18),
]
# (memory_a, memory_b, strength, link_type): FERRY-BILLS strong; BILLS-TOMATO a second hop.
LINKS = [
    ("bills", "ferry", 0.9, "hebbian"),
    ("bills", "tomato", 0.8, "temporal"),
    ("dinner", "python", 0.3, "creative"),
]


def write_store(settings, memories=CORPUS, vectors: np.ndarray | None = None, links=LINKS, *,
                ltm: dict[str, float] | None = None, accesses: dict[str, int] | None = None,
                episodes: dict[str, str] | None = None) -> None:
    """Insert memories (+ embeddings when given, + links, + LTM retrieval strengths, + access rows, + the
    short-term episode of each memory named in `episodes`)."""
    from codex_dreams.enrichment import active_embedding_model, active_model_key
    from codex_dreams.store import open_store

    with open_store(settings) as con:
        con.execute("begin transaction")  # one commit: statement-by-statement autocommit costs seconds
        for m in memories:
            created = T0 + timedelta(days=m.day)
            con.execute(
                "insert into raw.memories (id, content, created_at, updated_at, metadata, source) "
                "values (?, ?, ?, ?, ?, 'test')",
                [m.id, m.text, created, created, json.dumps(m.metadata)],
            )
        if vectors is not None:
            # through Arrow: a bound Python list costs DuckDB two failed `import pandas` per element
            key, model = active_model_key(settings), active_embedding_model(settings)
            vectors = np.asarray(vectors, dtype=np.float32)
            batch = pa.table({
                "memory_id": [m.id for m in memories],
                "content": [m.text for m in memories],
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
            })
            con.register("test_vectors", batch)
            con.execute(
                "insert into enriched.memory_enrichment (memory_id, content_hash, provider, model, embedding, "
                "embedding_model, embedding_dim) select memory_id, left(sha256(content), 32), 'offline', ?, "
                "embedding::float[], ?, ? from test_vectors",
                [key, model, vectors.shape[1]],
            )
            con.unregister("test_vectors")
        for a, b, strength, link_type in links:
            a, b = min(a, b), max(a, b)
            con.execute(
                "insert into consolidation.associations (memory_a, memory_b, strength, link_type, created_at, "
                "updated_at, created_cycle_key, updated_cycle_key) values (?, ?, ?, ?, ?, ?, 'hippocampal:t', "
                "'hippocampal:t')",
                [a, b, strength, link_type, T0, T0],
            )
        if ltm:
            con.execute("create schema if not exists long_term_memory")
            con.execute("create table long_term_memory.ltm_memories (memory_id varchar, created_at timestamp, "
                        "strength double, stability double, category varchar, cluster_id integer, "
                        "retrieval_strength double)")
            for memory_id, value in ltm.items():
                con.execute("insert into long_term_memory.ltm_memories values (?, ?, 0.5, 1.0, 'stable', 1, ?)",
                            [memory_id, T0, value])
        if episodes:
            con.execute("create schema if not exists short_term_memory")
            con.execute("create table if not exists short_term_memory.stm_memories (memory_id varchar, "
                        "episode_id varchar)")
            for memory_id, episode_id in episodes.items():
                con.execute("insert into short_term_memory.stm_memories values (?, ?)", [memory_id, episode_id])
        for memory_id, count in (accesses or {}).items():
            for i in range(count):
                con.execute("insert into long_term_memory.access_log values (?, ?, ?)",
                            [memory_id, T0 + timedelta(days=20), f"q{i}"])
        con.execute("commit")


def publish(settings):
    """Build and publish a snapshot from the store (what the recall_snapshot asset does)."""
    from codex_dreams.retrieval.snapshot import build_snapshot
    from codex_dreams.store import open_store

    with open_store(settings, read_only=True) as con:
        return build_snapshot(con, settings)
