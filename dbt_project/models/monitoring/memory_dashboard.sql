-- One row per measure of each stage: how many items it holds and their mean strength (the stage's own
-- notion: attention priority, decayed strength, link strength, consolidation or retrieval strength).
with raw_memories as (
    select * from {{ source('raw', 'memories') }}
),

measures as (
    select 1 as stage_order, 'raw' as stage, 'active memories' as measure,
           count(*) filter (where deleted_at is null) as items, null::double as mean_strength
    from raw_memories
    union all
    select 1, 'raw', 'memories deleted at their source', count(*) filter (where deleted_at is not null), null
    from raw_memories
    union all
    select 2, 'enriched', 'memories with an enrichment', count(distinct memory_id), avg(importance)
    from {{ source('enriched', 'memory_enrichment') }}
    union all
    select 3, 'working_memory', 'attended memories (mean priority)', count(*) filter (where attended),
           avg(priority) filter (where attended)
    from {{ ref('wm_attention') }}
    union all
    select 3, 'working_memory', 'unattended memories (mean priority)', count(*) filter (where not attended),
           avg(priority) filter (where not attended)
    from {{ ref('wm_attention') }}
    union all
    select 4, 'short_term_memory', 'memories (mean decayed strength)', count(*), avg(strength)
    from {{ ref('stm_memories') }}
    union all
    select 4, 'short_term_memory', 'episodes (mean strength)', count(*), avg(strength)
    from {{ ref('stm_episodes') }}
    union all
    select 4, 'short_term_memory', 'co-activated pairs', count(*), null
    from {{ ref('stm_coactivation') }}
    union all
    select 5, 'consolidation', 'links (mean link strength)', count(*), avg(strength)
    from {{ source('consolidation', 'associations') }}
    union all
    select 5, 'consolidation', 'memories seen (mean consolidation strength)', count(*), avg(consolidation_strength)
    from {{ ref('consolidation_state') }}
    union all
    select 5, 'consolidation', 'cycles applied', count(*), null
    from {{ source('consolidation', 'cycle_ledger') }}
    union all
    select 6, 'long_term_memory', 'memories (mean retrieval strength)', count(*), avg(retrieval_strength)
    from {{ ref('ltm_memories') }}
    union all
    select 6, 'long_term_memory', 'concepts', count(*), null
    from {{ ref('ltm_concepts') }}
    union all
    select 6, 'long_term_memory', 'concept edges (mean weight)', count(*), avg(weight)
    from {{ ref('ltm_concept_edges') }}
    union all
    select 6, 'long_term_memory', 'cortical columns (mean retrieval strength)', count(*), avg(mean_retrieval_strength)
    from {{ ref('ltm_columns') }}
)

select stage_order, stage, measure, items, mean_strength from measures
