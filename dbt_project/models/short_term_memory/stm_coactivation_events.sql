{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='context_key',
        on_schema_change='sync_all_columns',
        post_hook="delete from {{ this }} where memory_a is null",
    )
}}
-- Hebbian co-activation events: one row per memory pair per context in which both were active.
--   window context:  both in the working-memory buffer of the same window (wm_buffer; <= capacity items,
--                    so at most capacity*(capacity-1)/2 pairs per window)
--   episode context: both in the same episode and either (a) at most coactivation_max_lag memories and
--                    coactivation_horizon_minutes apart (temporal contiguity), or (b) both among the
--                    episode's coactivation_top_salient most salient memories. This bounds episode pairs by
--                    n * max_lag + top_salient^2 / 2 per episode, however long the episode is.
-- Incremental by context: pairs are regenerated only for windows/episodes whose membership fingerprint
-- changed; contexts that changed or vanished get a tombstone row so delete+insert clears their old pairs
-- (the post-hook removes the tombstones).
with buffer as (
    select * from {{ ref('wm_buffer') }}
),

memories as (
    select * from {{ ref('stm_memories') }}
),

salience_ranked as (
    select
        *,
        row_number() over (partition by episode_id order by salience desc, created_at, memory_id) as salience_rank
    from memories
),

contexts as (
    -- a context's fingerprint: its parameters and the set of its members (an order-free combination of 64-bit
    -- member hashes: ~8x cheaper than an md5 of the sorted member list, and a collision would only skip one
    -- regeneration). A context of one memory has no pair: it is neither stored nor regenerated.
    select
        'window:' || strftime(window_start, '%Y-%m-%dT%H:%M:%S') as context_key,
        'window' as context_type,
        hash('coactivation/v2;' || {{ params_fingerprint(['short_term_memory_duration', 'working_memory_capacity',
                                                           'working_memory_hold_windows']) }},
             count(*), bit_xor(hash(memory_id, created_at)))::varchar as context_fingerprint
    from buffer
    group by window_start
    having count(*) > 1
    union all
    select
        'episode:' || episode_id as context_key,
        'episode' as context_type,
        hash('coactivation/v2;' || {{ params_fingerprint(['coactivation_max_lag', 'coactivation_horizon_minutes',
                                                           'coactivation_top_salient']) }},
             count(*), bit_xor(hash(memory_id, created_at, salience_rank)))::varchar as context_fingerprint
    from salience_ranked
    group by episode_id
    having count(*) > 1
),

{% if is_incremental() %}
previous as (
    select distinct context_key, context_fingerprint from {{ this }}
),

changed as (
    select c.*
    from contexts as c
    anti join previous as p
        on p.context_key = c.context_key and p.context_fingerprint = c.context_fingerprint
),

stale as (
    -- contexts stored before whose membership changed or which no longer exist
    select distinct p.context_key
    from previous as p
    anti join contexts as c
        on c.context_key = p.context_key and c.context_fingerprint = p.context_fingerprint
),
{% else %}
changed as (
    select * from contexts
),
{% endif %}

window_pairs as (
    select
        c.context_key,
        c.context_type,
        c.context_fingerprint,
        a.memory_id as memory_a,
        b.memory_id as memory_b,
        greatest(a.window_start, a.created_at, b.created_at) as coactivated_at
    from changed as c
    inner join buffer as a on c.context_key = 'window:' || strftime(a.window_start, '%Y-%m-%dT%H:%M:%S')
    inner join buffer as b on b.window_start = a.window_start and a.memory_id < b.memory_id
    where c.context_type = 'window'
),

episode_members as (
    select s.*, c.context_key, c.context_type, c.context_fingerprint
    from changed as c
    inner join salience_ranked as s on c.context_key = 'episode:' || s.episode_id
    where c.context_type = 'episode'
),

episode_pairs as (
    select distinct
        a.context_key,
        a.context_type,
        a.context_fingerprint,
        least(a.memory_id, b.memory_id) as memory_a,
        greatest(a.memory_id, b.memory_id) as memory_b,
        greatest(a.created_at, b.created_at) as coactivated_at
    from episode_members as a
    inner join episode_members as b
        on b.episode_id = a.episode_id
        and b.episode_position > a.episode_position
        and (
            (
                b.episode_position <= a.episode_position + {{ var('coactivation_max_lag') }}
                and {{ seconds_between('a.created_at', 'b.created_at') }}
                    <= {{ var('coactivation_horizon_minutes') }} * 60
            )
            or (
                a.salience_rank <= {{ var('coactivation_top_salient') }}
                and b.salience_rank <= {{ var('coactivation_top_salient') }}
            )
        )
),

final as (
    select * from window_pairs
    union all
    select * from episode_pairs
)

select * from final
{% if is_incremental() %}
union all by name
select context_key, cast(null as varchar) as memory_a from stale
{% endif %}
