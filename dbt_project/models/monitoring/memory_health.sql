-- Health checks with an alert level (OK, WARNING, CRITICAL). Thresholds are vars with defaults here
-- (override with --vars). "Hours since the last consolidation" is wall-clock time (an operational check);
-- everything else reads the state.
-- Monitoring builds last, with long-term memory (one dbt step after the cycles):
-- depends_on: {{ ref('ltm_memories') }}
with active as (
    select id from {{ source('raw', 'memories') }} where deleted_at is null
),

associations as (
    select * from {{ source('consolidation', 'associations') }}
),

ledger as (
    select * from {{ source('consolidation', 'cycle_ledger') }}
),

measured as (
    select
        'unenriched_backlog' as check_name,
        'live memories without an enrichment row' as description,
        (select count(*) from active anti join {{ source('enriched', 'memory_enrichment') }} as e
            on e.memory_id = active.id)::double as value,
        {{ var('health_unenriched_warning', 50) }}::double as warning_above,
        {{ var('health_unenriched_critical', 1000) }}::double as critical_above
    union all
    select
        'hours_since_last_consolidation',
        'wall-clock hours since a hippocampal or deep-sleep cycle finished (0 when there are no memories)',
        case
            when (select count(*) from active) = 0 then 0.0
            else coalesce(
                {{ seconds_between("(select max(finished_at) from ledger where cycle_type in ('hippocampal', 'deep_sleep'))",
                                   "(now() at time zone 'UTC')") }} / 3600.0,
                1e9)
        end,
        {{ var('health_consolidation_warning_hours', 2) }},
        {{ var('health_consolidation_critical_hours', 24) }}
    union all
    select
        'mean_link_strength',
        'mean association strength (runaway potentiation when near 1; homeostasis should hold it near its target)',
        coalesce((select avg(strength) from associations), 0.0),
        {{ var('health_mean_strength_warning', 0.8) }},
        {{ var('health_mean_strength_critical', 0.95) }}
    union all
    select
        'links_below_pruning_threshold',
        'links weaker than weak_connection_threshold (pruning runs in every cycle: any is a fault)',
        (select count(*) from associations where strength < {{ var('weak_connection_threshold') }})::double,
        0.5,
        0.5
    union all
    select
        'strengths_outside_unit_interval',
        'link or consolidation strengths outside [0, 1] (any is a fault)',
        ((select count(*) from associations where not (strength between 0 and 1))
         + (select count(*) from {{ source('consolidation', 'memory_consolidation') }}
            where not (consolidation_strength between 0 and 1)))::double,
        0.5,
        0.5
    union all
    select
        'unconsolidated_share',
        'share of memories seen by consolidation that have not reached long-term memory',
        coalesce((select avg(case when consolidated_at is null then 1.0 else 0.0 end)
                  from {{ source('consolidation', 'memory_consolidation') }}), 0.0),
        {{ var('health_unconsolidated_warning', 0.98) }},
        1.01
),

final as (
    select
        check_name,
        description,
        value,
        warning_above,
        critical_above,
        case
            when value > critical_above then 'CRITICAL'
            when value > warning_above then 'WARNING'
            else 'OK'
        end as alert_level,
        now() at time zone 'UTC' as checked_at
    from measured
)

select * from final
