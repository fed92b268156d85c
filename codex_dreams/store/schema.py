"""The tables the Python side owns (dbt owns its models). Applied in order by `bootstrap`; each migration
runs once and is recorded in meta.schema_version, so an old store is brought forward, never rebuilt."""

from __future__ import annotations

# (version, statements). Append new versions; never edit an applied one.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            "create schema if not exists raw",
            "create schema if not exists enriched",
            """
            create table if not exists raw.memories (
                id varchar primary key,
                content varchar not null,
                created_at timestamp not null,   -- event time, UTC
                updated_at timestamp not null,   -- UTC; the sync watermark is (updated_at, id)
                metadata json,
                source varchar not null,         -- cli | import:<format> | postgres | demo | api
                ingested_at timestamp not null default (now()::timestamp),
                deleted_at timestamp             -- set when the source deleted the memory; never hard-deleted
            )
            """,
            """
            create table if not exists meta.sync_state (
                source varchar primary key,
                watermark_updated_at timestamp,
                watermark_id varchar,
                rows_seen bigint not null default 0,
                synced_at timestamp
            )
            """,
            """
            create table if not exists enriched.memory_enrichment (
                memory_id varchar not null,
                content_hash varchar not null,
                provider varchar not null,        -- the provider that actually produced the row
                model varchar not null,           -- the configured model key: provider|chat model|embedding model
                entities varchar[],
                topics varchar[],
                sentiment double,                 -- [-1, 1]
                emotional_salience double,        -- [0, 1]
                importance double,                -- [0, 1]
                goal varchar,
                task varchar,
                action varchar,
                locations varchar[],              -- named places (allocentric)
                egocentric_locations varchar[],   -- relative expressions: 'to my left', 'behind the house'
                fallback_reason varchar,          -- why the configured provider did not produce the row, or null
                embedding float[],                -- unit length; null while a remote embedding is pending
                embedding_model varchar,          -- who produced `embedding`; null while pending
                embedding_dim integer,
                latency_ms double,
                enriched_at timestamp not null default (now()::timestamp),
                primary key (memory_id, model)
            )
            """,
        ],
    ),
    (
        2,
        [
            # Version 1's defaults took now()::timestamp, the session's local time; the store keeps naive UTC.
            "alter table raw.memories alter column ingested_at set default (now() at time zone 'UTC')",
            "alter table enriched.memory_enrichment alter column enriched_at set default (now() at time zone 'UTC')",
        ],
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]
