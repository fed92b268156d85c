"""The testing effect: every recall is logged beside the store, and the next pipeline run applies it.

A recall must not write the DuckDB store (a run may hold it), so each answer is appended to a small SQLite
file in WAL mode, `$CODEX_HOME/recall_log.sqlite` (concurrent writers wait on a busy timeout; readers never
block). The `long_term_memory/access_log` asset drains it into `long_term_memory.access_log(memory_id,
accessed_at, query_id)`, where retrieval strength and consolidation read it. The drain is idempotent: rows
already present for the same (query_id, memory_id) are not inserted twice, so a crash between the DuckDB commit
and the SQLite delete only re-drains harmlessly.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Iterable

from codex_dreams.store.sqlite_wal import WriterCache, count_rows, drain_batches, insert_rows, open_wal

LOG_FILE = "recall_log.sqlite"
ACCESS_LOG = "long_term_memory.access_log"

_SCHEMA = """
create table if not exists recall_log (
    seq integer primary key autoincrement,
    query_id text not null,
    queried_at text not null,      -- naive UTC, ISO 8601
    memory_id text not null,
    rank integer not null,         -- 1 = best
    score real
);
"""

ACCESS_LOG_DDL = [
    "create schema if not exists long_term_memory",
    f"""
    create table if not exists {ACCESS_LOG} (
        memory_id varchar not null,
        accessed_at timestamp not null,   -- UTC
        query_id varchar
    )
    """,
]


def log_path(settings) -> Path:
    return settings.codex_home.expanduser().resolve() / LOG_FILE


def _open(path: Path, check_same_thread: bool = True) -> sqlite3.Connection:
    # normal: a recall lost to a power cut only misses one testing-effect event
    return open_wal(path, _SCHEMA, synchronous="normal", timeout=10.0, check_same_thread=check_same_thread)


_WRITERS = WriterCache(lambda path: _open(path, check_same_thread=False))


def append(path: Path, entries: Iterable[tuple[str, datetime, list[tuple[str, float]]]]) -> int:
    """Log recalls: (query_id, queried_at, [(memory_id, score), ...] best first). Returns rows written."""
    rows = [
        (query_id, queried_at.isoformat(), memory_id, rank, float(score))
        for query_id, queried_at, results in entries
        for rank, (memory_id, score) in enumerate(results, start=1)
    ]
    if not rows:
        return 0
    with _WRITERS.lock:
        insert_rows(_WRITERS.get(path),
                    "insert into recall_log (query_id, queried_at, memory_id, rank, score) values (?, ?, ?, ?, ?)",
                    rows)
    return len(rows)


def pending(path: Path) -> int:
    return count_rows(path, _open, "recall_log")


def read(path: Path) -> list[tuple]:
    """All logged rows (seq, query_id, queried_at, memory_id, rank, score), oldest first."""
    if not path.exists():
        return []
    with closing(_open(path)) as con:
        return con.execute(
            "select seq, query_id, queried_at, memory_id, rank, score from recall_log order by seq").fetchall()


def ensure_access_log(duck_con) -> None:
    for statement in ACCESS_LOG_DDL:
        duck_con.execute(statement)


def drain(duck_con, path: Path, batch_size: int = 50_000) -> int:
    """Move logged recalls into long_term_memory.access_log; returns how many rows the access log gained."""
    ensure_access_log(duck_con)
    if not path.exists():
        return 0
    import pyarrow as pa

    gained = 0
    for rows in drain_batches(path, _open, "recall_log", "query_id, queried_at, memory_id", batch_size):
        _, query_ids, times, memory_ids = zip(*rows)
        batch = pa.table({
            "memory_id": pa.array(memory_ids, pa.string()),
            "accessed_at": pa.array(times, pa.string()),
            "query_id": pa.array(query_ids, pa.string()),
        })
        duck_con.register("recall_log_batch", batch)
        try:
            duck_con.execute("begin transaction")
            inserted = duck_con.execute(
                f"""
                insert into {ACCESS_LOG} (memory_id, accessed_at, query_id)
                select distinct b.memory_id, b.accessed_at::timestamp, b.query_id
                from recall_log_batch as b
                where not exists (
                    select 1 from {ACCESS_LOG} as a
                    where a.query_id = b.query_id and a.memory_id = b.memory_id
                )
                """
            ).fetchone()[0]
            duck_con.execute("commit")
        except BaseException:
            duck_con.execute("rollback")
            raise
        finally:
            duck_con.unregister("recall_log_batch")
        gained += int(inserted)
    return gained
