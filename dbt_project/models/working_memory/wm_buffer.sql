-- The working-memory buffer of each window: its attended arrivals plus attended items still held from the
-- previous working_memory_hold_windows windows, ranked by their attention priority re-evaluated at this
-- window's end (recency decays), cut at working_memory_capacity: new items displace old ones. With the
-- default hold of one window this is exact; with longer holds a displaced item may re-enter a later buffer.
with attention as (
    select * from {{ ref('wm_attention') }}
),

windows as (
    select distinct window_start, window_end from attention
),

attended as (
    select memory_id, window_start as arrival_window, created_at, importance, emotional_salience, novelty
    from attention
    where attended
),

held_windows as (
    -- each window with the arrival windows whose attended items it still holds (itself and the previous
    -- working_memory_hold_windows); a plain column, so the join below is an equi-join (hash), not a filter
    -- over the cross product
    select
        w.window_start,
        w.window_end,
        w.window_start - to_seconds(hold.windows_back * {{ var('short_term_memory_duration') }}) as arrival_window
    from windows as w
    cross join range(0, {{ var('working_memory_hold_windows') }} + 1) as hold(windows_back)
),

candidates as (
    select
        h.window_start,
        h.window_end,
        a.memory_id,
        a.created_at,
        a.arrival_window,
        a.arrival_window = h.window_start as arrived,
        {{ attention_priority('a.importance', 'a.emotional_salience', 'a.novelty',
                              seconds_between('a.created_at', 'h.window_end')) }} as activation
    from held_windows as h
    inner join attended as a on a.arrival_window = h.arrival_window
),

ranked as (
    select
        *,
        row_number() over (
            partition by window_start order by arrived desc, activation desc, created_at, memory_id
        ) as buffer_slot
    from candidates
)

select window_start, window_end, buffer_slot, memory_id, created_at, arrival_window, arrived, activation
from ranked
where buffer_slot <= {{ var('working_memory_capacity') }}
