{{ config(materialized='view') }}  -- small and derived: computed on read, nothing rewritten per run
-- Spatial encoding per memory, in two reference frames: allocentric (named places, from the enrichment's
-- locations) and egocentric (expressions relative to the self: "to my left", "two blocks north of the
-- office", "behind the desk"; matched in the text). Only memories with spatial content have a row.
with memories as (
    select memory_id, episode_id, created_at, content, locations
    from {{ ref('stm_memories') }}
),

extracted as (
    select
        memory_id,
        episode_id,
        created_at,
        list_sort(list_distinct(list_filter(
            list_transform(locations, p -> trim(p)), p -> p <> ''))) as places,
        list_sort(list_distinct(list_transform(
            regexp_extract_all(content, {{ egocentric_pattern() }}), x -> lower(trim(x))))) as egocentric
    from memories
)

select
    memory_id,
    episode_id,
    created_at,
    places,
    egocentric,
    case
        when len(places) > 0 and len(egocentric) > 0 then 'both'
        when len(places) > 0 then 'allocentric'
        else 'egocentric'
    end as reference_frame
from extracted
where len(places) > 0 or len(egocentric) > 0
