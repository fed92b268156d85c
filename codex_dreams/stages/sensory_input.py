"""The sensory register: memories enter the graph here.

`raw_memories` drains the inbox (what `codex remember` / `codex import` wrote) into raw.memories and, when
POSTGRES_DB_URL is set, syncs PostgreSQL's public.memories by watermark. Everything downstream reads
raw.memories.
"""

from contextlib import closing

import dagster as dg
from dagster_duckdb import DuckDBResource

from codex_dreams.pools import DUCKDB_WRITER_POOL, STAGE_OWNERS
from codex_dreams.settings import get_settings
from codex_dreams.sources import inbox
from codex_dreams.sources.postgres import SourceUnavailable, sync_postgres
from codex_dreams.store import bootstrap

GROUP = "sensory_input"


@dg.asset(
    key="raw_memories",
    group_name=GROUP,
    kinds={"python", "duckdb"},
    owners=STAGE_OWNERS,
    pool=DUCKDB_WRITER_POOL,
    description=(
        "raw.memories, the permanent record every stage reads: drains the sensory-register inbox and, when "
        "POSTGRES_DB_URL is set, syncs codex_db.public.memories incrementally by (updated_at, id)."
    ),
)
def raw_memories(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    settings = get_settings()
    metadata: dict = {}
    with duckdb.get_connection() as con:
        # DuckDBResource closes the connection only on success; close it on failure too, or the file stays
        # open in this process until the traceback is garbage-collected.
        with closing(con):
            bootstrap(con)
            drained = inbox.drain_inbox(con, settings.inbox_path)
            metadata["drained_from_inbox"] = drained
            if settings.postgres_db_url:
                try:
                    result = sync_postgres(con, settings.postgres_db_url.get_secret_value())
                except SourceUnavailable as error:
                    # Local first: an unreachable source must not stop the stages from working on what is
                    # already stored; the outage is visible here, in the metadata and in `codex health`.
                    context.log.warning(f"PostgreSQL sync skipped: {error}")
                    metadata["postgres_status"] = "unreachable"
                    metadata["postgres_error"] = str(error)
                    result = None
            else:
                result = None
            if result is not None:
                metadata["postgres_status"] = "synced"
                context.log.info(
                    f"PostgreSQL {settings.postgres_url_redacted}: {result.inserted} new, "
                    f"{result.updated} updated, {result.marked_deleted} marked deleted"
                )
                metadata.update(
                    postgres_inserted=result.inserted,
                    postgres_updated=result.updated,
                    postgres_marked_deleted=result.marked_deleted,
                    postgres_source_rows=result.source_rows,
                    postgres_rows_read=result.rows_read,
                    postgres_recovered=result.recovered,
                    postgres_watermark=str(result.watermark_updated_at),
                )
            total, active = con.execute(
                "select count(*), count(*) filter (where deleted_at is null) from raw.memories"
            ).fetchone()
    metadata.update(total_memories=total, active_memories=active, dagster_row_count=active)
    context.log.info(f"raw.memories: {total} memories ({active} active); {drained} drained from the inbox")
    return dg.MaterializeResult(metadata=metadata)
