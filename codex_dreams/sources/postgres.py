"""PostgreSQL as the memory source: writing new memories to it, and syncing it into raw.memories.

The sync reads `public.memories` (seed schema: id, content, created_at, updated_at, metadata jsonb) through
DuckDB's postgres extension, incrementally by the `(updated_at, id)` watermark kept in meta.sync_state.
Changed rows are upserted; ids that have disappeared from the source are marked `deleted_at` (never removed).
The upsert and the new watermark commit in one transaction, so a crash mid-sync loses nothing and a re-run
applies nothing twice. Passwords are redacted from every message that leaves this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timezone
from typing import Iterable

from codex_dreams.errors import SourceUnavailable  # noqa: F401  (re-exported)
from codex_dreams.settings import redact_url
from codex_dreams.sources.records import MemoryRecord
from codex_dreams.store import load_extension

SOURCE_NAME = "postgres"


def _scrub(text: str, url: str) -> str:
    """Remove the URL (and its password) from an error text."""
    from urllib.parse import unquote, urlsplit

    safe = text.replace(url, redact_url(url) or "")
    password = urlsplit(url).password
    if password:
        # as written in the URL and as libpq/DuckDB may echo it (percent-decoded)
        for form in sorted({password, unquote(password)}, key=len, reverse=True):
            safe = safe.replace(form, "***")
    return " ".join(safe.split())  # libpq messages span lines; errors here are one line


# -- writing ---------------------------------------------------------------------------------------------

_CREATE_TABLE = """
create table if not exists public.memories (
    id text primary key default gen_random_uuid()::text,
    content text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    metadata jsonb not null default '{}'::jsonb
);
create index if not exists memories_updated_at_id_idx on public.memories (updated_at, id);
create or replace function public.codex_touch_updated_at() returns trigger language plpgsql as $$
begin new.updated_at := now(); return new; end $$;
do $$ begin
    if not exists (select 1 from pg_trigger where tgname = 'codex_memories_touch'
                   and tgrelid = 'public.memories'::regclass) then
        create trigger codex_memories_touch before update on public.memories
        for each row execute function public.codex_touch_updated_at();
    end if;
end $$;
"""
# Serializes the DDL above between concurrent writers ("create or replace function" is not concurrency-safe).
_DDL_LOCK_KEY = 0x636F646578  # "codex"


def connect_postgres(url: str):
    import psycopg

    try:
        return psycopg.connect(url, connect_timeout=5)
    except psycopg.Error as error:
        message = f"cannot reach PostgreSQL at {redact_url(url)}: {_scrub(str(error), url)}"
    # Raised outside the except block: the original error, whose text may hold the password, must not travel
    # along as __context__ (`from None` only hides it from tracebacks).
    raise SourceUnavailable(message)


def _ensure_table(conn) -> str:
    """Create public.memories, its (updated_at, id) index and the updated_at trigger when missing; returns the id
    column's type. Cheap when everything exists (one catalog query, no DDL)."""
    ready = conn.execute(
        "select to_regclass('public.memories') is not null and exists ("
        " select 1 from pg_trigger where tgname = 'codex_memories_touch'"
        " and tgrelid = to_regclass('public.memories'))"
    ).fetchone()[0]
    if not ready:
        import psycopg

        try:
            with conn.transaction():  # a savepoint: a refused DDL leaves the outer transaction usable
                conn.execute("select pg_advisory_xact_lock(%s)", [_DDL_LOCK_KEY])
                conn.execute(_CREATE_TABLE)
        except psycopg.errors.InsufficientPrivilege:
            # Someone else's existing table (we may insert, not alter): write the rows anyway; its owner keeps
            # updated_at current. A table we cannot create is still an error.
            if conn.execute("select to_regclass('public.memories')").fetchone()[0] is None:
                raise
    return conn.execute(
        "select data_type from information_schema.columns "
        "where table_schema = 'public' and table_name = 'memories' and column_name = 'id'"
    ).fetchone()[0]


def write_records(url: str, records: Iterable[MemoryRecord]) -> int:
    """Insert records into public.memories in one transaction; returns how many records were given.

    Idempotent: a text/uuid id that exists is left alone, and in a table whose id is an integer (serial) a row
    with the same content and created_at (what a Codex id is derived from) is not inserted again. The row's
    updated_at is the write time (the column default), never the memory's event time: it is the sync watermark,
    so an imported memory from last year must still count as a change made now.
    """
    import psycopg

    rows = list(records)
    if not rows:
        return 0
    try:
        with connect_postgres(url) as conn:
            with conn.transaction():
                id_type = _ensure_table(conn)
                conn.execute(
                    "create temp table codex_incoming (ord integer, id text, content text, created_at timestamptz,"
                    " metadata jsonb) on commit drop"
                )
                with conn.cursor().copy(
                    "copy codex_incoming (ord, id, content, created_at, metadata) from stdin"
                ) as copy:
                    for ord_, r in enumerate(rows):
                        copy.write_row((ord_, r.id, r.content, r.created_at.replace(tzinfo=timezone.utc),
                                        r.metadata_json))
                if id_type in ("text", "character varying", "uuid"):
                    cast = "::uuid" if id_type == "uuid" else ""
                    conn.execute(
                        f"""
                        insert into public.memories (id, content, created_at, metadata)
                        select id{cast}, content, created_at, metadata from (
                            select distinct on (id) ord, id, content, created_at, metadata
                            from codex_incoming order by id, ord) first_of_id
                        order by ord
                        on conflict (id) do nothing
                        """
                    )
                else:  # an integer id column: the source assigns ids; (content, created_at) identifies a memory
                    conn.execute(
                        """
                        insert into public.memories (content, created_at, metadata)
                        select content, created_at, metadata from (
                            select distinct on (content, created_at) ord, content, created_at, metadata
                            from codex_incoming i
                            where not exists (select 1 from public.memories m
                                              where m.content = i.content and m.created_at = i.created_at)
                            order by content, created_at, ord) first_of_memory
                        order by ord
                        """
                    )
    except psycopg.Error as error:
        message = f"writing to PostgreSQL failed: {_scrub(str(error), url)}"
    else:
        return len(rows)
    raise SourceUnavailable(message)  # outside the except block: no __context__ carrying the raw error


# -- syncing ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyncResult:
    upserted: int          # inserted + updated
    inserted: int          # ids new to raw.memories
    updated: int           # known ids whose row changed (content, times, metadata or a deletion undone)
    marked_deleted: int    # ids gone from the source, now marked deleted_at
    source_rows: int       # rows in public.memories
    rows_read: int         # rows fetched from PostgreSQL beyond the id list (the watermark read + recovered)
    recovered: int         # ids the watermark read missed (committed late, or written with an old updated_at)
    watermark_updated_at: str | None
    watermark_id: str | None


def _attach(con, url: str) -> None:
    load_extension(con, "postgres")
    # ATTACH takes no bound parameters; the DSN is a quoted literal with quotes doubled.
    literal = url.replace("'", "''")
    try:
        con.execute(f"attach '{literal}' as codex_pg (type postgres, read_only)")
        return
    except Exception as error:  # duckdb raises IOException / BinderException subclasses
        message = f"cannot attach PostgreSQL at {redact_url(url)}: {_scrub(str(error), url)}"
    raise SourceUnavailable(message)  # outside the except block: DuckDB's error quotes the full DSN


_SELECT_SOURCE = """
    select id::varchar as id, content::varchar as content,
           created_at::timestamp as created_at, updated_at::timestamp as updated_at,
           metadata::varchar as metadata
    from codex_pg.public.memories
"""


# Rows past the watermark. `updated_at >= ?::timestamptz` is pushed down into PostgreSQL's query (so only
# changed rows cross the wire); the exact (updated_at, id) comparison is then done in DuckDB.
CHANGED_SINCE = f"""{_SELECT_SOURCE}
    where updated_at >= ?::timestamptz
      and (updated_at::timestamp > ? or (updated_at::timestamp = ? and id::varchar > ?))
"""


def sync_postgres(con, url: str) -> SyncResult:
    """Bring raw.memories up to date with PostgreSQL; see the module docstring.

    Reads only rows past the (updated_at, id) watermark (the `updated_at >= ?` filter is pushed down to
    PostgreSQL), plus the id column to detect deletions. Ids the source has but raw.memories lacks (or marks
    deleted) that the watermark read did not return (a transaction that committed after a later one was synced,
    or a writer that set an old updated_at) are fetched too, so no memory is lost; the watermark moves only by
    the watermark read. Known limit: an *update* committed late in the same way is not seen until the row
    changes again.
    """
    con.execute("set TimeZone = 'UTC'")  # timestamptz -> timestamp casts then yield UTC
    _attach(con, url)
    try:
        state = con.execute(
            "select watermark_updated_at, watermark_id from meta.sync_state where source = ?", [SOURCE_NAME]
        ).fetchone()
        wm_ts, wm_id = state if state else (None, None)
        try:
            if wm_ts is None:
                con.execute(f"create or replace temp table pg_changed as {_SELECT_SOURCE}")
            else:
                con.execute(f"create or replace temp table pg_changed as {CHANGED_SINCE}",
                            [wm_ts, wm_ts, wm_ts, wm_id or ""])
            last = con.execute(
                "select updated_at, id from pg_changed order by updated_at desc, id desc limit 1"
            ).fetchone()
            con.execute("create or replace temp table pg_ids as select id::varchar as id from codex_pg.public.memories")
            missing = con.execute(
                """
                select count(*) from pg_ids p
                where not exists (select 1 from raw.memories m where m.id = p.id and m.deleted_at is null)
                  and not exists (select 1 from pg_changed c where c.id = p.id)
                """
            ).fetchone()[0]
            if missing:
                con.execute(
                    f"""
                    insert into pg_changed {_SELECT_SOURCE}
                    where id::varchar in (
                        select p.id from pg_ids p
                        where not exists (select 1 from raw.memories m where m.id = p.id and m.deleted_at is null)
                          and not exists (select 1 from pg_changed c where c.id = p.id))
                    """
                )
            read_error = None
        except Exception as error:
            read_error = f"reading PostgreSQL failed: {_scrub(str(error), url)}"
        if read_error:
            raise SourceUnavailable(read_error)  # outside the except block: no __context__ with the raw error

        rows_read = con.execute("select count(*) from pg_changed").fetchone()[0]
        # Only rows that differ from the stored copy are applied (a re-read row is not an update).
        con.execute(
            """
            create or replace temp table pg_apply as
            select c.*, m.id is null as is_new from pg_changed c left join raw.memories m on m.id = c.id
            where m.id is null or m.deleted_at is not null
               or m.updated_at is distinct from c.updated_at or m.created_at is distinct from c.created_at
               or m.content is distinct from c.content
               or m.metadata::varchar is distinct from coalesce(c.metadata, '{}')::json::varchar
            """
        )
        inserted, updated = (int(v or 0) for v in con.execute(
            "select count(*) filter (where is_new), count(*) filter (where not is_new) from pg_apply"
        ).fetchone())
        source_rows = con.execute("select count(*) from pg_ids").fetchone()[0]

        con.execute("begin transaction")
        try:
            con.execute(
                """
                insert into raw.memories (id, content, created_at, updated_at, metadata, source, ingested_at)
                select id, content, created_at, updated_at, coalesce(metadata, '{}')::json, ?,
                       now() at time zone 'UTC'
                from pg_apply
                on conflict (id) do update set
                    content = excluded.content, created_at = excluded.created_at,
                    updated_at = excluded.updated_at, metadata = excluded.metadata, deleted_at = null
                """,
                [SOURCE_NAME],
            )
            deleted = con.execute(
                """
                update raw.memories set deleted_at = now() at time zone 'UTC'
                where source = ? and deleted_at is null and id not in (select id from pg_ids)
                """,
                [SOURCE_NAME],
            ).fetchone()[0]
            if last is not None:
                wm_ts, wm_id = last
            con.execute(
                """
                insert into meta.sync_state (source, watermark_updated_at, watermark_id, rows_seen, synced_at)
                values (?, ?, ?, ?, now() at time zone 'UTC')
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
        con.execute("drop table if exists pg_apply")
        con.execute("detach database if exists codex_pg")
    return SyncResult(
        upserted=inserted + updated, inserted=inserted, updated=updated, marked_deleted=int(deleted or 0),
        source_rows=int(source_rows), rows_read=int(rows_read), recovered=int(missing),
        watermark_updated_at=str(wm_ts) if wm_ts else None, watermark_id=wm_id,
    )
