"""What the rhythms will do next and what they did last (for `codex daemon status` and `codex health`)."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
from dagster._utils.schedules import cron_string_iterator

from codex_dreams.automation.catalogue import Rhythm, load_catalogue
from codex_dreams.automation.rhythms import effective_timezone


def next_tick(rhythm: Rhythm, after: datetime, tz: str) -> datetime | None:
    """The next time a schedule fires after `after` (the earliest over a union of crons)."""
    if rhythm.kind != "schedule":
        return None
    candidates = []
    for cron in rhythm.cron:
        iterator = cron_string_iterator(after.timestamp(), cron, tz)
        tick = next(iterator)
        while tick.timestamp() <= after.timestamp():
            tick = next(iterator)
        candidates.append(tick)
    return min(candidates)


def last_run(instance: dg.DagsterInstance, job_name: str) -> dict | None:
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=job_name), limit=1)
    if not records:
        return None
    record = records[0]
    run = record.dagster_run
    started = record.start_time
    ended = record.end_time
    return {
        "run_id": run.run_id,
        "status": run.status.value,
        "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat() if started else None,
        "ended_at": datetime.fromtimestamp(ended, timezone.utc).isoformat() if ended else None,
        "age_seconds": (datetime.now(timezone.utc).timestamp() - (ended or started)) if (ended or started) else None,
    }


def rhythm_status(instance: dg.DagsterInstance | None, now: datetime | None = None) -> list[dict]:
    catalogue = load_catalogue()
    tz = effective_timezone(catalogue)
    now = now or datetime.now(timezone.utc)
    rows = []
    for rhythm in catalogue.rhythms:
        tick = next_tick(rhythm, now, tz)
        rows.append({
            "name": rhythm.name,
            "kind": rhythm.kind,
            "job": rhythm.job,
            "cadence": " | ".join(rhythm.cron) if rhythm.cron else f"every {rhythm.interval_seconds} s",
            "timezone": tz,
            "next_tick": tick.isoformat() if tick else None,
            "last_run": last_run(instance, rhythm.job) if instance is not None else None,
        })
    return rows
