-- Every active memory in short-term memory: its episode (event segmentation over the stream), its
-- encoding strength from working memory and its decayed strength s(t) = s0 * exp(-t / tau).
-- t is measured in event time: from the memory's created_at to the stream's "now", the latest active
-- memory's created_at (reference_time), so re-runs and bulk imports give the same strengths.
with attention as (
    select * from {{ ref('wm_attention') }}
),

features as (
    select memory_id, context_similarity, goal, task, action, locations
    from {{ ref('wm_memory_features') }}
),

ordered as (
    select
        a.*,
        f.context_similarity,
        f.goal,
        f.task,
        f.action,
        f.locations,
        lag(a.created_at) over (order by a.created_at, a.memory_id) as previous_at,
        row_number() over (order by a.created_at, a.memory_id) as seq
    from attention as a
    inner join features as f on f.memory_id = a.memory_id
),

boundaries as (
    -- An event boundary opens a new episode: a pause longer than episode_gap_minutes, or a topic shift
    -- (cosine below topic_shift_threshold to each of the previous topic_shift_context memories).
    select
        *,
        case
            when previous_at is null then 'start'
            when {{ seconds_between('previous_at', 'created_at') }} > {{ var('episode_gap_minutes') }} * 60
                then 'time_gap'
            when context_similarity < {{ var('topic_shift_threshold') }} then 'topic_shift'
        end as boundary_reason
    from ordered
),

grouped as (
    select
        *,
        max(case when boundary_reason is not null then seq end)
            over (order by seq rows between unbounded preceding and current row) as episode_start_seq
    from boundaries
),

episodes as (
    select
        *,
        md5(first_value(memory_id) over (partition by episode_start_seq order by seq)) as episode_id,
        row_number() over (partition by episode_start_seq order by seq) as episode_position
    from grouped
),

reference as (
    select max(created_at) as reference_time from attention
),

final as (
    select
        e.memory_id,
        e.episode_id,
        e.episode_position,
        e.boundary_reason,
        e.content,
        e.created_at,
        e.window_start,
        e.attended,
        e.slot,
        e.priority,
        e.encoding_strength,
        r.reference_time,
        {{ seconds_between('e.created_at', 'r.reference_time') }} / 3600.0 as age_hours,
        {{ decayed_strength('e.encoding_strength', seconds_between('e.created_at', 'r.reference_time')) }}
            as strength,
        e.sentiment,
        e.emotional_salience,
        e.importance,
        e.novelty,
        {{ memory_salience('e.importance', 'e.emotional_salience') }} as salience,
        e.context_similarity,
        e.topics,
        e.entities,
        e.goal,
        e.task,
        e.action,
        e.locations
    from episodes as e
    cross join reference as r
)

select * from final
