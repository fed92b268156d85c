{{ config(materialized='view') }}
-- What is in working memory now: the buffer of the latest window (its attended arrivals, slot order, then
-- items still held from the window before). A small indexed-free scan of one window: the seed's <50 ms query.
with buffer as (
    select * from {{ ref('wm_buffer') }}
),

latest as (
    select max(window_start) as window_start from buffer
)

select
    b.window_start,
    b.window_end,
    b.buffer_slot as slot,
    b.memory_id,
    a.content,
    a.created_at,
    b.arrived as arrived_in_window,
    a.slot as attention_slot,
    b.activation,
    a.priority,
    a.encoding_strength,
    a.sentiment,
    a.topics,
    a.entities
from buffer as b
inner join latest as l on l.window_start = b.window_start
inner join {{ ref('wm_attention') }} as a on a.memory_id = b.memory_id
order by b.buffer_slot
