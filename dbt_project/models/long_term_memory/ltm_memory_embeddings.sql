{{ config(materialized='view') }}

-- The vectors recall searches: one embedding per live memory (every stage, not only long-term memory),
-- chosen like working memory chooses enrichment (the var enrichment_model if set, else the latest row), with
-- the memory's long-term retrieval strength when it has one (null before consolidation moved it).
-- Recall should read it (dense search) and weight hits by retrieval_strength. A view: the vectors stay in
-- enriched.memory_enrichment, not copied on every run.
with memories as (
    select id as memory_id, created_at from {{ source('raw', 'memories') }} where deleted_at is null
),

enrichment as (
    select memory_id, model, embedding_model, embedding_dim, embedding
    from {{ chosen_enrichment(with_embedding=true) }}
),

ltm as (
    select memory_id, retrieval_strength, category from {{ ref('ltm_memories') }}
),

final as (
    select
        m.memory_id,
        m.created_at,
        e.model,
        e.embedding_model,
        e.embedding_dim,
        e.embedding,
        l.memory_id is not null as in_long_term_memory,
        l.category,
        l.retrieval_strength
    from memories as m
    inner join enrichment as e on e.memory_id = m.memory_id
    left join ltm as l on l.memory_id = m.memory_id
)

select * from final
