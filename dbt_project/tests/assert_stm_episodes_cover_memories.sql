{{ config(meta={"dagster": {"ref": {"name": "stm_episodes"}}}) }}
-- Episodes partition the stream: their memory counts add up to stm_memories, and episodes do not overlap.
with episodes as (
    select * from {{ ref('stm_episodes') }}
),

totals as (
    select
        (select coalesce(sum(memory_count), 0) from episodes) as in_episodes,
        (select count(*) from {{ ref('stm_memories') }}) as memories
),

overlapping as (
    select episode_id
    from episodes
    qualify started_at <= lag(ended_at) over (order by started_at, episode_id)
)

select 'count mismatch' as problem from totals where in_episodes <> memories
union all
select 'overlap: ' || episode_id from overlapping
