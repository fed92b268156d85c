-- Placeholder until the consolidation models land.
select memory_id, created_at from {{ ref('stm_memories') }}
