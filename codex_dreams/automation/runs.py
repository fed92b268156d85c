"""Questions the rhythms ask the Dagster instance (never the DuckDB store)."""

from __future__ import annotations

import dagster as dg

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def job_in_flight(instance: dg.DagsterInstance, job_name: str) -> bool:
    """True when a run of the job is queued or running."""
    return bool(instance.get_run_ids(filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1))
