{{ config(materialized='view') }}  -- an aggregate of the incremental events, cheap on read: nothing to rewrite on every run
-- Hebbian co-activation counts per memory pair (memory_a < memory_b): in how many working-memory windows
-- both were in the buffer, and whether they were linked within an episode (see stm_coactivation_events
-- for the bound on pair generation). Consolidation turns these counts into association weights.
with events as (
    select * from {{ ref('stm_coactivation_events') }}
)

select
    memory_a,
    memory_b,
    count(*) filter (where context_type = 'window') as window_coactivations,
    count(*) filter (where context_type = 'episode') as episode_coactivations,
    count(*) as coactivation_count,
    min(coactivated_at) as first_coactivated_at,
    max(coactivated_at) as last_coactivated_at
from events
group by memory_a, memory_b
