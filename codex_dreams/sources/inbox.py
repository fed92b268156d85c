"""The sensory register: a small SQLite inbox that takes memories while the pipeline holds the DuckDB file.

SQLite in WAL mode takes concurrent writers (with a busy timeout) and readers, so `codex remember` never
fails because a run is in progress, and the 30-second sensor can see new arrivals without touching DuckDB.
A memory is acknowledged once its inbox transaction has committed (durable). `drain_inbox` moves rows into
`raw.memories` (insert-or-ignore by id, so a crash between the DuckDB commit and the inbox delete re-drains
harmlessly) and then deletes them from the inbox. `seq` only grows (AUTOINCREMENT), so it is a cursor.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from codex_dreams.errors import InboxUnavailable  # noqa: F401  (re-exported)
from codex_dreams.sources.records import MemoryRecord
from codex_dreams.store.sqlite_wal import WriterCache, count_rows, drain_batches, insert_rows, open_wal

if TYPE_CHECKING:  # pyarrow is imported where it is used: `codex remember` does not need it (~0.1 s)
    import pyarrow as pa

_SCHEMA = """
create table if not exists inbox (
    seq integer primary key autoincrement,
    id text not null,
    content text not null,
    created_at text not null,
    updated_at text not null,
    metadata text not null,
    source text not null
);
"""


def _open(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    # full: a commit is fsynced before `remember` returns, so an acknowledged memory survives a power cut, not
    # only a process crash (one fsync of the WAL per commit).
    return open_wal(path, _SCHEMA, synchronous="full", timeout=30.0, check_same_thread=check_same_thread)


_WRITERS = WriterCache(lambda path: _open(path, check_same_thread=False))


def close_writers() -> None:
    """Close the cached writers of this process (tests; a long-running process that wants the files closed)."""
    _WRITERS.close_all()


def append(path: Path, records: Iterable[MemoryRecord]) -> int:
    """Write records in one durable transaction; returns how many were written."""
    rows = [
        (r.id, r.content, r.created_at.isoformat(), r.updated_at.isoformat(), r.metadata_json, r.source)
        for r in records
    ]
    if not rows:
        return 0
    with _WRITERS.lock:
        try:
            insert_rows(_WRITERS.get(path), "insert into inbox (id, content, created_at, updated_at, metadata, "
                                            "source) values (?, ?, ?, ?, ?, ?)", rows)
        except (sqlite3.Error, OSError) as error:
            _WRITERS.discard(path)
            reason = getattr(error, "strerror", None) or str(error)
            message = f"cannot write the inbox {path}: {reason}"
        else:
            return len(rows)
    raise InboxUnavailable(message)


def pending(path: Path) -> int:
    return count_rows(path, _open, "inbox")


def high_water_mark(path: Path) -> int:
    """The largest seq ever assigned (0 if none): grows with every accepted memory, drained or not."""
    if not path.exists():
        return 0
    with closing(_open(path)) as con:
        row = con.execute("select seq from sqlite_sequence where name = 'inbox'").fetchone()
        return int(row[0]) if row else 0


def insert_batch(duck_con, batch: pa.Table, *, dedupe: bool = True) -> int:
    """Insert an Arrow batch (id, content, created_at, updated_at, metadata, source) into raw.memories in one
    transaction, skipping ids already stored; returns how many rows were new. created_at/updated_at may be ISO
    text or timestamps. With dedupe, ids repeated inside the batch keep their earliest row."""
    import pyarrow as pa

    timestamps_are_text = pa.types.is_string(batch.schema.field("created_at").type)
    cast = "::timestamp" if timestamps_are_text else ""
    source = "inbox_batch"
    if dedupe:
        source = "(select * from inbox_batch qualify row_number() over (partition by id order by created_at) = 1)"
    duck_con.register("inbox_batch", batch)
    try:
        duck_con.execute("begin transaction")
        try:
            # An anti-join rather than `on conflict do nothing`: re-draining rows that are already stored (after
            # a crash, or a re-import) then costs almost nothing.
            inserted = duck_con.execute(
                f"""
                insert into raw.memories (id, content, created_at, updated_at, metadata, source, ingested_at)
                select id, content, created_at{cast}, updated_at{cast}, metadata::json, source,
                       now() at time zone 'UTC'
                from {source} b
                where not exists (select 1 from raw.memories m where m.id = b.id)
                """
            ).fetchone()[0]
            duck_con.execute("commit")
        except BaseException:
            duck_con.execute("rollback")
            raise
    finally:
        duck_con.unregister("inbox_batch")
    return int(inserted)


def records_batch(records: Sequence[MemoryRecord]) -> pa.Table:
    """MemoryRecords as an Arrow batch for insert_batch (timestamps typed, no text round trip)."""
    import pyarrow as pa

    return pa.table({
        "id": pa.array([r.id for r in records], pa.string()),
        "content": pa.array([r.content for r in records], pa.string()),
        "created_at": pa.array([r.created_at for r in records], pa.timestamp("us")),
        "updated_at": pa.array([r.updated_at for r in records], pa.timestamp("us")),
        "metadata": pa.array([r.metadata_json for r in records], pa.string()),
        "source": pa.array([r.source for r in records], pa.string()),
    })


def drain_inbox(duck_con, path: Path, batch_size: int = 100_000) -> int:
    """Move inbox rows into raw.memories; returns how many new memories the store gained."""
    if not path.exists():
        return 0
    import pyarrow as pa

    gained = 0
    # A batch leaves the inbox only after its DuckDB commit: a crash in between re-drains it, and the anti-join
    # on id skips what is already stored.
    for rows in drain_batches(path, _open, "inbox", "id, content, created_at, updated_at, metadata, source",
                              batch_size):
        _, ids, contents, created, updated, metas, sources = zip(*rows)
        batch = pa.table({
            "id": pa.array(ids, pa.string()),
            "content": pa.array(contents, pa.string()),
            "created_at": pa.array(created, pa.string()),
            "updated_at": pa.array(updated, pa.string()),
            "metadata": pa.array(metas, pa.string()),
            "source": pa.array(sources, pa.string()),
        })
        # Several inbox rows may share an id (the same memory remembered twice): keep the first.
        gained += insert_batch(duck_con, batch, dedupe=len(set(ids)) < len(ids))
    return gained
