{{ config(materialized="view") }}

-- Every active memory (raw.memories where deleted_at is null) with its chosen enrichment, its event-time
-- window and its similarity to the memories just before it. Memories without enrichment keep neutral
-- defaults (importance 0.5, salience 0, sentiment 0, novelty 1): nothing is lost.
with memories as (
    select * from {{ source('raw', 'memories') }}
    where deleted_at is null
),

enrichment as (
    -- One row per memory: the configured model (var enrichment_model) if present, else the latest enrichment.
    select *
    from {{ source('enriched', 'memory_enrichment') }}
    qualify row_number() over (
        partition by memory_id
        order by
            {% if var('enrichment_model', none) %}(model = '{{ var("enrichment_model") }}') desc,{% endif %}
            enriched_at desc,
            model
    ) = 1
),

joined as (
    select
        m.id as memory_id,
        m.content,
        m.created_at,
        m.source as memory_source,
        {{ wm_window_start('m.created_at') }} as window_start,
        e.memory_id is not null as is_enriched,
        e.model as enrichment_model,
        least(1.0, greatest(0.0, coalesce(e.importance, 0.5))) as importance,
        least(1.0, greatest(0.0, coalesce(e.emotional_salience, 0.0))) as emotional_salience,
        least(1.0, greatest(-1.0, coalesce(e.sentiment, 0.0))) as sentiment,
        coalesce(e.topics, []::varchar[]) as topics,
        coalesce(e.entities, []::varchar[]) as entities,
        nullif(trim(e.goal), '') as goal,
        nullif(trim(e.task), '') as task,
        nullif(trim(e.action), '') as action,
        coalesce(e.locations, []::varchar[]) as locations,
        e.embedding,
        row_number() over (order by m.created_at, m.id) as seq
    from memories as m
    left join enrichment as e on e.memory_id = m.id
),

embedded as (
    select memory_id, seq, embedding from joined where embedding is not null
),

neighbours as (
    -- Cosine similarity to each of the previous few memories (stream order), embeddings of equal dimension.
    select
        cur.memory_id,
        max({{ cosine_similarity('cur.embedding', 'prev.embedding') }})
            filter (where prev.seq >= cur.seq - {{ var('novelty_lookback') }}) as max_recent_similarity,
        max({{ cosine_similarity('cur.embedding', 'prev.embedding') }})
            filter (where prev.seq >= cur.seq - {{ var('topic_shift_context') }}) as context_similarity
    from embedded as cur
    inner join embedded as prev
        on prev.seq < cur.seq
        and prev.seq >= cur.seq - greatest({{ var('novelty_lookback') }}, {{ var('topic_shift_context') }})
    group by cur.memory_id
),

final as (
    select
        j.memory_id,
        j.content,
        j.created_at,
        j.memory_source,
        j.window_start,
        {{ wm_window_end('j.window_start') }} as window_end,
        j.is_enriched,
        j.enrichment_model,
        j.importance,
        j.emotional_salience,
        j.sentiment,
        -- habituation: a memory like the ones just before it draws less attention
        least(1.0, greatest(0.0, 1.0 - coalesce(n.max_recent_similarity, 0.0))) as novelty,
        n.context_similarity,
        j.topics,
        j.entities,
        j.goal,
        j.task,
        j.action,
        j.locations,
        j.embedding,
        md5(concat_ws('|', j.memory_id, j.content, j.created_at::varchar, j.importance::varchar,
            j.emotional_salience::varchar, j.sentiment::varchar,
            least(1.0, greatest(0.0, 1.0 - coalesce(n.max_recent_similarity, 0.0)))::varchar,
            j.topics::varchar, j.entities::varchar)) as memory_fingerprint
    from joined as j
    left join neighbours as n on n.memory_id = j.memory_id
)

select * from final
