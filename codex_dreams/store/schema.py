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
            # Intentionally empty. Version 1's ingested_at / enriched_at defaults are now()::timestamp, the
            # session's *local* time, so writers set those columns explicitly to `now() at time zone 'UTC'`.
            # Do not "fix" the defaults with `alter table ... alter column ... set default (<function call>)`:
            # DuckDB 1.5.5 cannot replay that statement from its WAL after a crash ("GetDefaultDatabase with no
            # default database set") and the file no longer opens (tests/test_store.py checks this stays true).
        ],
    ),
    (
        3,
        [
            # Consolidation and long-term state owned by the Python cycle assets (codex_dreams.stages.cycles).
            # Times named *_at without "wall" are event time (a cycle's as_of); started_at/finished_at are wall UTC.
            "create schema if not exists consolidation",
            "create schema if not exists long_term_memory",
            """
            create table if not exists consolidation.associations (
                memory_a varchar not null,
                memory_b varchar not null,                -- memory_a < memory_b (kept by the cycles; checked by an asset check)
                strength double not null,                 -- synaptic weight in [0, 1]
                link_type varchar not null,               -- hebbian | temporal | semantic | creative
                label varchar,                            -- creative/semantic links: a short name (shared topic)
                coactivations integer not null default 0, -- evidence at the last update: STM co-activations + replays
                reactivations integer not null default 0, -- cycles that reactivated (strengthened) the link
                cycles_since_reactivation integer not null default 0,
                created_at timestamp not null,            -- as_of of the cycle that created the link
                updated_at timestamp not null,            -- as_of of the last cycle that changed it
                last_reactivated_at timestamp,
                created_cycle_key varchar not null,
                updated_cycle_key varchar not null,
                primary key (memory_a, memory_b),
                check (strength >= 0 and strength <= 1),
                check (link_type in ('hebbian', 'temporal', 'semantic', 'creative'))
            )
            """,
            """
            create table if not exists consolidation.memory_consolidation (
                memory_id varchar primary key,
                episode_id varchar,                       -- the memory's episode when last seen by a cycle
                first_seen_at timestamp not null,         -- as_of of the first cycle that saw the memory
                first_seen_cycle_key varchar not null,
                consolidation_strength double not null default 0,
                replay_count integer not null default 0,
                last_replayed_at timestamp,
                last_replay_cycle_key varchar,
                consolidated_at timestamp,                -- as_of of the cycle that moved it to long-term memory
                consolidated_cycle_key varchar,
                check (consolidation_strength >= 0 and consolidation_strength <= 1)
            )
            """,
            """
            create table if not exists consolidation.cycle_ledger (
                cycle_type varchar not null,              -- hippocampal | deep_sleep | rem_sleep | homeostasis
                cycle_key varchar not null,               -- '<cycle_type>:<time bucket>'
                as_of timestamp not null,                 -- event-time reference of the cycle
                started_at timestamp not null,            -- wall clock, UTC
                finished_at timestamp not null,
                counts json not null,
                params json,
                run_id varchar,
                primary key (cycle_type, cycle_key),
                check (cycle_type in ('hippocampal', 'deep_sleep', 'rem_sleep', 'homeostasis')),
                check (starts_with(cycle_key, cycle_type || ':'))
            )
            """,
            """
            create table if not exists long_term_memory.memory_clusters (
                memory_id varchar primary key,
                cluster_id integer not null,              -- 1 = largest cluster; renumbered on every run
                cluster_key varchar not null,             -- smallest member id: stable while membership is
                cluster_size integer not null,
                method varchar not null,                  -- louvain | embedding | singleton
                label varchar,                            -- most frequent topics of the members
                computed_at timestamp not null            -- wall clock, UTC
            )
            """,
            """
            create table if not exists long_term_memory.access_log (
                memory_id varchar not null,
                accessed_at timestamp not null,           -- UTC; each recall of a memory is one row
                query_id varchar
            )
            """,
            """
            create table if not exists meta.stage_runs (
                stage varchar not null,                   -- the asset group / dbt folder
                asset varchar not null,
                run_id varchar,                           -- Dagster run id, or dbt invocation id
                started_at timestamp not null,            -- wall clock, UTC
                finished_at timestamp not null,
                rows bigint,
                runner varchar not null default 'dagster' -- dagster | dbt
            )
            """,
        ],
    ),
    (
        4,
        [
            # enriched.memory_enrichment without its primary key. With an index on the table, every commit that
            # adds rows made DuckDB's next checkpoint rewrite the table's embedding column whole (~0.2 s at 10k
            # memories, growing with the store), so adding ten memories cost as much as the store's size. One
            # row per (memory_id, model) is kept by its only writer, enrichment.cache.write_rows (delete and
            # insert in one transaction, a batch with a repeated memory is refused). The columns repeat version 1's
            # on purpose: a migration is history and must not change when later code does.
            """
            create table enriched.memory_enrichment_v4 (
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
                enriched_at timestamp not null default (now()::timestamp)
            )
            """,
            "insert into enriched.memory_enrichment_v4 by name select * from enriched.memory_enrichment",
            "drop table enriched.memory_enrichment",
            "alter table enriched.memory_enrichment_v4 rename to memory_enrichment",
        ],
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]
