-- One row per applied consolidation cycle (from the ledger): when (as_of in event time, finished_at on the
-- wall clock), which cycle, and what it did.
-- Monitoring builds last, with long-term memory (one dbt step after the cycles):
-- depends_on: {{ ref('ltm_memories') }}
with ledger as (
    select * from {{ source('consolidation', 'cycle_ledger') }}
),

final as (
    select
        as_of as "timestamp",
        as_of,
        started_at,
        finished_at,
        cycle_type,
        cycle_key,
        coalesce((counts->>'strengthened')::bigint, 0) as strengthened,
        coalesce((counts->>'weakened')::bigint, 0) as weakened,
        coalesce((counts->>'pruned')::bigint, 0) as pruned,
        coalesce((counts->>'created')::bigint, 0) + coalesce((counts->>'created_semantic')::bigint, 0) as created,
        coalesce((counts->>'transferred')::bigint, 0) as transferred,
        coalesce((counts->>'replayed_episodes')::bigint, 0) as replayed_episodes,
        (counts->>'scale_factor')::double as scale_factor,
        (counts->>'links_after')::bigint as links_after,
        (counts->>'mean_strength_after')::double as mean_strength_after,
        (counts->>'duration_ms')::double as duration_ms,
        run_id
    from ledger
)

select * from final
