{# Formulas of the long-term memory models (docs/stages.md, "Long-term memory"). #}

{# The present moment of long-term memory, in event time: the later of the latest live memory and the as_of
   of the latest consolidating cycle (hippocampal or deep sleep). Ages, categories and retention are measured
   from it, never from the wall clock, so a re-run or a bulk import gives the same result as live processing. #}
{% macro ltm_reference_time() -%}
    greatest(
        (select max(created_at) from {{ source('raw', 'memories') }} where deleted_at is null),
        (select max(as_of) from {{ source('consolidation', 'cycle_ledger') }}
         where cycle_type in ('hippocampal', 'deep_sleep'))
    )
{%- endmacro %}

{# Rehearsals: replays count once, recalls twice (the testing effect: retrieval practice strengthens more
   than restudy). #}
{% macro ltm_rehearsals(replay_count, access_count) -%}
    ({{ replay_count }} + 2 * {{ access_count }})
{%- endmacro %}

{# Stability in [0, 1): 1 - exp(-rehearsals / ltm_rehearsal_scale). #}
{% macro ltm_stability(rehearsals) -%}
    (1 - exp(-({{ rehearsals }}) / {{ var('ltm_rehearsal_scale') }}))
{%- endmacro %}

{# Stability in days for the forgetting curve: S = ltm_base_stability_days * (1 + rehearsals). #}
{% macro ltm_stability_days(rehearsals) -%}
    ({{ var('ltm_base_stability_days') }} * (1 + {{ rehearsals }}))
{%- endmacro %}

{# Retention R = exp(-t / S), t = days since last use (replay, recall or creation). #}
{% macro ltm_retention(days_since_use, stability_days) -%}
    exp(-greatest({{ days_since_use }}, 0) / {{ stability_days }})
{%- endmacro %}

{# Category by age and stability: fresh (< ltm_fresh_days), ancient (> ltm_ancient_days and stable),
   stable (stability >= ltm_stable_stability), else consolidating. #}
{% macro ltm_category(age_days, stability) -%}
    case
        when {{ age_days }} < {{ var('ltm_fresh_days') }} then 'fresh'
        when {{ stability }} >= {{ var('ltm_stable_stability') }} and {{ age_days }} > {{ var('ltm_ancient_days') }}
            then 'ancient'
        when {{ stability }} >= {{ var('ltm_stable_stability') }} then 'stable'
        else 'consolidating'
    end
{%- endmacro %}

{# Retrieval strength in [0, 1]: weighted sum of retention, stability, centrality and recent recalls
   (weights: ltm_retrieval_weights, summing to 1). #}
{% macro ltm_retrieval_strength(retention, stability, centrality, access_count) -%}
    {%- set w = var('ltm_retrieval_weights') -%}
    least(1.0, greatest(0.0,
        {{ w['retention'] }} * {{ retention }}
        + {{ w['stability'] }} * {{ stability }}
        + {{ w['centrality'] }} * {{ centrality }}
        + {{ w['access'] }} * (1 - exp(-({{ access_count }}) / 3.0))
    ))
{%- endmacro %}
