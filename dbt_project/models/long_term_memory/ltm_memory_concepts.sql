{{ config(materialized='view') }}  -- small and derived: computed on read, nothing rewritten per run
-- The concepts each long-term memory mentions: its topics and entities, lower-cased and trimmed; a concept
-- that is both a topic and an entity of the memory is kind 'both'.
with memories as (
    select memory_id, created_at, topics, entities from {{ ref('ltm_memories') }}
),

terms as (
    select memory_id, created_at, lower(trim(unnest(topics))) as concept, 'topic' as kind from memories
    union all
    select memory_id, created_at, lower(trim(unnest(entities))) as concept, 'entity' as kind from memories
),

final as (
    select
        memory_id,
        concept,
        case when count(distinct kind) > 1 then 'both' else any_value(kind) end as kind,
        any_value(created_at) as created_at
    from terms
    where concept <> ''
    group by memory_id, concept
)

select * from final
