"""The DuckDB store: versioned, idempotent bootstrap; a clear StoreBusyError; packaged extensions, offline."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime

import duckdb
import pytest

from codex_dreams.store import StoreBusyError, bootstrap, connect, load_extension, open_store
from codex_dreams.store import duckdb_store
from codex_dreams.store.schema import MIGRATIONS, SCHEMA_VERSION


def versions(con) -> list[int]:
    return [row[0] for row in con.execute("select version from meta.schema_version order by 1").fetchall()]


def test_bootstrap_is_versioned_and_idempotent(settings):
    with open_store(settings) as con:
        assert bootstrap(con) == SCHEMA_VERSION
        applied = con.execute("select version, applied_at from meta.schema_version order by 1").fetchall()
        assert [v for v, _ in applied] == [v for v, _ in MIGRATIONS] and applied[-1][0] == SCHEMA_VERSION
        tables = {f"{s}.{t}" for s, t in con.execute("select schema_name, table_name from duckdb_tables()").fetchall()}
        assert {"raw.memories", "meta.sync_state", "meta.schema_version", "enriched.memory_enrichment"} <= tables
        con.execute("insert into raw.memories (id, content, created_at, updated_at, source) "
                    "values ('m1', 'kept', now(), now(), 'test')")
    with open_store(settings) as con:  # a second open applies nothing and keeps the data
        assert con.execute("select version, applied_at from meta.schema_version order by 1").fetchall() == applied
        assert bootstrap(con) == SCHEMA_VERSION
        assert con.execute("select content from raw.memories").fetchall() == [("kept",)]


def test_an_old_store_is_brought_forward_not_rebuilt(settings):
    with open_store(settings) as con:
        con.execute("insert into raw.memories (id, content, created_at, updated_at, source) "
                    "values ('m1', 'from version 1', now(), now(), 'test')")
        con.execute("delete from meta.schema_version where version > 1")  # as if written by an older release
    with open_store(settings) as con:
        assert versions(con) == [v for v, _ in MIGRATIONS]
        assert con.execute("select content from raw.memories").fetchall() == [("from version 1",)]


def test_a_failing_migration_is_rolled_back(settings, monkeypatch):
    with open_store(settings):
        pass
    broken = [*MIGRATIONS, (SCHEMA_VERSION + 1, ["create table meta.half_done (x integer)", "this is not sql"])]
    monkeypatch.setattr(duckdb_store, "MIGRATIONS", broken)
    con = connect(settings.database_path, extension_dir=settings.extension_dir)
    try:
        with pytest.raises(duckdb.ParserException):
            bootstrap(con)
        assert versions(con)[-1] == SCHEMA_VERSION
        assert con.execute("select count(*) from duckdb_tables() where table_name = 'half_done'").fetchone()[0] == 0
    finally:
        con.close()


def test_a_crash_right_after_bootstrap_leaves_a_store_that_opens(settings):
    """Every migration must survive a WAL replay (DuckDB 1.5.5 cannot replay e.g. ALTER ... SET DEFAULT (now()))."""
    settings.ensure_dirs()
    script = textwrap.dedent(f"""
        import os
        from codex_dreams.store import bootstrap, connect
        con = connect({str(settings.database_path)!r})
        bootstrap(con)
        con.execute("insert into raw.memories (id, content, created_at, updated_at, source) "
                    "values ('m1', 'before the crash', now(), now(), 'test')")
        os._exit(0)  # no close, no checkpoint: everything is still in the WAL
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert settings.database_path.with_name(settings.database_path.name + ".wal").exists()
    with open_store(settings) as con:
        assert versions(con)[-1] == SCHEMA_VERSION
        assert con.execute("select content from raw.memories").fetchall() == [("before the crash",)]


def test_read_only_open_does_not_bootstrap(settings):
    with open_store(settings) as con:
        con.execute("create table meta.marker (x integer)")
    with open_store(settings, read_only=True) as con:
        with pytest.raises(duckdb.Error):
            con.execute("create table meta.other (x integer)")
        assert versions(con)[-1] == SCHEMA_VERSION


# -- one writer ----------------------------------------------------------------------------------------------

def hold(path, seconds: float = 300) -> subprocess.Popen:
    code = (f"import duckdb, time\ncon = duckdb.connect({str(path)!r})\nprint('held', flush=True)\n"
            f"time.sleep({seconds})\ncon.close()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


class FakeClock:
    """Stands in for the `time` module of duckdb_store: sleeping advances the clock at once."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_store_busy_error_names_the_file_and_waits_a_bounded_time(settings, monkeypatch):
    with open_store(settings):
        pass
    holder = hold(settings.database_path)
    try:
        for read_only in (False, True):  # while held read-write, nobody else can open it at all
            clock = FakeClock()
            with monkeypatch.context() as patch:
                patch.setattr(duckdb_store, "time", clock)
                with pytest.raises(StoreBusyError) as caught:
                    connect(settings.database_path, read_only=read_only, wait_seconds=0.5)
            # retries with a growing pause (0.05, 0.1, 0.2, 0.4 s: 0.75 s in all) until the 0.5 s deadline has
            # passed, then gives up: it waited for the lock, and stopped within one pause of the deadline
            assert len(clock.sleeps) >= 3 and clock.sleeps == sorted(clock.sleeps)
            assert 0.5 <= clock.now < 0.5 + max(clock.sleeps)
            assert str(caught.value) == (
                f"The memory store {settings.database_path} is in use by another process (a pipeline run?); "
                "try again when it finishes."
            )
            assert caught.value.__cause__ is None
        with pytest.raises(StoreBusyError):
            with open_store(settings, wait_seconds=0.2):
                pass
    finally:
        holder.kill()
        holder.wait()
    with open_store(settings, wait_seconds=5) as con:
        assert versions(con)[-1] == SCHEMA_VERSION


def test_connect_waits_for_a_short_holder(settings, monkeypatch):
    with open_store(settings):
        pass
    code = ("import duckdb, sys\ncon = duckdb.connect(sys.argv[1])\nprint('held', flush=True)\n"
            "sys.stdin.readline()\ncon.close()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(settings.database_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"

    class ReleasingClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if len(self.sleeps) == 1:  # the first attempt found the file locked: the holder lets go now
                holder.stdin.write("release\n")
                holder.stdin.flush()
                holder.wait(timeout=60)

    clock = ReleasingClock()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(duckdb_store, "time", clock)
            con = connect(settings.database_path, wait_seconds=30)
        assert con.execute("select max(version) from meta.schema_version").fetchone()[0] == SCHEMA_VERSION
        con.close()
        assert clock.sleeps == [0.05]  # refused once while held, opened on the retry after the release
    finally:
        holder.kill()
        holder.wait()


def test_other_io_errors_are_not_called_busy(tmp_path):
    not_a_db = tmp_path / "garbage.duckdb"
    not_a_db.write_bytes(b"this is not a database file" * 100)
    with pytest.raises(duckdb.Error) as caught:
        connect(not_a_db, wait_seconds=0.1)
    assert not isinstance(caught.value, StoreBusyError)


# -- extensions ------------------------------------------------------------------------------------------

def test_extensions_load_from_the_packaged_wheels_without_network(tmp_path):
    ext_dir = tmp_path / "extensions"
    con = connect(tmp_path / "ext.duckdb", extension_dir=ext_dir)
    try:
        # any attempt to download would go here and fail
        con.execute("set custom_extension_repository = 'http://127.0.0.1:9/nowhere'")
        for name in ("postgres", "fts", "vss"):
            load_extension(con, name)
        loaded = dict(con.execute(
            "select extension_name, install_path from duckdb_extensions() "
            "where extension_name in ('postgres_scanner', 'fts', 'vss') and loaded").fetchall())
        assert set(loaded) == {"postgres_scanner", "fts", "vss"}
        assert all(path.startswith(str(ext_dir)) for path in loaded.values()), loaded
        # they work: BM25 over a tiny table, and a persisted HNSW index
        con.execute("create table docs (id integer, body varchar)")
        con.execute("insert into docs values (1, 'coffee with Ana at the harbour'), (2, 'quarterly report due')")
        con.execute("pragma create_fts_index('docs', 'id', 'body')")
        hit = con.execute("select id from (select id, fts_main_docs.match_bm25(id, 'harbour') as s from docs) "
                          "where s is not null").fetchall()
        assert hit == [(1,)]
        con.execute("set hnsw_enable_experimental_persistence = true")
        con.execute("create table vecs (id integer, v float[3])")
        con.execute("insert into vecs values (1, [1, 0, 0]), (2, [0, 1, 0])")
        con.execute("create index vecs_hnsw on vecs using hnsw (v)")
        nearest = con.execute("select id from vecs order by array_distance(v, [0.9, 0.1, 0]::float[3]) limit 1")
        assert nearest.fetchone() == (1,)
        with pytest.raises(ValueError, match="unknown extension 'spatial'"):
            load_extension(con, "spatial")
    finally:
        con.close()
    # a later connection with the same directory loads them directly (installed once, no wheel lookup)
    again = duckdb.connect(str(tmp_path / "ext.duckdb"),
                           config={"extension_directory": str(ext_dir), "autoinstall_known_extensions": False,
                                   "autoload_known_extensions": False})
    try:
        for name in ("postgres", "fts", "vss"):
            again.execute(f"load {name}")
    finally:
        again.close()


def test_open_store_and_the_dagster_resource_can_be_open_in_one_process(settings, resources):
    """DuckDB refuses a second in-process connection with a different config; both paths must pass the same."""
    with resources["duckdb"].get_connection() as held:
        held.execute("select 1")
        with open_store(settings) as con:
            assert con.execute("select max(version) from meta.schema_version").fetchone()[0] == SCHEMA_VERSION


def test_migration_4_keeps_the_enrichment_rows_and_drops_the_key_index(settings, monkeypatch):
    """A version-3 store (enrichment with its primary key) is brought forward without losing a row."""
    monkeypatch.setattr(duckdb_store, "MIGRATIONS", MIGRATIONS[:3])
    with open_store(settings) as con:
        con.execute("insert into enriched.memory_enrichment (memory_id, content_hash, provider, model, topics, "
                    "embedding, enriched_at) values ('m1', 'h1', 'offline', 'k', ['coffee'], [0.6, 0.8], "
                    "timestamp '2026-01-01 09:00:00')")
        assert con.execute("select count(*) from duckdb_constraints() where table_name = 'memory_enrichment' "
                           "and constraint_type = 'PRIMARY KEY'").fetchone()[0] == 1
    monkeypatch.setattr(duckdb_store, "MIGRATIONS", MIGRATIONS)
    with open_store(settings) as con:
        assert versions(con)[-1] == 4
        assert con.execute("select memory_id, content_hash, provider, model, topics, embedding, enriched_at "
                           "from enriched.memory_enrichment").fetchall() == [
            ("m1", "h1", "offline", "k", ["coffee"], [0.6000000238418579, 0.800000011920929],
             datetime(2026, 1, 1, 9, 0))]
        assert con.execute("select count(*) from duckdb_constraints() where table_name = 'memory_enrichment' "
                           "and constraint_type = 'PRIMARY KEY'").fetchone()[0] == 0
