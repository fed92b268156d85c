"""PostgreSQL as the memory source: writing new memories to it, and syncing it into raw.memories.

The sync reads `public.memories` (seed schema: id, content, created_at, updated_at, metadata jsonb) through
DuckDB's postgres extension, incrementally by the `(updated_at, id)` watermark kept in meta.sync_state.
Changed rows are upserted; ids that have disappeared from the source are marked `deleted_at` (never removed).
The upsert and the new watermark commit in one transaction, so a crash mid-sync loses nothing and a re-run
applies nothing twice. Passwords are redacted from every message that leaves this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from codex_dreams.settings import redact_url
from codex_dreams.sources.records import MemoryRecord
from codex_dreams.store import load_extension

SOURCE_NAME = "postgres"


class SourceUnavailable(RuntimeError):
    """PostgreSQL could not be reached or read; the message carries no password."""


def _scrub(text: str, url: str) -> str:
    """Remove the URL (and its password) from an error text."""
    from urllib.parse import urlsplit

    safe = text.replace(url, redact_url(url) or "")
    password = urlsplit(url).password
    if password:
        safe = safe.replace(password, "***")
    return safe


# -- writing ---------------------------------------------------------------------------------------------

_CREATE_TABLE = """
create table if not exists public.memories (
    id text primary key default gen_random_uuid()::text,
    content text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    metadata jsonb not null default '{}'::jsonb
);
create or replace function public.codex_touch_updated_at() returns trigger language plpgsql as $$
begin new.updated_at := now(); return new; end $$;
do $$ begin
    if not exists (select 1 from pg_trigger where tgname = 'codex_memories_touch') then
        create trigger codex_memories_touch before update on public.memories
        for each row execute function public.codex_touch_updated_at();
    end if;
end $$;
"""


def connect_postgres(url: str):
    import psycopg

    try:
        return psycopg.connect(url, connect_timeout=5)
    except psycopg.Error as error:
        raise SourceUnavailable(f"cannot reach PostgreSQL at {redact_url(url)}: {_scrub(str(error), url)}") from None


def write_records(url: str, records: Iterable[MemoryRecord]) -> int:
    """Insert records into public.memories in one transaction (existing ids are left alone)."""
    import psycopg
    from psycopg.types.json import Jsonb

    rows = list(records)
    if not rows:
        return 0
    with connect_postgres(url) as conn:
        try:
            with conn.transaction():
                conn.execute(_CREATE_TABLE)
                id_type = conn.execute(
                    "select data_type from information_schema.columns "
                    "where table_schema = 'public' and table_name = 'memories' and column_name = 'id'"
                ).fetchone()[0]
                with conn.cursor() as cur:
                    if id_type in ("text", "character varying", "uuid"):
                        cur.executemany(
                            "insert into public.memories (id, content, created_at, updated_at, metadata) "
                            "values (%s, %s, %s at time zone 'UTC', %s at time zone 'UTC', %s) "
                            "on conflict (id) do nothing",
                            [(r.id, r.content, r.created_at, r.updated_at, Jsonb(r.metadata)) for r in rows],
                        )
                    else:  # an integer id column: let the source assign ids
                        cur.executemany(
                            "insert into public.memories (content, created_at, updated_at, metadata) "
                            "values (%s, %s at time zone 'UTC', %s at time zone 'UTC', %s)",
                            [(r.content, r.created_at, r.updated_at, Jsonb(r.metadata)) for r in rows],
                        )
        except psycopg.Error as error:
            raise SourceUnavailable(f"writing to PostgreSQL failed: {_scrub(str(error), url)}") from None
    return len(rows)


# -- syncing ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyncResult:
    upserted: int
    inserted: int
    updated: int
    marked_deleted: int
    source_rows: int
    watermark_updated_at: str | None
    watermark_id: str | None


def _attach(con, url: str) -> None:
    load_extension(con, "postgres")
    # ATTACH takes no bound parameters; the DSN is a quoted literal with quotes doubled.
    literal = url.replace("'", "''")
    try:
        con.execute(f"attach '{literal}' as codex_pg (type postgres, read_only)")
    except Exception as error:  # duckdb raises IOException / BinderException subclasses
        raise SourceUnavailable(
            f"cannot attach PostgreSQL at {redact_url(url)}: {_scrub(str(error), url)}"
        ) from None


def sync_postgres(con, url: str) -> SyncResult:
    """Bring raw.memories up to date with PostgreSQL; see the module docstring."""
    con.execute("set TimeZone = 'UTC'")  # timestamptz -> timestamp casts then yield UTC
    _attach(con, url)
    try:
        state = con.execute(
            "select watermark_updated_at, watermark_id from meta.sync_state where source = ?", [SOURCE_NAME]
        ).fetchone()
        wm_ts, wm_id = state if state else (None, None)
        try:
            con.execute(
                """
                create or replace temp table pg_changed as
                select id::varchar as id, content::varchar as content,
                       created_at::timestamp as created_at, updated_at::timestamp as updated_at,
                       metadata::varchar as metadata
                from codex_pg.public.memories
                where ?::timestamp is null
                   or updated_at::timestamp > ?::timestamp
                   or (updated_at::timestamp = ?::timestamp and id::varchar > ?)
                """,
                [wm_ts, wm_ts, wm_ts, wm_id],
            )
            con.execute("create or replace temp table pg_ids as select id::varchar as id from codex_pg.public.memories")
        except SourceUnavailable:
            raise
        except Exception as error:
            raise SourceUnavailable(f"reading PostgreSQL failed: {_scrub(str(error), url)}") from None

        counts = con.execute(
            """
            select count(*) filter (where m.id is null), count(*) filter (where m.id is not null)
            from pg_changed c left join raw.memories m on m.id = c.id
            """
        ).fetchone()
        inserted, updated = int(counts[0]), int(counts[1])
        last = con.execute("select updated_at, id from pg_changed order by updated_at desc, id desc limit 1").fetchone()
        source_rows = con.execute("select count(*) from pg_ids").fetchone()[0]

        con.execute("begin transaction")
        try:
            con.execute(
                """
                insert into raw.memories (id, content, created_at, updated_at, metadata, source)
                select id, content, created_at, updated_at, coalesce(metadata, '{}')::json, ?
                from pg_changed
                on conflict (id) do update set
                    content = excluded.content, created_at = excluded.created_at,
                    updated_at = excluded.updated_at, metadata = excluded.metadata, deleted_at = null
                """,
                [SOURCE_NAME],
            )
            deleted = con.execute(
                """
                update raw.memories set deleted_at = now()::timestamp
                where source = ? and deleted_at is null and id not in (select id from pg_ids)
                """,
                [SOURCE_NAME],
            ).fetchone()[0]
            if last is not None:
                wm_ts, wm_id = last
            con.execute(
                """
                insert into meta.sync_state (source, watermark_updated_at, watermark_id, rows_seen, synced_at)
                values (?, ?, ?, ?, now()::timestamp)
                on conflict (source) do update set watermark_updated_at = excluded.watermark_updated_at,
                    watermark_id = excluded.watermark_id, rows_seen = excluded.rows_seen,
                    synced_at = excluded.synced_at
                """,
                [SOURCE_NAME, wm_ts, wm_id, source_rows],
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        con.execute("drop table if exists pg_changed")
        con.execute("drop table if exists pg_ids")
        con.execute("detach database if exists codex_pg")
    return SyncResult(
        upserted=inserted + updated, inserted=inserted, updated=updated, marked_deleted=int(deleted or 0),
        source_rows=int(source_rows), watermark_updated_at=str(wm_ts) if wm_ts else None,
        watermark_id=wm_id,
    )
