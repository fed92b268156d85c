{{ config(materialized='view') }}  -- small and derived: computed on read, nothing rewritten per run
-- Cortical columns: one row per cluster of long-term memories (ltm_clusters asset), with its size, label,
-- categories, mean retrieval strength, time span and most frequent concepts.
with memories as (
    select * from {{ ref('ltm_memories') }} where cluster_id is not null
),

concepts as (
    select m.cluster_id, c.concept, count(*) as n
    from {{ ref('ltm_memory_concepts') }} as c
    inner join memories as m on m.memory_id = c.memory_id
    group by m.cluster_id, c.concept
    qualify row_number() over (partition by m.cluster_id order by count(*) desc, c.concept) <= 5
),

top_concepts as (
    select cluster_id, list(concept order by n desc, concept) as top_concepts from concepts group by cluster_id
),

final as (
    select
        m.cluster_id,
        any_value(m.cluster_key) as cluster_key,
        any_value(m.cluster_label) as label,
        any_value(m.cluster_method) as method,
        count(*) as memories,
        count(*) filter (where m.category = 'fresh') as fresh,
        count(*) filter (where m.category = 'consolidating') as consolidating,
        count(*) filter (where m.category = 'stable') as stable,
        count(*) filter (where m.category = 'ancient') as ancient,
        avg(m.retrieval_strength) as mean_retrieval_strength,
        min(m.created_at) as first_memory_at,
        max(m.created_at) as last_memory_at,
        coalesce(any_value(t.top_concepts), []::varchar[]) as top_concepts
    from memories as m
    left join top_concepts as t on t.cluster_id = m.cluster_id
    group by m.cluster_id
)

select * from final
