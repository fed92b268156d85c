{{ config(materialized='view') }}  -- small and derived: computed on read, nothing rewritten per run
-- Emotional context per episode: valence (mean sentiment), arousal (mean emotional salience), the peak
-- moment (most salient memory) and a mood label from Russell's circumplex (macro mood_label).
with memories as (
    select * from {{ ref('stm_memories') }}
),

peaks as (
    select episode_id, memory_id as peak_memory_id, emotional_salience as peak_salience
    from memories
    qualify row_number() over (
        partition by episode_id order by emotional_salience desc, created_at, memory_id
    ) = 1
),

aggregated as (
    select
        episode_id,
        min(created_at) as started_at,
        count(*) as memory_count,
        avg(sentiment) as mean_sentiment,
        min(sentiment) as min_sentiment,
        max(sentiment) as max_sentiment,
        arg_max(sentiment, episode_position) as end_sentiment,
        avg(emotional_salience) as emotional_intensity
    from memories
    group by episode_id
)

select
    a.episode_id,
    a.started_at,
    a.memory_count,
    a.mean_sentiment,
    a.min_sentiment,
    a.max_sentiment,
    a.end_sentiment,
    a.emotional_intensity,
    p.peak_salience,
    p.peak_memory_id,
    {{ mood_label('a.mean_sentiment', 'a.emotional_intensity') }} as mood
from aggregated as a
inner join peaks as p on p.episode_id = a.episode_id
