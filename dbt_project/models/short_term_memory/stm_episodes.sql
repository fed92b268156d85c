-- Episodes: runs of memories between event boundaries, with their hierarchical structure
-- (goal -> tasks -> actions, from the per-memory enrichment), spatial and emotional context, salience and
-- decayed strength.
--   goal    = the most frequent goal of the episode (ties: the first to appear)
--   tasks   = distinct tasks in order of first appearance; actions likewise
--   salience = 0.5 * mean + 0.5 * peak memory salience (peak-end: the peak dominates what is remembered)
--   strength = mean encoding strength * exp(-(reference_time - ended_at) / tau)
with memories as (
    select * from {{ ref('stm_memories') }}
),

spatial as (
    select * from {{ ref('stm_spatial_memory') }}
),

goal_counts as (
    select episode_id, goal, count(*) as n, min(episode_position) as first_position
    from memories
    where goal is not null
    group by episode_id, goal
),

goals as (
    select episode_id, goal
    from goal_counts
    qualify row_number() over (partition by episode_id order by n desc, first_position, goal) = 1
),

task_firsts as (
    select episode_id, task, min(episode_position) as first_position
    from memories
    where task is not null
    group by episode_id, task
),

tasks as (
    select episode_id, list(task order by first_position, task) as tasks
    from task_firsts
    group by episode_id
),

action_firsts as (
    select episode_id, action, min(episode_position) as first_position
    from memories
    where action is not null
    group by episode_id, action
),

actions as (
    select episode_id, list(action order by first_position, action) as actions
    from action_firsts
    group by episode_id
),

place_firsts as (
    select s.episode_id, unnest(s.places) as place, s.created_at
    from spatial as s
),

places as (
    select episode_id, list(place order by first_at, place) as places
    from (select episode_id, place, min(created_at) as first_at from place_firsts group by episode_id, place)
    group by episode_id
),

egocentric_firsts as (
    select s.episode_id, unnest(s.egocentric) as expression, s.created_at
    from spatial as s
),

egocentric as (
    select episode_id, list(expression order by first_at, expression) as egocentric
    from (
        select episode_id, expression, min(created_at) as first_at
        from egocentric_firsts
        group by episode_id, expression
    )
    group by episode_id
),

topic_firsts as (
    select episode_id, unnest(topics) as topic, created_at from memories
),

topics as (
    select episode_id, list(topic order by first_at, topic) as topics
    from (select episode_id, topic, min(created_at) as first_at from topic_firsts group by episode_id, topic)
    group by episode_id
),

aggregated as (
    select
        episode_id,
        min(created_at) as started_at,
        max(created_at) as ended_at,
        count(*) as memory_count,
        count(*) filter (where attended) as attended_count,
        arg_min(memory_id, episode_position) as first_memory_id,
        arg_min(boundary_reason, episode_position) as boundary_reason,
        avg(encoding_strength) as encoding_strength,
        0.5 * avg(salience) + 0.5 * max(salience) as salience,
        any_value(reference_time) as reference_time
    from memories
    group by episode_id
),

final as (
    select
        a.episode_id,
        a.started_at,
        a.ended_at,
        {{ seconds_between('a.started_at', 'a.ended_at') }} as duration_seconds,
        a.memory_count,
        a.attended_count,
        a.first_memory_id,
        a.boundary_reason,
        g.goal,
        coalesce(t.tasks, []::varchar[]) as tasks,
        coalesce(ac.actions, []::varchar[]) as actions,
        coalesce(p.places, []::varchar[]) as places,
        coalesce(eg.egocentric, []::varchar[]) as egocentric,
        coalesce(tp.topics, []::varchar[]) as topics,
        ec.mean_sentiment,
        ec.mood,
        ec.emotional_intensity,
        ec.peak_memory_id,
        a.salience,
        a.encoding_strength,
        {{ decayed_strength('a.encoding_strength', seconds_between('a.ended_at', 'a.reference_time')) }}
            as strength
    from aggregated as a
    left join goals as g on g.episode_id = a.episode_id
    left join tasks as t on t.episode_id = a.episode_id
    left join actions as ac on ac.episode_id = a.episode_id
    left join places as p on p.episode_id = a.episode_id
    left join egocentric as eg on eg.episode_id = a.episode_id
    left join topics as tp on tp.episode_id = a.episode_id
    left join {{ ref('stm_emotional_context') }} as ec on ec.episode_id = a.episode_id
)

select * from final
