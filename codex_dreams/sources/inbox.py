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
from typing import Iterable

import pyarrow as pa

from codex_dreams.sources.records import MemoryRecord

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


class InboxUnavailable(RuntimeError):
    """The inbox file cannot be opened or written (a bad CODEX_HOME, a full disk, ...)."""


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    con.execute("pragma journal_mode=wal")
    # full: a commit is fsynced before `remember` returns, so an acknowledged memory survives a power cut,
    # not only a process crash (measured: ~0.05 ms more per remember than synchronous=normal).
    con.execute("pragma synchronous=full")
    con.executescript(_SCHEMA)
    return con


def append(path: Path, records: Iterable[MemoryRecord]) -> int:
    """Write records in one transaction; returns how many were written."""
    rows = [
        (r.id, r.content, r.created_at.isoformat(), r.updated_at.isoformat(), r.metadata_json, r.source)
        for r in records
    ]
    if not rows:
        return 0
    try:
        with closing(_open(path)) as con:
            con.execute("begin immediate")
            try:
                con.executemany(
                    "insert into inbox (id, content, created_at, updated_at, metadata, source) "
                    "values (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                con.execute("commit")
            except BaseException:
                if con.in_transaction:
                    con.execute("rollback")
                raise
    except (sqlite3.Error, OSError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise InboxUnavailable(f"cannot write the inbox {path}: {reason}") from None
    return len(rows)


def pending(path: Path) -> int:
    if not path.exists():
        return 0
    with closing(_open(path)) as con:
        return con.execute("select count(*) from inbox").fetchone()[0]


def high_water_mark(path: Path) -> int:
    """The largest seq ever assigned (0 if none): grows with every accepted memory, drained or not."""
    if not path.exists():
        return 0
    with closing(_open(path)) as con:
        row = con.execute("select seq from sqlite_sequence where name = 'inbox'").fetchone()
        return int(row[0]) if row else 0


def drain_inbox(duck_con, path: Path, batch_size: int = 100_000) -> int:
    """Move inbox rows into raw.memories; returns how many new memories the store gained."""
    if not path.exists():
        return 0
    gained = 0
    with closing(_open(path)) as con:
        while True:
            rows = con.execute(
                "select seq, id, content, created_at, updated_at, metadata, source from inbox "
                "order by seq limit ?",
                (batch_size,),
            ).fetchall()
            if not rows:
                return gained
            seqs, ids, contents, created, updated, metas, sources = zip(*rows)
            batch = pa.table({
                "id": pa.array(ids, pa.string()),
                "content": pa.array(contents, pa.string()),
                "created_at": pa.array(created, pa.string()),
                "updated_at": pa.array(updated, pa.string()),
                "metadata": pa.array(metas, pa.string()),
                "source": pa.array(sources, pa.string()),
            })
            before = duck_con.execute("select count(*) from raw.memories").fetchone()[0]
            duck_con.register("inbox_batch", batch)
            try:
                duck_con.execute("begin transaction")
                # Several inbox rows may share an id (same memory remembered twice): keep the first.
                duck_con.execute(
                    """
                    insert into raw.memories (id, content, created_at, updated_at, metadata, source)
                    select id, content, created_at::timestamp, updated_at::timestamp, metadata::json, source
                    from inbox_batch
                    qualify row_number() over (partition by id order by created_at) = 1
                    on conflict (id) do nothing
                    """
                )
                duck_con.execute("commit")
            except BaseException:
                duck_con.execute("rollback")
                raise
            finally:
                duck_con.unregister("inbox_batch")
            gained += duck_con.execute("select count(*) from raw.memories").fetchone()[0] - before
            con.execute("delete from inbox where seq <= ?", (max(seqs),))
