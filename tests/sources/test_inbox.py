"""The sensory-register inbox: durable while the pipeline holds the store, drained exactly once, crash-safe."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource
from typer.testing import CliRunner

from codex_dreams.cli.main import app
from codex_dreams.sources import inbox
from codex_dreams.sources.ingest import drain_if_free, remember
from codex_dreams.sources.records import make_record, utc_now
from codex_dreams.stages.sensory_input import raw_memories
from codex_dreams.store import StoreBusyError, connect, duckdb_config, open_store


def raw_count(settings) -> int:
    con = duckdb.connect(str(settings.database_path), read_only=True)
    try:
        return con.execute("select count(*) from raw.memories").fetchone()[0]
    finally:
        con.close()


def materialize_raw(settings) -> dict:
    """Run the real raw_memories asset once; returns its materialization metadata as plain values."""
    resource = DuckDBResource(database=str(settings.database_path),
                              connection_config=duckdb_config(settings.extension_dir))
    result = dg.materialize([raw_memories], resources={"duckdb": resource})
    assert result.success
    [event] = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.materialization.metadata.items()}


def hold_store(path) -> subprocess.Popen:
    """Another process that opens the DuckDB file read-write and keeps it (like a long pipeline run)."""
    code = f"import duckdb, time\ncon = duckdb.connect({str(path)!r})\nprint('held', flush=True)\ntime.sleep(300)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def inbox_rows(settings) -> list[tuple]:
    with closing(sqlite3.connect(str(settings.inbox_path))) as con:
        return con.execute("select * from inbox order by seq").fetchall()


def test_remember_succeeds_while_another_process_holds_the_store_and_is_drained_exactly_once(settings, monkeypatch):
    with open_store(settings):
        pass
    holder = hold_store(settings.database_path)
    try:
        with pytest.raises(StoreBusyError):  # really held: not even this process can open the file
            connect(settings.database_path, wait_seconds=0.2)
        opened = []
        real_connect = duckdb.connect

        def recording_connect(*args, **kwargs):
            opened.append(str(args[0] if args else kwargs.get("database")))
            return real_connect(*args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(duckdb, "connect", recording_connect)
            result = CliRunner().invoke(app, ["remember", "Written while a run holds the store",
                                              "--at", "2024-07-01T12:00:00Z"])
        assert result.exit_code == 0, result.output
        # never waits for the store: remember does not even try to open it (every open goes through duckdb.connect)
        assert str(settings.database_path) not in opened
        assert inbox.pending(settings.inbox_path) == 1
    finally:
        holder.kill()
        holder.wait()
    assert raw_count(settings) == 0
    first = materialize_raw(settings)
    assert (first["drained_from_inbox"], first["total_memories"], first["active_memories"]) == (1, 1, 1)
    assert inbox.pending(settings.inbox_path) == 0
    second = materialize_raw(settings)
    assert (second["drained_from_inbox"], second["total_memories"]) == (0, 1)
    assert raw_count(settings) == 1


def test_a_crash_between_the_duckdb_commit_and_the_inbox_delete_redrains_without_duplicates(settings):
    for i in range(5):
        remember(f"memory {i}", at=f"2024-01-01T00:00:0{i}Z", settings=settings)
    before = inbox_rows(settings)
    assert len(before) == 5
    hwm = inbox.high_water_mark(settings.inbox_path)
    with open_store(settings) as con:
        assert inbox.drain_inbox(con, settings.inbox_path) == 5
    assert inbox.pending(settings.inbox_path) == 0
    # "crash": the DuckDB transaction committed but the inbox delete never happened
    with closing(sqlite3.connect(str(settings.inbox_path))) as con, con:
        con.executemany("insert into inbox values (?, ?, ?, ?, ?, ?, ?)", before)
    assert inbox.pending(settings.inbox_path) == 5
    meta = materialize_raw(settings)
    assert (meta["drained_from_inbox"], meta["total_memories"]) == (0, 5)
    assert inbox.pending(settings.inbox_path) == 0
    assert raw_count(settings) == 5
    assert inbox.high_water_mark(settings.inbox_path) == hwm


def test_a_real_process_crash_after_the_duckdb_commit(settings, tmp_path):
    """The drain process dies (os._exit) exactly when it is about to delete the drained inbox rows."""
    for i in range(3):
        remember(f"memory {i}", at=f"2024-01-01T00:00:0{i}Z", settings=settings)
    script = textwrap.dedent(f"""
        import os
        from codex_dreams.settings import get_settings
        from codex_dreams.sources import inbox
        from codex_dreams.store import open_store

        real_open = inbox._open

        class CrashOnDelete:
            def __init__(self, con):
                self.con = con
            def execute(self, sql, *args):
                if sql.lstrip().lower().startswith("delete"):
                    os._exit(17)
                return self.con.execute(sql, *args)
            def close(self):
                self.con.close()

        inbox._open = lambda path: CrashOnDelete(real_open(path))
        with open_store(get_settings()) as con:
            inbox.drain_inbox(con, get_settings().inbox_path)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 17, done.stderr
    assert inbox.pending(settings.inbox_path) == 3
    assert raw_count(settings) == 3  # committed before the crash
    meta = materialize_raw(settings)
    assert (meta["drained_from_inbox"], meta["total_memories"]) == (0, 3)
    assert inbox.pending(settings.inbox_path) == 0


def test_high_water_mark_only_grows(settings):
    path = settings.inbox_path
    marks = [inbox.high_water_mark(path)]
    assert marks == [0] and inbox.pending(path) == 0  # no file yet: nothing created by asking
    for batch in range(3):
        inbox.append(path, [make_record(f"b{batch} m{i}", at="2024-01-01T00:00:00Z") for i in range(batch + 1)])
        marks.append(inbox.high_water_mark(path))
        with open_store(settings) as con:
            inbox.drain_inbox(con, path)
        marks.append(inbox.high_water_mark(path))  # draining empties the inbox, the mark stays
        assert inbox.pending(path) == 0
    assert marks == [0, 1, 1, 3, 3, 6, 6]
    assert inbox.append(path, []) == 0 and inbox.high_water_mark(path) == 6


def test_drain_keeps_one_row_per_id_and_works_in_batches(settings):
    path = settings.inbox_path
    records = [make_record(f"memory {i}", at=f"2024-01-01T00:00:{i:02d}Z") for i in range(10)]
    inbox.append(path, records)
    inbox.append(path, records[:4])  # the same memories again (e.g. remembered twice)
    with open_store(settings) as con:
        assert inbox.drain_inbox(con, path, batch_size=3) == 10
        assert con.execute("select count(*), count(distinct id) from raw.memories").fetchone() == (10, 10)
        assert inbox.drain_inbox(con, path) == 0
    assert inbox.pending(path) == 0


def test_drained_rows_keep_their_fields(settings):
    record = make_record("  Met Jo at the station  ", at="2024-09-09T09:09:09.123456+02:00",
                         metadata={"who": "Jo", "nested": {"n": [1, 2]}}, source="cli")
    inbox.append(settings.inbox_path, [record])
    with open_store(settings) as con:
        inbox.drain_inbox(con, settings.inbox_path)
        row = con.execute("select id, content, created_at, updated_at, metadata::varchar, source, deleted_at, "
                          "ingested_at from raw.memories").fetchone()
    assert row[:7] == (record.id, "Met Jo at the station", record.created_at, record.created_at,
                       '{"nested": {"n": [1, 2]}, "who": "Jo"}', "cli", None)
    assert abs((row[7] - utc_now()).total_seconds()) < 60  # ingested_at: the drain time, UTC


def test_times_are_utc_whatever_the_machine_time_zone(settings):
    """ingested_at must not take the machine's local time (DuckDB's now()::timestamp does)."""
    script = textwrap.dedent("""
        from datetime import datetime, timezone
        from codex_dreams.settings import get_settings
        from codex_dreams.sources.ingest import drain_if_free, remember
        from codex_dreams.store import open_store
        remember("far from Greenwich", settings=get_settings())
        drain_if_free(get_settings())
        with open_store(get_settings()) as con:
            ingested, applied = con.execute(
                "select ingested_at, (select max(applied_at) from meta.schema_version) from raw.memories").fetchone()
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        print(abs((ingested - now).total_seconds()), abs((applied - now).total_seconds()))
    """)
    env = {**os.environ, "TZ": "Pacific/Kiritimati"}  # UTC+14
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ingested_skew, applied_skew = map(float, done.stdout.split())
    assert ingested_skew < 60 and applied_skew < 60


def test_concurrent_writers_and_a_drain_lose_nothing(settings):
    writer = textwrap.dedent("""
        import sys
        from codex_dreams.settings import get_settings
        from codex_dreams.sources.ingest import remember
        for i in range(40):
            remember(f"writer {sys.argv[1]} memory {i}", at="2024-01-01T00:00:00Z", settings=get_settings())
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(n)]) for n in range(4)]
    drained = 0
    while any(p.poll() is None for p in procs):
        drained += drain_if_free(settings) or 0
        time.sleep(0.05)
    assert all(p.wait(timeout=120) == 0 for p in procs)
    drained += drain_if_free(settings) or 0
    assert drained == 160
    assert raw_count(settings) == 160
    assert inbox.pending(settings.inbox_path) == 0
    assert inbox.high_water_mark(settings.inbox_path) == 160


def test_drain_if_free_says_none_while_the_store_is_held(settings):
    remember("waiting", settings=settings)
    with open_store(settings):
        pass
    holder = hold_store(settings.database_path)
    try:
        assert drain_if_free(settings) is None
    finally:
        holder.kill()
        holder.wait()
    assert drain_if_free(settings) == 1
