"""The sensory register: a small SQLite inbox that takes memories while the pipeline holds the DuckDB file.

SQLite in WAL mode takes concurrent writers (with a busy timeout) and readers, so `codex remember` never
fails because a run is in progress, and the 30-second sensor can see new arrivals without touching DuckDB.
A memory is acknowledged once its inbox transaction has committed (durable). `drain_inbox` moves rows into
`raw.memories` (insert-or-ignore by id, so a crash between the DuckDB commit and the inbox delete re-drains
harmlessly) and then deletes them from the inbox. `seq` only grows (AUTOINCREMENT), so it is a cursor.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from codex_dreams.errors import InboxUnavailable  # noqa: F401  (re-exported)
from codex_dreams.sources.records import MemoryRecord

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
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=check_same_thread)
    con.execute("pragma journal_mode=wal")
    # full: a commit is fsynced before `remember` returns, so an acknowledged memory survives a power cut, not
    # only a process crash (one fsync of the WAL per commit).
    con.execute("pragma synchronous=full")
    con.executescript(_SCHEMA)
    return con


# Writers are kept open per process (a few paths at most): opening a connection, and the checkpoint SQLite runs
# when the last connection to a WAL database closes, cost several fsyncs, i.e. most of a remember's latency.
# A cached connection is dropped when the process forked or the file was replaced or removed (its inode changed).
_WRITERS: "OrderedDict[str, tuple[int, int, sqlite3.Connection]]" = OrderedDict()
_WRITERS_LOCK = threading.Lock()
_MAX_WRITERS = 4


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _writer(path: Path) -> sqlite3.Connection:
    """The cached writer for `path` (call with _WRITERS_LOCK held)."""
    key = str(path)
    cached = _WRITERS.get(key)
    if cached is not None:
        pid, inode, con = cached
        if pid == os.getpid() and inode == _inode(path):
            _WRITERS.move_to_end(key)
            return con
        del _WRITERS[key]
        if pid == os.getpid():
            _close_quietly(con)
    con = _open(path, check_same_thread=False)
    _WRITERS[key] = (os.getpid(), _inode(path), con)
    while len(_WRITERS) > _MAX_WRITERS:
        _, (pid, _, oldest) = _WRITERS.popitem(last=False)
        if pid == os.getpid():
            _close_quietly(oldest)
    return con


def _close_quietly(con: sqlite3.Connection) -> None:
    try:
        con.close()
    except sqlite3.Error:
        pass


def close_writers() -> None:
    """Close the cached writers of this process (tests; a long-running process that wants the files closed)."""
    with _WRITERS_LOCK:
        while _WRITERS:
            _, (pid, _, con) = _WRITERS.popitem()
            if pid == os.getpid():
                _close_quietly(con)


def append(path: Path, records: Iterable[MemoryRecord]) -> int:
    """Write records in one durable transaction; returns how many were written."""
    rows = [
        (r.id, r.content, r.created_at.isoformat(), r.updated_at.isoformat(), r.metadata_json, r.source)
        for r in records
    ]
    if not rows:
        return 0
    with _WRITERS_LOCK:
        try:
            con = _writer(path)
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
            cached = _WRITERS.pop(str(path), None)
            if cached is not None and cached[0] == os.getpid():
                _close_quietly(cached[2])
            reason = getattr(error, "strerror", None) or str(error)
            message = f"cannot write the inbox {path}: {reason}"
        else:
            return len(rows)
    raise InboxUnavailable(message)


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
            # Several inbox rows may share an id (the same memory remembered twice): keep the first.
            gained += insert_batch(duck_con, batch, dedupe=len(set(ids)) < len(ids))
            # Only after the DuckDB commit: a crash in between re-drains these rows, and the anti-join skips them.
            con.execute("delete from inbox where seq <= ?", (max(seqs),))
