-- Pairs are stored once, ordered (memory_a < memory_b), with counts that add up.
select *
from {{ ref('stm_coactivation') }}
where memory_a >= memory_b
   or coactivation_count <> window_coactivations + episode_coactivations
   or first_coactivated_at > last_coactivated_at
