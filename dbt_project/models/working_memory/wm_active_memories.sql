-- Memories still present at their source, each placed in its event-time attention window.
with source as (
    select * from {{ source('raw', 'memories') }}
),

active as (
    select
        id as memory_id,
        content,
        created_at,
        metadata,
        source as memory_source,
        time_bucket(
            to_seconds({{ var('short_term_memory_duration') }}), created_at, timestamp '2000-01-01'
        ) as window_start
    from source
    where deleted_at is null
)

select * from active
