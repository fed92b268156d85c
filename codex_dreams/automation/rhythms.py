"""Dagster schedules and sensors built from the rhythm catalogue.

Every run a rhythm requests carries the tags `codex/rhythm` (the catalogue name) and `codex/cycle_key`
(`<rhythm>@<scheduled time>` for schedules, a bucket or cursor for sensors). Consolidation cycles record that
key in their ledger, so a cycle requested twice (by a schedule and a retry, say) applies once.
Sensors never open the DuckDB store: they read the inbox, PostgreSQL or the Dagster instance.
"""

import os
import time

import dagster as dg

from codex_dreams.automation.arrivals import arrival_marker
from codex_dreams.automation.catalogue import Catalogue, Rhythm, load_catalogue
from codex_dreams.automation.runs import job_in_flight
from codex_dreams.jobs import PREREQUISITE_OF_JOB
from codex_dreams.settings import get_settings

RHYTHM_TAG = "codex/rhythm"
CYCLE_KEY_TAG = "codex/cycle_key"
# The materialization whose metadata reports how many episodes wait for consolidation.
BACKLOG_ASSET = dg.AssetKey(["short_term_memory", "consolidation_backlog"])
BACKLOG_METADATA_KEY = "episodes_ready"


def _default_status() -> dg.DefaultSensorStatus:
    # On unless switched off (tests and one-off tools can set CODEX_RHYTHMS=off).
    if os.environ.get("CODEX_RHYTHMS", "on").lower() == "off":
        return dg.DefaultSensorStatus.STOPPED
    return dg.DefaultSensorStatus.RUNNING


def _schedule_status() -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus(_default_status().value)


def effective_timezone(catalogue: Catalogue) -> str:
    return get_settings().timezone or catalogue.timezone


def build_schedule(rhythm: Rhythm, timezone: str) -> dg.ScheduleDefinition:
    prerequisite = PREREQUISITE_OF_JOB.get(rhythm.job)

    def evaluate(context: dg.ScheduleEvaluationContext):
        if prerequisite is not None and not context.instance.fetch_materializations(prerequisite, limit=1).records:
            return dg.SkipReason(f"{prerequisite.to_user_string()} has not been built yet (it is built when the "
                                 f"first memories go through working memory); nothing for {rhythm.job} to do")
        scheduled = context.scheduled_execution_time
        key = f"{rhythm.name}@{scheduled.strftime('%Y-%m-%dT%H:%M%z')}"
        return dg.RunRequest(run_key=key, tags={RHYTHM_TAG: rhythm.name, CYCLE_KEY_TAG: key})

    return dg.ScheduleDefinition(
        name=rhythm.name,
        cron_schedule=list(rhythm.cron) if len(rhythm.cron) > 1 else rhythm.cron[0],
        job_name=rhythm.job,
        execution_timezone=timezone,
        description=rhythm.description,
        default_status=_schedule_status(),
        execution_fn=evaluate,
    )


def build_working_memory_sensor(rhythm: Rhythm) -> dg.SensorDefinition:
    interval = rhythm.interval_seconds

    def evaluate(context: dg.SensorEvaluationContext):
        from codex_dreams.sources.postgres import SourceUnavailable

        try:
            marker = arrival_marker(get_settings())
        except SourceUnavailable as error:
            return dg.SkipReason(str(error))
        if marker == context.cursor:
            return dg.SkipReason("no new memories since the last tick")
        if context.cursor is None and marker == "inbox:0":
            context.update_cursor(marker)  # a fresh install: nothing has ever arrived
            return dg.SkipReason("no memories yet")
        if job_in_flight(context.instance, rhythm.job):
            # Keep the cursor: the next tick after that run finishes sees the arrivals again.
            return dg.SkipReason(f"{rhythm.job} is already queued or running")
        context.update_cursor(marker)
        bucket = int(time.time() // interval)
        key = f"{rhythm.name}@{bucket * interval}"
        return dg.RunRequest(run_key=key, tags={RHYTHM_TAG: rhythm.name, CYCLE_KEY_TAG: key})

    return dg.SensorDefinition(
        name=rhythm.name, job_name=rhythm.job, evaluation_fn=evaluate, minimum_interval_seconds=interval,
        description=rhythm.description, default_status=_default_status(),
    )


def build_backlog_sensor(rhythm: Rhythm) -> dg.SensorDefinition:
    threshold = rhythm.backlog_threshold or 1

    def evaluate(context: dg.SensorEvaluationContext):
        records = context.instance.fetch_materializations(BACKLOG_ASSET, limit=1, ascending=False).records
        materialization = records[0].asset_materialization if records else None
        if materialization is None:
            return dg.SkipReason("short-term memory has not reported a backlog yet")
        entry = materialization.metadata.get(BACKLOG_METADATA_KEY)
        ready = int(entry.value) if entry is not None else 0
        if ready < threshold:
            return dg.SkipReason(f"{ready} episodes wait for consolidation (threshold {threshold})")
        marker = str(records[0].storage_id)
        if marker == context.cursor:
            return dg.SkipReason("this backlog already triggered a consolidation")
        if job_in_flight(context.instance, rhythm.job):
            return dg.SkipReason(f"{rhythm.job} is already queued or running")
        context.update_cursor(marker)
        key = f"{rhythm.name}@{marker}"
        return dg.RunRequest(run_key=key, tags={RHYTHM_TAG: rhythm.name, CYCLE_KEY_TAG: key})

    return dg.SensorDefinition(
        name=rhythm.name, job_name=rhythm.job, evaluation_fn=evaluate,
        minimum_interval_seconds=rhythm.interval_seconds, description=rhythm.description,
        default_status=_default_status(),
    )


SENSOR_BUILDERS = {
    "working_memory_sensor": build_working_memory_sensor,
    "consolidation_backlog_sensor": build_backlog_sensor,
}


def build_rhythms(job_names: set[str], catalogue: Catalogue | None = None):
    """(schedules, sensors) for the catalogue's rhythms whose job exists."""
    catalogue = catalogue or load_catalogue()
    timezone = effective_timezone(catalogue)
    schedules, sensors = [], []
    for rhythm in catalogue.rhythms:
        if rhythm.job not in job_names:
            raise ValueError(f"rhythm {rhythm.name} names job {rhythm.job}, which does not exist")
        if rhythm.kind == "schedule":
            schedules.append(build_schedule(rhythm, timezone))
        else:
            builder = SENSOR_BUILDERS.get(rhythm.name)
            if builder is None:
                raise ValueError(f"rhythm {rhythm.name}: no sensor logic of that name")
            sensors.append(builder(rhythm))
    return schedules, sensors
