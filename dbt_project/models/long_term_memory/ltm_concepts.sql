{{ config(materialized='view') }}  -- small and derived: computed on read, nothing rewritten per run
-- The semantic network's nodes: concepts (topics and entities) of long-term memories, with how many memories
-- mention them and when they were first and last seen (event time).
with mentions as (
    select * from {{ ref('ltm_memory_concepts') }}
),

final as (
    select
        concept,
        case
            when count(distinct kind) > 1 or bool_or(kind = 'both') then 'both'
            else any_value(kind)
        end as kind,
        count(distinct memory_id) as frequency,
        min(created_at) as first_seen_at,
        max(created_at) as last_seen_at
    from mentions
    group by concept
)

select * from final
