"""`codex consolidate`: run one rhythm's job now and summarise it.

With the daemon running, the run is submitted to its webserver (GraphQL) and so goes through the run queue:
it never overlaps a scheduled run on the DuckDB file. Without it, the job runs in this process. Either way the
run is recorded in the DAGSTER_HOME instance and shows in the UI.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import dagster as dg

from codex_dreams.settings import Settings

# `codex consolidate --type` -> the rhythm's job
JOBS_BY_CYCLE = {
    "working": "working_memory_job",
    "short_term": "short_term_memory_job",
    "hippocampal": "hippocampal_consolidation_job",
    "deep_sleep": "deep_sleep_job",
    "rem_sleep": "rem_sleep_job",
    "homeostasis": "homeostasis_job",
    "all": "full_cycle_job",
}
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _steps(instance: dg.DagsterInstance, run_id: str) -> tuple[list[dict], list[str]]:
    """Finished steps with durations, and failure messages, from the run's event log."""
    records = instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS,
                         dg.DagsterEventType.STEP_FAILURE},
    ).records
    started: dict[str, float] = {}
    steps, failures = [], []
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
            continue
        status = "SUCCESS" if event.event_type == dg.DagsterEventType.STEP_SUCCESS else "FAILURE"
        steps.append({"name": event.step_key, "status": status,
                      "seconds": entry.timestamp - started.get(event.step_key, entry.timestamp)})
        if status == "FAILURE":
            error = getattr(event.event_specific_data, "error", None)
            message = error.message.strip().splitlines()[0] if error and error.message else "failed"
            failures.append(f"{event.step_key}: {message}")
    return steps, failures


def _watch(instance: dg.DagsterInstance, run_id_holder: dict, done: threading.Event,
           on_progress: Callable[[str], None] | None, job_name: str) -> None:
    while not done.wait(0.5):
        run_id = run_id_holder.get("run_id")
        if on_progress is None or run_id is None:
            continue
        steps, _ = _steps(instance, run_id)
        if steps:
            on_progress(f"Running {job_name}: {len(steps)} steps done, last {steps[-1]['name']}")


def run_consolidation(settings: Settings, job_name: str,
                      on_progress: Callable[[str], None] | None = None) -> dict:
    from codex_dreams import service
    from codex_dreams.instance import ensure_instance

    ensure_instance(settings)
    started = time.monotonic()
    endpoint = service.endpoint(settings)
    with dg.DagsterInstance.get() as instance:
        if endpoint is not None:
            run_id = _submit_to_daemon(endpoint, job_name, instance, on_progress)
            where = "daemon"
        else:
            run_id = _run_here(settings, job_name, instance, on_progress)
            where = "in-process"
        run = instance.get_run_by_id(run_id)
        steps, failures = _steps(instance, run_id)
    return {
        "job": job_name, "run_id": run_id, "status": run.status.value if run else "UNKNOWN",
        "seconds": time.monotonic() - started, "where": where, "steps": steps, "failures": failures,
    }


def _run_here(settings: Settings, job_name: str, instance: dg.DagsterInstance,
              on_progress: Callable[[str], None] | None) -> str:
    from codex_dreams.pipeline import run_job

    holder: dict = {}
    done = threading.Event()

    def find_run_id() -> None:
        # The run id exists once the run is created; look it up so progress can follow its events.
        while not done.is_set() and "run_id" not in holder:
            runs = instance.get_run_ids(filters=dg.RunsFilter(job_name=job_name, statuses=[
                dg.DagsterRunStatus.STARTED]), limit=1)
            if runs:
                holder["run_id"] = runs[0]
            done.wait(0.3)

    watchers = [threading.Thread(target=find_run_id, daemon=True),
                threading.Thread(target=_watch, args=(instance, holder, done, on_progress, job_name), daemon=True)]
    for thread in watchers:
        thread.start()
    try:
        result = run_job(job_name, settings)
    finally:
        done.set()
    return result.run_id


def _submit_to_daemon(endpoint: tuple[str, int], job_name: str, instance: dg.DagsterInstance,
                      on_progress: Callable[[str], None] | None) -> str:
    from dagster_graphql import DagsterGraphQLClient

    host, port = endpoint
    client = DagsterGraphQLClient(host, port_number=port)
    run_id = client.submit_job_execution(job_name, tags={"codex/rhythm": "manual"})
    while True:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in TERMINAL:
            return run_id
        if on_progress is not None:
            steps, _ = _steps(instance, run_id)
            state = run.status.value.lower() if run else "submitted"
            on_progress(f"{job_name} {state}: {len(steps)} steps done")
        time.sleep(1.0)
