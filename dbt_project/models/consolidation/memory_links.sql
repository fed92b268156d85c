{{ config(materialized='view') }}  -- derived on read from the Python-owned tables: nothing to rewrite on every run
-- The association graph as an adjacency list: each link of consolidation.associations twice, once from each
-- end, so "the neighbours of a memory" is one filter (recall's spreading activation, centrality).
-- Built after the cortical columns are assigned, so a run builds all post-cycle models in one dbt step:
-- depends_on: {{ source('long_term_memory', 'memory_clusters') }}
with associations as (
    select * from {{ source('consolidation', 'associations') }}
),

both_directions as (
    select memory_a as memory_id, memory_b as linked_memory_id, * exclude (memory_a, memory_b)
    from associations
    union all
    select memory_b as memory_id, memory_a as linked_memory_id, * exclude (memory_a, memory_b)
    from associations
),

final as (
    select
        memory_id,
        linked_memory_id,
        strength,
        link_type,
        label,
        coactivations,
        reactivations,
        cycles_since_reactivation,
        created_at,
        updated_at,
        last_reactivated_at
    from both_directions
)

select * from final
