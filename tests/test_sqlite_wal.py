"""The SQLite WAL files beside the store: a batch leaves the file only after its consumer stored it."""

from functools import partial

import pytest

from codex_dreams.store.sqlite_wal import WriterCache, count_rows, drain_batches, insert_rows, open_wal

SCHEMA = "create table if not exists queue (seq integer primary key autoincrement, item text not null);"


def test_a_batch_is_deleted_only_after_the_consumer_asks_for_the_next(tmp_path):
    path = tmp_path / "queue.sqlite"
    opener = partial(open_wal, schema=SCHEMA, synchronous="full", timeout=5.0)
    writers = WriterCache(lambda p: opener(p, check_same_thread=False))
    with writers.lock:
        insert_rows(writers.get(path), "insert into queue (item) values (?)", [(f"m{i}",) for i in range(5)])
    assert count_rows(path, opener, "queue") == 5

    with pytest.raises(RuntimeError):  # the consumer fails while storing the second batch
        for number, rows in enumerate(drain_batches(path, opener, "queue", "item", batch_size=2)):
            if number == 1:
                raise RuntimeError("store failed")
    assert count_rows(path, opener, "queue") == 3  # the first batch went, the failed one stayed

    drained = [row[1] for rows in drain_batches(path, opener, "queue", "item", batch_size=2) for row in rows]
    assert drained == ["m2", "m3", "m4"]
    assert count_rows(path, opener, "queue") == 0
    writers.close_all()


def test_missing_file_counts_and_drains_nothing(tmp_path):
    opener = partial(open_wal, schema=SCHEMA, synchronous="normal", timeout=5.0)
    assert count_rows(tmp_path / "none.sqlite", opener, "queue") == 0
    assert list(drain_batches(tmp_path / "none.sqlite", opener, "queue", "item", 10)) == []
    assert not (tmp_path / "none.sqlite").exists()
