{# Formulas shared by the working- and short-term-memory models (docs/stages.md explains each one). #}

{# The event-time working-memory window a timestamp falls in: tumbling windows of
   short_term_memory_duration seconds, aligned to 2000-01-01 00:00:00 UTC. #}
{% macro wm_window_start(ts) -%}
    time_bucket(to_seconds({{ var('short_term_memory_duration') }}), {{ ts }}, timestamp '2000-01-01')
{%- endmacro %}

{% macro wm_window_end(window_start) -%}
    ({{ window_start }} + to_seconds({{ var('short_term_memory_duration') }}))
{%- endmacro %}

{# Seconds from `earlier` to `later` (both timestamps). #}
{% macro seconds_between(earlier, later) -%}
    (epoch({{ later }}) - epoch({{ earlier }}))
{%- endmacro %}

{# Attention priority in [0, 1] when the weights sum to 1:
   w_i * importance + w_s * emotional_salience + w_n * novelty + w_r * exp(-age / attention_decay_seconds),
   age = seconds from the memory's arrival to the end of the window it is judged in. #}
{% macro attention_priority(importance, salience, novelty, age_seconds) -%}
    {%- set w = var('attention_weights') -%}
    (
        {{ w['importance'] }} * {{ importance }}
        + {{ w['emotional_salience'] }} * {{ salience }}
        + {{ w['novelty'] }} * {{ novelty }}
        + {{ w['recency'] }} * exp(-greatest({{ age_seconds }}, 0) / {{ var('attention_decay_seconds') }})
    )
{%- endmacro %}

{# Encoding strength in [0, 1]: attended items are encoded at 0.5 + 0.5 * priority (deep processing);
   unattended ones at unattended_encoding_factor times that (shallow processing). #}
{% macro encoding_strength(priority, attended) -%}
    least(1.0, greatest(0.0,
        (0.5 + 0.5 * least(1.0, greatest(0.0, {{ priority }})))
        * case when {{ attended }} then 1.0 else {{ var('unattended_encoding_factor') }} end
    ))
{%- endmacro %}

{# Exponential decay s(t) = s0 * exp(-t / tau), t and tau in hours. #}
{% macro decayed_strength(s0, age_seconds) -%}
    ({{ s0 }} * exp(-greatest({{ age_seconds }}, 0) / ({{ var('stm_decay_tau_hours') }} * 3600.0)))
{%- endmacro %}

{# Cosine similarity of two float[] embeddings; null when either is missing or their dimensions differ
   (another embedding model). Callers null out vectors without direction (all zeros) beforehand. #}
{% macro cosine_similarity(a, b) -%}
    case when len({{ a }}) = len({{ b }}) then list_cosine_similarity({{ a }}, {{ b }}) end
{%- endmacro %}

{# A salience score per memory in [0, 1]: what makes a memory stand out regardless of its timing. #}
{% macro memory_salience(importance, salience) -%}
    (0.5 * {{ importance }} + 0.5 * {{ salience }})
{%- endmacro %}

{# Egocentric (self-relative) spatial expressions, matched case-insensitively in the memory text. #}
{% macro egocentric_pattern() -%}
'(?i)\b(?:(?:to|on|at) (?:my|your|the|his|her|our|their) (?:left|right)(?:[- ]hand side)?|(?:turn(?:ed|ing|s)?|go(?:ing|es)?|went|head(?:ed|ing)?|veer(?:ed)?) (?:left|right)|straight ahead|(?:[a-z0-9]+ )?(?:blocks?|steps?|meters?|metres?|miles?|kilometers?|kilometres?|km|feet|foot|yards?) (?:to the )?(?:north|south|east|west|ahead|behind|away|back)(?: of (?:the |my |our )?[a-z0-9]+)?|(?:behind|in front of|next to|across from|beside|opposite|on top of|underneath|left of|right of|close to) (?:the|my|your|our|his|her|their|a|an) [a-z0-9]+)'
{%- endmacro %}

{# Mood from valence (mean sentiment, [-1, 1]) and arousal (emotional intensity, [0, 1]):
   the four quadrants of Russell's circumplex plus a neutral centre. #}
{% macro mood_label(valence, arousal) -%}
    case
        when {{ valence }} >= 0.1 and {{ arousal }} >= 0.5 then 'excited'
        when {{ valence }} >= 0.1 then 'content'
        when {{ valence }} <= -0.1 and {{ arousal }} >= 0.5 then 'distressed'
        when {{ valence }} <= -0.1 then 'sad'
        when {{ arousal }} >= 0.5 then 'alert'
        else 'neutral'
    end
{%- endmacro %}

{# A literal naming the values of the given vars: folded into incremental fingerprints, so changing a
   parameter re-processes every window / episode instead of mixing old and new results. #}
{% macro params_fingerprint(names) -%}
    {%- set parts = [] -%}
    {%- for name in names -%}
        {%- do parts.append(name ~ '=' ~ (var(name) | tojson)) -%}
    {%- endfor -%}
    '{{ parts | join(";") }}'
{%- endmacro %}

{# The order of a memory's enrichment rows, preferred first: the configured model (var enrichment_model, the
   active model key), then the newest, then by name. Used with row_number() ... = 1 wherever one enrichment
   row per memory is chosen; codex_dreams.stages.cycles.memory_embeddings orders the same way in Python. #}
{% macro preferred_enrichment_order() -%}
    {% if var('enrichment_model', none) %}(model = '{{ var("enrichment_model") | replace("'", "''") }}') desc, {% endif -%}
    enriched_at desc, model
{%- endmacro %}

{# One enrichment row per memory, as a relation: the preferred row (preferred_enrichment_order) among all of a
   memory's rows, or with with_embedding among those that carry a vector. The choice runs over the key columns
   (memory_id, model: one row each, kept by the enrichment writer); the whole row (the vector included) is read
   only for the chosen rows. #}
{% macro chosen_enrichment(with_embedding=false) -%}
    (
        select enrichment.*
        from {{ source('enriched', 'memory_enrichment') }} as enrichment
        semi join (
            select memory_id, model
            from {{ source('enriched', 'memory_enrichment') }}
            {#- embedding_dim is set exactly when embedding is (enrichment.cache.write_rows): no vector is read #}
            {% if with_embedding %}where embedding_dim > 0{% endif %}
            qualify row_number() over (partition by memory_id order by {{ preferred_enrichment_order() }}) = 1
        ) as chosen on chosen.memory_id = enrichment.memory_id and chosen.model = enrichment.model
    )
{%- endmacro %}
