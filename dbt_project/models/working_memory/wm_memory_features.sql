-- Every active memory (raw.memories where deleted_at is null) with its chosen enrichment, its event-time
-- window and its similarity to the memories just before it. Memories without enrichment keep neutral
-- defaults (importance 0.5, salience 0, sentiment 0, novelty 1): nothing is lost.
with memories as (
    select * from {{ source('raw', 'memories') }}
    where deleted_at is null
),

enrichment as (
    -- One row per memory: the configured model (var enrichment_model) if present, else the latest enrichment.
    select * from {{ chosen_enrichment() }}
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
        -- an embedding without direction (all zeros) or of length 0 compares with nothing
        case when len(e.embedding) > 0 and list_dot_product(e.embedding, e.embedding) > 0
             then e.embedding end as embedding
    from memories as m
    left join enrichment as e on e.memory_id = m.id
),

{%- set lookback = [var('novelty_lookback'), var('topic_shift_context')] | max %}

lagged as (
    -- the embeddings of the previous memories in stream order (created_at, memory_id)
    select
        memory_id,
        embedding
        {%- for k in range(1, lookback + 1) %},
        lag(embedding, {{ k }}) over stream as previous_{{ k }}
        {%- endfor %}
    from joined
    window stream as (order by created_at, memory_id)
),

similarities as (
    select
        memory_id
        {%- for k in range(1, lookback + 1) %},
        {{ cosine_similarity('embedding', 'previous_' ~ k) }} as similarity_{{ k }}
        {%- endfor %}
    from lagged
),

neighbours as (
    -- max over the available similarities (null when none compares)
    select
        memory_id,
        list_max([
            {%- for k in range(1, var('novelty_lookback') + 1) %}similarity_{{ k }}{{ ", " if not loop.last }}{% endfor -%}
        ]) as max_recent_similarity,
        list_max([
            {%- for k in range(1, var('topic_shift_context') + 1) %}similarity_{{ k }}{{ ", " if not loop.last }}{% endfor -%}
        ]) as context_similarity
    from similarities
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
        -- the vector itself stays in enriched.memory_enrichment (no second copy in the store)
        j.embedding is not null as has_embedding,
        md5(concat_ws('|', j.memory_id, j.content, j.created_at::varchar, j.importance::varchar,
            j.emotional_salience::varchar, j.sentiment::varchar,
            least(1.0, greatest(0.0, 1.0 - coalesce(n.max_recent_similarity, 0.0)))::varchar,
            j.topics::varchar, j.entities::varchar)) as memory_fingerprint
    from joined as j
    left join neighbours as n on n.memory_id = j.memory_id
)

select * from final
