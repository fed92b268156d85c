-- Per window, the attended memories hold exactly slots 1..n with n = least(capacity, members), and a memory
-- is attended exactly when it has a slot.
with attention as (
    select * from {{ ref('wm_attention') }}
),

per_window as (
    select
        window_start,
        count(*) as members,
        count(*) filter (where attended) as attended,
        count(distinct slot) as distinct_slots,
        coalesce(max(slot), 0) as max_slot,
        count(*) filter (where attended <> (slot is not null)) as inconsistent
    from attention
    group by window_start
)

select *
from per_window
where attended <> least(members, {{ var('working_memory_capacity') }})
   or distinct_slots <> attended
   or max_slot <> attended
   or inconsistent > 0
