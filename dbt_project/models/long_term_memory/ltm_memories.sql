-- Long-term memories: the live memories consolidation moved here (consolidation_strength reached
-- consolidation_threshold), with stability, category, cortical column and retrieval strength.
--   rehearsals         = replays + 2 * recalls (access_log)
--   stability          = 1 - exp(-rehearsals / ltm_rehearsal_scale)
--   retention          = exp(-days since last use / S), S = ltm_base_stability_days * (1 + rehearsals)
--   centrality         = weighted degree in the association graph / the largest among long-term memories
--   retrieval_strength = weighted sum of retention, stability, centrality, 1 - exp(-recalls / 3)
--   category           = fresh | consolidating | stable | ancient by age and stability
-- Ages are measured in event time from reference_time (macro ltm_reference_time).
with state as (
    select * from {{ ref('consolidation_state') }} where in_long_term_memory
),

memories as (
    select id as memory_id, content, created_at from {{ source('raw', 'memories') }} where deleted_at is null
),

stm as (
    select memory_id, episode_id, topics, entities, sentiment, emotional_salience, importance
    from {{ ref('stm_memories') }}
),

access as (
    select memory_id, count(*) as access_count, max(accessed_at) as last_accessed_at
    from {{ source('long_term_memory', 'access_log') }}
    group by memory_id
),

clusters as (
    select memory_id, cluster_id, cluster_key, label as cluster_label, method as cluster_method
    from {{ source('long_term_memory', 'memory_clusters') }}
),

reference as (
    select {{ ltm_reference_time() }} as reference_time
),

base as (
    select
        s.memory_id,
        m.content,
        m.created_at,
        s.consolidated_at,
        coalesce(st.episode_id, s.episode_id) as episode_id,
        s.consolidation_strength as strength,
        s.replay_count,
        coalesce(a.access_count, 0) as access_count,
        a.last_accessed_at,
        {{ ltm_rehearsals('s.replay_count', 'coalesce(a.access_count, 0)') }} as rehearsals,
        greatest(m.created_at, s.last_replayed_at, a.last_accessed_at) as last_used_at,
        s.degree,
        s.weighted_degree,
        c.cluster_id,
        c.cluster_key,
        c.cluster_label,
        c.cluster_method,
        coalesce(st.topics, []::varchar[]) as topics,
        coalesce(st.entities, []::varchar[]) as entities,
        st.sentiment,
        st.emotional_salience,
        st.importance,
        r.reference_time
    from state as s
    inner join memories as m on m.memory_id = s.memory_id
    left join stm as st on st.memory_id = s.memory_id
    left join access as a on a.memory_id = s.memory_id
    left join clusters as c on c.memory_id = s.memory_id
    cross join reference as r
),

scored as (
    select
        *,
        {{ seconds_between('created_at', 'reference_time') }} / 86400.0 as age_days,
        {{ seconds_between('last_used_at', 'reference_time') }} / 86400.0 as days_since_use,
        {{ ltm_stability('rehearsals') }} as stability,
        {{ ltm_stability_days('rehearsals') }} as stability_days,
        coalesce(weighted_degree / nullif(max(weighted_degree) over (), 0), 0.0) as centrality
    from base
),

final as (
    select
        memory_id,
        content,
        created_at,
        consolidated_at,
        episode_id,
        strength,
        stability,
        stability_days,
        {{ ltm_category('age_days', 'stability') }} as category,
        cluster_id,
        cluster_key,
        cluster_label,
        cluster_method,
        {{ ltm_retention('days_since_use', 'stability_days') }} as retention,
        centrality,
        degree,
        access_count,
        last_accessed_at,
        replay_count,
        rehearsals,
        {{ ltm_retrieval_strength(ltm_retention('days_since_use', 'stability_days'), 'stability', 'centrality',
                                  'access_count') }} as retrieval_strength,
        age_days,
        days_since_use,
        last_used_at,
        topics,
        entities,
        sentiment,
        emotional_salience,
        importance,
        reference_time
    from scored
)

select * from final
