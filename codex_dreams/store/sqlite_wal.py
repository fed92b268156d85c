"""The small SQLite files beside the DuckDB store (the inbox, the recall log).

They take writes while a pipeline run holds the DuckDB file: SQLite in WAL mode lets concurrent writers wait on
a busy timeout and never blocks readers. A writer connection per file and process stays open, because opening
one, and the checkpoint SQLite runs when the last connection to a WAL database closes, cost several fsyncs,
i.e. most of a write's latency.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from contextlib import closing
from pathlib import Path
from typing import Callable, Iterator, Sequence

from codex_dreams.settings import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE


def open_wal(path: Path, schema: str, *, synchronous: str, timeout: float,
             check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, `schema` applied.

    The file is created user-only (0600) in a user-only directory: it holds memories or what was recalled.
    SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    try:  # an empty file is an empty SQLite database
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        pass
    con = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=check_same_thread)
    con.execute("pragma journal_mode=wal")
    con.execute(f"pragma synchronous={synchronous}")
    con.executescript(schema)
    return con


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def close_quietly(con: sqlite3.Connection) -> None:
    try:
        con.close()
    except sqlite3.Error:
        pass


class WriterCache:
    """Open writer connections, a few files at most. A cached connection is dropped when the process forked
    (it belongs to the parent) or the file was replaced or removed (its inode changed). Use `lock` around
    `get` and the write."""

    def __init__(self, opener: Callable[[Path], sqlite3.Connection], max_files: int = 4):
        self._opener = opener
        self._max_files = max_files
        self._writers: OrderedDict[str, tuple[int, int | None, sqlite3.Connection]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, path: Path) -> sqlite3.Connection:
        key = str(path)
        cached = self._writers.get(key)
        if cached is not None:
            pid, inode, con = cached
            if pid == os.getpid() and inode == _inode(path):
                self._writers.move_to_end(key)
                return con
            self.discard(path)
        con = self._opener(path)
        self._writers[key] = (os.getpid(), _inode(path), con)
        while len(self._writers) > self._max_files:
            _, (pid, _, oldest) = self._writers.popitem(last=False)
            if pid == os.getpid():
                close_quietly(oldest)
        return con

    def discard(self, path: Path) -> None:
        cached = self._writers.pop(str(path), None)
        if cached is not None and cached[0] == os.getpid():
            close_quietly(cached[2])

    def close_all(self) -> None:
        with self.lock:
            while self._writers:
                _, (pid, _, con) = self._writers.popitem()
                if pid == os.getpid():
                    close_quietly(con)


def insert_rows(con: sqlite3.Connection, statement: str, rows: Sequence[tuple]) -> None:
    """`statement` for every row in one transaction (begin immediate: the write lock is taken up front)."""
    con.execute("begin immediate")
    try:
        con.executemany(statement, rows)
        con.execute("commit")
    except BaseException:
        if con.in_transaction:
            con.execute("rollback")
        raise


def count_rows(path: Path, opener: Callable[[Path], sqlite3.Connection], table: str) -> int:
    """Rows waiting in `table` (0 when the file does not exist yet)."""
    if not path.exists():
        return 0
    with closing(opener(path)) as con:
        return con.execute(f"select count(*) from {table}").fetchone()[0]


def drain_batches(path: Path, opener: Callable[[Path], sqlite3.Connection], table: str, columns: str,
                  batch_size: int) -> Iterator[list[tuple]]:
    """Yield the rows of `table` in `seq` order, `batch_size` at a time, each row (seq, *columns). A batch is
    deleted only when the caller asks for the next one, i.e. after it has stored the batch: a crash in between
    leaves it in the file to be drained again (the callers' inserts skip what they already have)."""
    if not path.exists():
        return
    with closing(opener(path)) as con:
        while True:
            rows = con.execute(f"select seq, {columns} from {table} order by seq limit ?",
                               (batch_size,)).fetchall()
            if not rows:
                return
            yield rows
            con.execute(f"delete from {table} where seq <= ?", (rows[-1][0],))
