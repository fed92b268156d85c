{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='memory_id',
        on_schema_change='sync_all_columns',
        post_hook="delete from {{ this }} where lookback_fingerprint is null",
    )
}}
-- Every active memory (raw.memories where deleted_at is null) with its chosen enrichment, its event-time
-- window and its similarity to the memories just before it. Memories without enrichment keep neutral
-- defaults (importance 0.5, salience 0, sentiment 0, novelty 1): nothing is lost.
-- Incremental by memory: a row is recomputed only when the fingerprint of its inputs and of the inputs of the
-- memories just before it in the stream (lookback_fingerprint) changed: a new, edited, re-enriched or deleted
-- memory also recomputes the lookback memories after it. Only the recomputed rows and their predecessors read
-- their vectors. A deleted memory's row is removed (tombstone row, deleted again by the post-hook). A full
-- refresh and any sequence of incremental runs give the same table.
{%- set lookback = [var('novelty_lookback'), var('topic_shift_context')] | max %}

with memories as (
    select * from {{ source('raw', 'memories') }}
    where deleted_at is null
),

enrichment as (
    -- One row per memory: the configured model (var enrichment_model) if present, else the latest enrichment;
    -- every column but the vector, read below only where a row is recomputed
    select * exclude (embedding) from {{ chosen_enrichment() }}
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
        -- what the row depends on besides its neighbours; a row's vector never changes without its enriched_at,
        -- content hash, embedding model or dimension changing too (enrichment.cache.write_rows)
        -- (a 64-bit hash: a collision would only skip one recomputation, and it is 4x cheaper than md5 here)
        hash(m.id, m.content, m.created_at, m.source, e.model, e.enriched_at, e.content_hash, e.embedding_model,
             e.embedding_dim, e.importance, e.emotional_salience, e.sentiment, e.topics, e.entities, e.goal,
             e.task, e.action, e.locations) as input_fingerprint
    from memories as m
    left join enrichment as e on e.memory_id = m.id
),

stream as (
    -- the memories before each one in stream order (created_at, memory_id), and the fingerprint of its lookback
    select
        *
        {%- for k in range(1, lookback + 1) %},
        lag(memory_id, {{ k }}) over stream_order as previous_id_{{ k }}
        {%- endfor %},
        hash('wm_memory_features/v1;' || {{ params_fingerprint(['short_term_memory_duration', 'novelty_lookback',
                                                               'topic_shift_context']) }},
             input_fingerprint
             {%- for k in range(1, lookback + 1) %},
             lag(input_fingerprint, {{ k }}) over stream_order
             {%- endfor %}) as lookback_fingerprint
    from joined
    window stream_order as (order by created_at, memory_id)
),

{% if is_incremental() %}
{#- a table built before this model kept lookback fingerprints is recomputed once, whole #}
{%- set stored_columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list %}
changed as (
    select s.*
    from stream as s
    {%- if 'lookback_fingerprint' in stored_columns %}
    anti join {{ this }} as previous
        on previous.memory_id = s.memory_id and previous.lookback_fingerprint = s.lookback_fingerprint
    {%- endif %}
),

vanished as (
    select previous.memory_id
    from {{ this }} as previous
    anti join memories as m on m.id = previous.memory_id
),
{% else %}
changed as (
    select * from stream
),
{% endif %}

vectors as (
    -- the vectors of the changed memories and of the memories before them; an embedding without direction
    -- (all zeros) or of length 0 compares with nothing
    select e.memory_id, e.embedding
    from {{ chosen_enrichment() }} as e
    semi join (
        select memory_id from changed
        {%- for k in range(1, lookback + 1) %}
        union select previous_id_{{ k }} from changed
        {%- endfor %}
    ) as needed on needed.memory_id = e.memory_id
    where len(e.embedding) > 0 and list_dot_product(e.embedding, e.embedding) > 0
),

similarities as (
    select
        c.memory_id
        {%- for k in range(1, lookback + 1) %},
        {{ cosine_similarity('v.embedding', 'v' ~ k ~ '.embedding') }} as similarity_{{ k }}
        {%- endfor %}
    from changed as c
    left join vectors as v on v.memory_id = c.memory_id
    {%- for k in range(1, lookback + 1) %}
    left join vectors as v{{ k }} on v{{ k }}.memory_id = c.previous_id_{{ k }}
    {%- endfor %}
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
        c.memory_id,
        c.content,
        c.created_at,
        c.memory_source,
        c.window_start,
        {{ wm_window_end('c.window_start') }} as window_end,
        c.is_enriched,
        c.enrichment_model,
        c.importance,
        c.emotional_salience,
        c.sentiment,
        -- habituation: a memory like the ones just before it draws less attention
        least(1.0, greatest(0.0, 1.0 - coalesce(n.max_recent_similarity, 0.0))) as novelty,
        n.context_similarity,
        c.topics,
        c.entities,
        c.goal,
        c.task,
        c.action,
        c.locations,
        -- the vector itself stays in enriched.memory_enrichment (no second copy in the store)
        v.memory_id is not null as has_embedding,
        md5(concat_ws('|', c.memory_id, c.content, c.created_at::varchar, c.importance::varchar,
            c.emotional_salience::varchar, c.sentiment::varchar,
            least(1.0, greatest(0.0, 1.0 - coalesce(n.max_recent_similarity, 0.0)))::varchar,
            c.topics::varchar, c.entities::varchar)) as memory_fingerprint,
        c.lookback_fingerprint
    from changed as c
    left join neighbours as n on n.memory_id = c.memory_id
    left join vectors as v on v.memory_id = c.memory_id
)

select * from final
{% if is_incremental() %}
union all by name
-- tombstones: make delete+insert remove the rows of memories that are no longer active
select memory_id from vanished
{% endif %}
