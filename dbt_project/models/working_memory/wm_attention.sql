{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='window_start',
        on_schema_change='sync_all_columns',
        post_hook="delete from {{ this }} where memory_id is null",
    )
}}
-- Attention per event-time window: the working_memory_capacity memories with the highest priority are
-- attended (slot 1..capacity); the others pass to short-term memory with a lower encoding strength.
-- Incremental by window: a window is re-ranked only when the fingerprint of its members (their inputs and
-- the attention parameters) changed; a window whose members all vanished is removed (tombstone row,
-- deleted again by the post-hook). A full refresh and any sequence of incremental runs give the same table.
with features as (
    select * from {{ ref('wm_memory_features') }}
),

windows as (
    select
        window_start,
        -- the parameters and the set of the members' fingerprints (order-free combination of 64-bit hashes, as
        -- stm_coactivation_events does)
        hash('wm_attention/v2;' || {{ params_fingerprint(['short_term_memory_duration', 'working_memory_capacity',
                                                           'attention_weights', 'attention_decay_seconds',
                                                           'unattended_encoding_factor', 'novelty_lookback']) }},
             count(*), bit_xor(hash(memory_fingerprint)))::varchar as window_fingerprint
    from features
    group by window_start
),

{% if is_incremental() %}
previous as (
    select distinct window_start, window_fingerprint from {{ this }}
),

changed as (
    select w.*
    from windows as w
    anti join previous as p
        on p.window_start = w.window_start and p.window_fingerprint = w.window_fingerprint
),

vanished as (
    select p.window_start
    from previous as p
    anti join windows as w on w.window_start = p.window_start
),
{% else %}
changed as (
    select * from windows
),
{% endif %}

scored as (
    select
        f.*,
        c.window_fingerprint,
        exp(-greatest({{ seconds_between('f.created_at', 'f.window_end') }}, 0)
            / {{ var('attention_decay_seconds') }}) as recency,
        {{ attention_priority('f.importance', 'f.emotional_salience', 'f.novelty',
                              seconds_between('f.created_at', 'f.window_end')) }} as priority
    from features as f
    inner join changed as c on c.window_start = f.window_start
),

ranked as (
    select
        *,
        row_number() over (
            partition by window_start order by priority desc, created_at, memory_id
        ) as attention_rank
    from scored
),

final as (
    select
        memory_id,
        content,
        created_at,
        window_start,
        window_end,
        importance,
        emotional_salience,
        novelty,
        recency,
        priority,
        attention_rank <= {{ var('working_memory_capacity') }} as attended,
        case when attention_rank <= {{ var('working_memory_capacity') }} then attention_rank end as slot,
        attention_rank,
        {{ encoding_strength('priority', 'attention_rank <= ' ~ var('working_memory_capacity')) }}
            as encoding_strength,
        sentiment,
        topics,
        entities,
        is_enriched,
        memory_fingerprint,
        window_fingerprint
    from ranked
)

select * from final
{% if is_incremental() %}
union all by name
-- tombstones: make delete+insert clear windows that no longer have any active memory
select window_start, cast(null as varchar) as memory_id from vanished
{% endif %}
