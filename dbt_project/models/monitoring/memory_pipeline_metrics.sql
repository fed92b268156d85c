-- One row per stage run: every Python asset records its wall-clock start and finish in meta.stage_runs, and
-- dbt's on-run-end hook (macro record_stage_runs) records every model it built, so processing_time_ms covers
-- both. stage = the Dagster group / dbt folder.
-- Built with the other long-term and monitoring models (one dbt step after the cycles), not before the run:
-- depends_on: {{ ref('ltm_memories') }}
with runs as (
    select * from {{ source('meta', 'stage_runs') }}
),

final as (
    select
        stage,
        asset,
        runner,
        run_id,
        started_at,
        finished_at,
        rows,
        {{ seconds_between('started_at', 'finished_at') }} * 1000.0 as processing_time_ms
    from runs
)

select * from final
