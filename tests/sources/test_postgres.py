"""PostgreSQL as the memory source: writes, watermark sync (inserts, updates, deletions, resume after a restart),
integer ids, and a password that never appears in any output, error, log or materialization."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import psycopg
import pytest
from dagster._serdes import serialize_value
from dagster_duckdb import DuckDBResource
from typer.testing import CliRunner

from codex_dreams.cli.main import app
from codex_dreams.settings import load_settings
from codex_dreams.sources import inbox
from codex_dreams.sources.postgres import (
    CHANGED_SINCE,
    SourceUnavailable,
    _attach,
    sync_postgres,
    write_records,
)
from codex_dreams.sources.records import make_record
from codex_dreams.stages.sensory_input import raw_memories
from codex_dreams.store import duckdb_config, open_store

pytestmark = pytest.mark.postgres
runner = CliRunner()


def records(n: int, start: int = 0, day: str = "2023-03-01"):
    return [make_record(f"Postgres memory {i}", at=f"{day}T08:00:{i % 60:02d}Z", metadata={"i": i})
            for i in range(start, start + n)]


def sync(settings):
    with open_store(settings) as con:
        return sync_postgres(con, settings.postgres_db_url.get_secret_value())


def raw(settings, where="true") -> list[tuple]:
    con = duckdb.connect(str(settings.database_path), read_only=True)
    try:
        return con.execute(f"select id, content, updated_at, deleted_at, source from raw.memories where {where} "
                           "order by id").fetchall()
    finally:
        con.close()


def sync_state(settings) -> tuple:
    con = duckdb.connect(str(settings.database_path), read_only=True)
    try:
        return con.execute("select watermark_updated_at, watermark_id, rows_seen from meta.sync_state "
                           "where source = 'postgres'").fetchone()
    finally:
        con.close()


def pg_watermark(pg_admin) -> tuple:
    return pg_admin.execute(
        "select (updated_at at time zone 'UTC'), id::text from public.memories order by updated_at desc, "
        "id::text collate \"C\" desc limit 1").fetchone()


# -- writing ----------------------------------------------------------------------------------------------

def test_remember_and_import_write_to_postgres(pg, pg_admin, settings, tmp_path):
    settings = load_settings()
    result = runner.invoke(app, ["remember", "Sent to PostgreSQL", "--at", "2022-01-01T10:00:00Z", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["destination"] == "postgres"
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"content": f"imported {i}", "created_at": f"2021-06-0{i + 1}T00:00:00Z",
                                        "metadata": {"n": i}}) + "\n" for i in range(3)) + '{"content": ""}\n')
    result = runner.invoke(app, ["import", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["Imported 3 memories (jsonl) into PostgreSQL; 1 lines skipped."]
    rows = pg_admin.execute("select content, created_at at time zone 'UTC', metadata, updated_at, now() "
                            "from public.memories order by created_at").fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        ("imported 0", datetime(2021, 6, 1)), ("imported 1", datetime(2021, 6, 2)),
        ("imported 2", datetime(2021, 6, 3)), ("Sent to PostgreSQL", datetime(2022, 1, 1, 10))]
    assert rows[1][2] == {"n": 1}
    # updated_at is the write time (the sync watermark), not the memory's event time
    assert all(abs(r[4] - r[3]) < timedelta(minutes=5) for r in rows)
    # nothing went to the embedded store
    assert inbox.pending(settings.inbox_path) == 0 and not settings.database_path.exists()
    # idempotent
    assert runner.invoke(app, ["import", str(path)]).exit_code == 0
    assert pg_admin.execute("select count(*) from public.memories").fetchone()[0] == 4
    # strict refusal writes nothing to PostgreSQL either
    result = runner.invoke(app, ["import", str(path), "--strict"])
    assert result.exit_code == 2
    assert pg_admin.execute("select count(*) from public.memories").fetchone()[0] == 4


def test_writer_creates_the_table_index_and_trigger_once(pg, pg_admin):
    write_records(pg.url, records(2))
    write_records(pg.url, records(2, start=2))
    assert pg_admin.execute("select count(*) from public.memories").fetchone()[0] == 4
    assert pg_admin.execute("select count(*) from pg_trigger where tgname = 'codex_memories_touch'").fetchone()[0] == 1
    assert pg_admin.execute(
        "select count(*) from pg_indexes where tablename = 'memories' and indexname = 'memories_updated_at_id_idx'"
    ).fetchone()[0] == 1


def test_concurrent_writers_do_not_collide_on_the_ddl(pg, pg_admin):
    script = textwrap.dedent(f"""
        import sys
        from codex_dreams.sources.postgres import write_records
        from codex_dreams.sources.records import make_record
        n = int(sys.argv[1])
        for i in range(5):
            write_records({pg.url!r}, [make_record(f"writer {{n}} memory {{i}}")])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)], stderr=subprocess.PIPE, text=True)
             for n in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert pg_admin.execute("select count(*) from public.memories").fetchone()[0] == 20


# -- syncing ----------------------------------------------------------------------------------------------

def test_sync_applies_inserts_updates_and_deletions(pg, pg_admin, settings):
    settings = load_settings()
    batch = records(3)
    write_records(pg.url, batch)
    first = sync(settings)
    assert (first.inserted, first.updated, first.marked_deleted, first.source_rows) == (3, 0, 0, 3)
    assert {r[1] for r in raw(settings)} == {"Postgres memory 0", "Postgres memory 1", "Postgres memory 2"}
    assert {r[4] for r in raw(settings)} == {"postgres"}

    # an update bumps updated_at through the trigger the writer created
    before = pg_admin.execute("select updated_at from public.memories where id = %s", [batch[0].id]).fetchone()[0]
    pg_admin.execute("update public.memories set content = 'Edited at the source' where id = %s", [batch[0].id])
    after = pg_admin.execute("select updated_at from public.memories where id = %s", [batch[0].id]).fetchone()[0]
    assert after > before
    pg_admin.execute("delete from public.memories where id = %s", [batch[1].id])
    second = sync(settings)
    assert (second.inserted, second.updated, second.marked_deleted, second.rows_read) == (0, 1, 1, 1)
    rows = {r[0]: r for r in raw(settings)}
    assert len(rows) == 3  # the deleted memory is marked, not removed
    assert rows[batch[0].id][1] == "Edited at the source"
    assert rows[batch[0].id][2] == after.astimezone(timezone.utc).replace(tzinfo=None)
    assert rows[batch[1].id][3] is not None and rows[batch[0].id][3] is None
    assert abs(rows[batch[1].id][3] - datetime.now(timezone.utc).replace(tzinfo=None)) < timedelta(minutes=1)

    # nothing changed: nothing read, nothing applied
    third = sync(settings)
    assert (third.inserted, third.updated, third.marked_deleted, third.rows_read) == (0, 0, 0, 0)

    # the deleted id comes back: it is un-deleted
    pg_admin.execute("insert into public.memories (id, content, created_at) values (%s, 'Back again', now())",
                     [batch[1].id])
    fourth = sync(settings)
    assert (fourth.inserted, fourth.updated, fourth.marked_deleted) == (0, 1, 0)
    row = {r[0]: r for r in raw(settings)}[batch[1].id]
    assert row[1] == "Back again" and row[3] is None


SYNC_IN_A_NEW_PROCESS = textwrap.dedent("""
    import dataclasses, json
    from codex_dreams.settings import get_settings
    from codex_dreams.sources.postgres import sync_postgres
    from codex_dreams.store import open_store
    settings = get_settings()
    with open_store(settings) as con:
        result = sync_postgres(con, settings.postgres_db_url.get_secret_value())
    print(json.dumps(dataclasses.asdict(result)))
""")


def sync_in_new_process() -> dict:
    done = subprocess.run([sys.executable, "-c", SYNC_IN_A_NEW_PROCESS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_watermark_resumes_after_a_restart(pg, pg_admin, settings):
    settings = load_settings()
    write_records(pg.url, records(50))
    first = sync_in_new_process()
    assert (first["inserted"], first["rows_read"], first["source_rows"]) == (50, 50, 50)
    wm_ts, wm_id, rows_seen = sync_state(settings)
    assert (wm_ts, wm_id) == pg_watermark(pg_admin) and rows_seen == 50

    # changes while "down": two new memories and one edit
    write_records(pg.url, records(2, start=50))
    pg_admin.execute("update public.memories set metadata = '{\"edited\": true}' where content = 'Postgres memory 7'")
    second = sync_in_new_process()  # a new process: only the watermark in meta.sync_state carries over
    assert (second["inserted"], second["updated"], second["rows_read"], second["recovered"]) == (2, 1, 3, 0)
    assert sync_state(settings) == (*pg_watermark(pg_admin), 52)
    assert sync_state(settings)[0] > wm_ts
    third = sync_in_new_process()
    assert (third["inserted"], third["updated"], third["rows_read"]) == (0, 0, 0)
    assert len(raw(settings)) == 52


def test_the_watermark_filter_is_pushed_down_to_postgres(pg, settings):
    settings = load_settings()
    write_records(pg.url, records(1))
    with open_store(settings) as con:
        con.execute("set TimeZone = 'UTC'")
        _attach(con, pg.url)
        plan = "\n".join(row[1] for row in con.execute(
            f"explain {CHANGED_SINCE}", [datetime(2024, 1, 1), datetime(2024, 1, 1), datetime(2024, 1, 1), "x"]
        ).fetchall())
        con.execute("detach codex_pg")
    scan = plan[plan.index("POSTGRES_SCAN"):]
    assert "Filters:" in scan and "updated_at>=" in scan.replace(" ", "").replace("│", "").replace("\n", "")


def test_sync_recovers_rows_the_watermark_missed(pg, pg_admin, settings):
    settings = load_settings()
    write_records(pg.url, records(2))
    assert sync(settings).inserted == 2
    # a writer that sets an old updated_at, behind the watermark
    pg_admin.execute("insert into public.memories (id, content, created_at, updated_at) "
                     "values ('old-1', 'Backdated by another tool', '2019-01-01', '2019-01-01')")
    # a long transaction: its row's updated_at (transaction start) is older than a row committed meanwhile
    with psycopg.connect(pg.admin_url) as slow:
        slow.execute("insert into public.memories (id, content) values ('slow-1', 'Committed late')")
        write_records(pg.url, records(1, start=10))
        meanwhile = sync(settings)
        assert (meanwhile.inserted, meanwhile.recovered) == (2, 1)  # the new row + the backdated one
    # `slow` committed on leaving the block; its updated_at is behind the watermark now
    late = sync(settings)
    assert (late.inserted, late.recovered, late.rows_read) == (1, 1, 1)
    assert {r[0] for r in raw(settings)} >= {"old-1", "slow-1"}
    assert sync(settings).rows_read == 0


SERIAL_TABLE = (
    "create table public.memories (id serial primary key, content text not null, "
    "created_at timestamptz not null default now(), updated_at timestamptz not null default now(), "
    "metadata jsonb not null default '{}'::jsonb)"
)


def test_integer_serial_ids(pg, pg_admin, settings, tmp_path):
    settings = load_settings()
    with psycopg.connect(pg.url, autocommit=True) as owner:  # the seed's table, owned by the app's role
        owner.execute(SERIAL_TABLE)
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"content": f"serial {i}", "created_at": f"2024-01-01T00:00:{i:02d}Z"}) + "\n"
                            for i in range(12)))
    for _ in range(2):  # the second import is idempotent, without a Codex id to go by
        result = runner.invoke(app, ["import", str(path)])
        assert result.exit_code == 0, result.output
    assert pg_admin.execute("select count(*), min(id), max(id) from public.memories").fetchone() == (12, 1, 12)
    # the import order is kept
    assert pg_admin.execute("select content from public.memories where id = 10").fetchone()[0] == "serial 9"
    first = sync(settings)
    assert (first.inserted, first.source_rows) == (12, 12)
    assert {r[0] for r in raw(settings)} == {str(i) for i in range(1, 13)}
    assert sync_state(settings)[1] == "9"  # ties on updated_at are broken by the id as text, consistently
    pg_admin.execute("update public.memories set content = 'serial two, edited' where id = 2")
    pg_admin.execute("delete from public.memories where id = 11")
    second = sync(settings)
    assert (second.inserted, second.updated, second.marked_deleted, second.rows_read) == (0, 1, 1, 1)
    assert sync(settings).rows_read == 0


def test_a_table_owned_by_someone_else_is_written_without_ddl(pg, pg_admin, settings):
    pg_admin.execute(SERIAL_TABLE)  # owned by the superuser: the app's role may insert but not add a trigger
    pg_admin.execute(f'grant select, insert on public.memories to "{pg.role}"')
    pg_admin.execute(f'grant usage on sequence public.memories_id_seq to "{pg.role}"')
    assert write_records(pg.url, records(3)) == 3
    assert pg_admin.execute("select count(*) from public.memories").fetchone()[0] == 3
    assert pg_admin.execute("select count(*) from pg_trigger where tgname = 'codex_memories_touch'").fetchone()[0] == 0
    pg_admin.execute(f'revoke insert on public.memories from "{pg.role}"')
    with pytest.raises(SourceUnavailable, match="^writing to PostgreSQL failed: permission denied for table memories"):
        write_records(pg.url, records(1, start=9))


def test_raw_memories_asset_drains_the_inbox_and_syncs(pg, pg_admin, settings, monkeypatch):
    # a memory remembered into the inbox before PostgreSQL was configured
    monkeypatch.setenv("POSTGRES_DB_URL", "")
    runner.invoke(app, ["remember", "From the embedded days", "--at", "2020-01-01T00:00:00Z"])
    monkeypatch.setenv("POSTGRES_DB_URL", pg.url)
    settings = load_settings()
    write_records(pg.url, records(4))
    meta, _ = materialize(settings)
    assert (meta["drained_from_inbox"], meta["postgres_inserted"], meta["total_memories"]) == (1, 4, 5)
    meta, _ = materialize(settings)
    assert (meta["drained_from_inbox"], meta["postgres_inserted"], meta["postgres_rows_read"]) == (0, 0, 0)


# -- secrets ---------------------------------------------------------------------------------------------

def materialize(settings, *, expect_success: bool = True):
    instance = dg.DagsterInstance.ephemeral()
    resource = DuckDBResource(database=str(settings.database_path),
                              connection_config=duckdb_config(settings.extension_dir))
    result = dg.materialize([raw_memories], resources={"duckdb": resource}, instance=instance,
                            raise_on_error=False)
    assert result.success is expect_success
    logs = "\n".join(serialize_value(entry) for entry in instance.all_logs(result.run_id))
    meta = {}
    for event in result.get_asset_materialization_events():
        meta = {key: value.value for key, value in event.materialization.metadata.items()}
    return meta, logs


def test_password_never_appears_in_dagster_logs_or_metadata(pg, settings, capfd):
    settings = load_settings()
    write_records(pg.url, records(2))
    meta, logs = materialize(settings)
    assert meta["postgres_inserted"] == 2
    assert pg.password not in json.dumps(meta, default=str)
    assert pg.password not in logs
    assert "PostgreSQL postgresql://" in logs and ":***@" in logs  # the redacted URL is what is logged
    out, err = capfd.readouterr()
    assert pg.password not in out + err


def test_password_never_appears_when_postgres_is_unreachable(pg, settings, monkeypatch, capfd, tmp_path):
    bad_url = f"postgresql://{pg.role}:{pg.password}@127.0.0.1:1/{pg.database}"
    monkeypatch.setenv("POSTGRES_DB_URL", bad_url)
    settings = load_settings()

    # the asset carries on with what is stored (local first) and reports the outage; neither its metadata,
    # its logs nor the console show the password
    meta, logs = materialize(settings)
    assert meta["postgres_status"] == "unreachable"
    assert meta["postgres_error"].startswith("cannot attach PostgreSQL at postgresql://")
    assert pg.password not in json.dumps(meta, default=str)
    assert "PostgreSQL sync skipped: cannot attach PostgreSQL at postgresql://" in logs
    assert pg.password not in logs

    # the library
    with pytest.raises(SourceUnavailable) as caught:
        write_records(bad_url, records(1))
    assert pg.password not in str(caught.value) and ":***@127.0.0.1:1" in str(caught.value)
    with open_store(settings) as con, pytest.raises(SourceUnavailable) as caught:
        sync_postgres(con, bad_url)
    message = str(caught.value)
    assert pg.password not in message and pg.password not in repr(caught.value.__context__ or "")

    # the CLI: one line, exit 1
    path = tmp_path / "m.jsonl"
    path.write_text('{"content": "x"}\n')
    for args in (["remember", "hello"], ["import", str(path)], ["import", str(path), "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        [line] = result.stderr.splitlines()
        assert line.startswith("Error: cannot reach PostgreSQL at postgresql://") and ":***@127.0.0.1:1/" in line
        assert pg.password not in result.output
    out, err = capfd.readouterr()
    assert pg.password not in out + err


def test_password_never_appears_in_codex_config(pg):
    for args in (["config"], ["config", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
        assert pg.password not in result.output
        assert f"postgresql://{pg.role}:***@127.0.0.1:5432/{pg.database}" in result.output


def test_password_never_appears_in_a_real_process(pg, tmp_path):
    """The console script, end to end, with a wrong port: stdout and stderr of the process."""
    import os

    bad_url = f"postgresql://{pg.role}:{pg.password}@127.0.0.1:1/{pg.database}"
    env = {**os.environ, "POSTGRES_DB_URL": bad_url}
    codex = str(__import__("pathlib").Path(sys.executable).with_name("codex"))
    for args in (["remember", "hello"], ["config"]):
        done = subprocess.run([codex, *args], env=env, capture_output=True, text=True, timeout=60)
        assert pg.password not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    assert done.returncode == 0 and ":***@127.0.0.1:1/" in done.stdout
