-- Placeholder until the long-term memory models land.
select memory_id, created_at from {{ ref('consolidation_candidates') }}
