{{ config(materialized='view') }}  -- derived on read from the Python-owned tables: nothing to rewrite on every run
-- Per memory seen by consolidation: its consolidation strength and replays, whether (and when) it moved to
-- long-term memory, and its place in the association graph (degree, weighted degree, links per type) and in
-- the cortical columns (cluster_id, for long-term memories).
-- Memories deleted at their source are left out (their state rows stay: nothing is lost).
with state as (
    select * from {{ source('consolidation', 'memory_consolidation') }}
),

memories as (
    select id as memory_id from {{ source('raw', 'memories') }} where deleted_at is null
),

clusters as (
    select memory_id, cluster_id from {{ source('long_term_memory', 'memory_clusters') }}
),

links as (
    select
        memory_id,
        count(*) as degree,
        sum(strength) as weighted_degree,
        count(*) filter (where link_type = 'hebbian') as hebbian_links,
        count(*) filter (where link_type = 'temporal') as temporal_links,
        count(*) filter (where link_type = 'semantic') as semantic_links,
        count(*) filter (where link_type = 'creative') as creative_links
    from {{ ref('memory_links') }}
    group by memory_id
),

final as (
    select
        s.memory_id,
        s.episode_id,
        s.consolidation_strength,
        s.replay_count,
        s.first_seen_at,
        s.last_replayed_at,
        s.consolidated_at,
        s.consolidated_cycle_key,
        s.consolidated_at is not null as in_long_term_memory,
        coalesce(l.degree, 0) as degree,
        coalesce(l.weighted_degree, 0.0) as weighted_degree,
        coalesce(l.hebbian_links, 0) as hebbian_links,
        coalesce(l.temporal_links, 0) as temporal_links,
        coalesce(l.semantic_links, 0) as semantic_links,
        coalesce(l.creative_links, 0) as creative_links,
        c.cluster_id
    from state as s
    inner join memories as m on m.memory_id = s.memory_id
    left join links as l on l.memory_id = s.memory_id
    left join clusters as c on c.memory_id = s.memory_id
)

select * from final
