-- Placeholder until the short-term memory models land: every active memory enters short-term memory.
select memory_id, content, created_at, window_start from {{ ref('wm_active_memories') }}
