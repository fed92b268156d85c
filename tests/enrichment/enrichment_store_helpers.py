"""Small helpers the enrichment tests share: put memories into raw.memories and read enrichment rows back."""

from __future__ import annotations

from datetime import datetime, timedelta

from codex_dreams.enrichment.resilience import ResilienceOptions
from codex_dreams.store import open_store

# Quick retries and a short cool-down so fault tests take well under a second each.
FAST = ResilienceOptions(max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.05, invalid_output_retries=1,
                         breaker_failure_threshold=3, breaker_cooldown_s=0.2, embed_batch_size=8)

SAMPLE_TEXTS = [
    "Had coffee with Sarah in Lisbon and we talked about the garden project.",
    "I need to send the quarterly report to Marcus before Friday!",
    "Terrible day: the flight to Berlin was cancelled and I was furious.",
    "Walked the dog around the lake; the weather was wonderful.",
    "Dr. Chen said my knee is healing well. I plan to run again in March.",
    "We booked a table at Nopa for Ana's birthday.",
    "Finished reading a book about the history of Rome.",
    "I love the new bakery two blocks north of the station.",
    "Meeting with the infrastructure team about the database migration.",
    "Grandma called from Porto; she is happy with her new garden.",
    "Fixed the leaking tap in the kitchen, finally.",
    "I want to learn Japanese before the trip to Tokyo next year.",
]


def insert_memories(settings, texts, *, prefix: str = "m") -> list[str]:
    """Insert texts as memories m0, m1, ... one minute apart; returns the ids."""
    start = datetime(2026, 3, 1, 9, 0, 0)
    ids = []
    with open_store(settings) as con:
        for i, text in enumerate(texts):
            memory_id = f"{prefix}{i}"
            at = start + timedelta(minutes=i)
            con.execute(
                "insert into raw.memories (id, content, created_at, updated_at, metadata, source) "
                "values (?, ?, ?, ?, ?, ?)",
                [memory_id, text, at, at, '{"test": true}', "test"],
            )
            ids.append(memory_id)
    return ids


def set_content(settings, memory_id: str, content: str) -> None:
    with open_store(settings) as con:
        con.execute("update raw.memories set content = ?, updated_at = updated_at + interval 1 hour where id = ?",
                    [content, memory_id])


def enrichment_rows(settings, model_key: str | None = None) -> list[dict]:
    with open_store(settings) as con:
        query = "select * from enriched.memory_enrichment"
        params = []
        if model_key is not None:
            query += " where model = ?"
            params.append(model_key)
        cursor = con.execute(query + " order by memory_id, model", params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
