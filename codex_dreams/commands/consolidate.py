"""`codex consolidate`: run one rhythm's job now and summarise it.

With the daemon running, the run is submitted to its webserver (GraphQL) and so goes through the run queue:
it never overlaps a scheduled run on the DuckDB file. Without it, the job runs in this process. Either way the
run is recorded in the DAGSTER_HOME instance and shows in the UI.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Callable

import dagster as dg

from codex_dreams.automation.watchdog import PoolWaitTimeout
from codex_dreams.errors import OperationalError
from codex_dreams.settings import Settings

INVOCATION_TAG = "codex/invocation"

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
    from codex_dreams.automation.watchdog import holders_sentence, pool_holders

    while not done.wait(0.5):
        run_id = run_id_holder.get("run_id")
        if on_progress is None or run_id is None:
            continue
        holders = pool_holders(instance, exclude_run_id=run_id)
        if holders and not any(slot.run_id == run_id for slot in _own_slots(instance, run_id)):
            on_progress(f"{job_name} waits for the memory store, held by {holders_sentence(holders)}")
            continue
        steps, _ = _steps(instance, run_id)
        if steps:
            on_progress(f"Running {job_name}: {len(steps)} steps done, last {steps[-1]['name']}")


def _own_slots(instance: dg.DagsterInstance, run_id: str) -> list:
    from codex_dreams.pools import DUCKDB_WRITER_POOL

    if not instance.event_log_storage.supports_global_concurrency_limits:
        return []
    info = instance.event_log_storage.get_concurrency_info(DUCKDB_WRITER_POOL)
    return [slot for slot in info.claimed_slots if slot.run_id == run_id]


def run_consolidation(settings: Settings, job_name: str,
                      on_progress: Callable[[str], None] | None = None,
                      wait_seconds: float | None = None, tags: dict[str, str] | None = None) -> dict:
    """Run the job (through the daemon when it runs, else here) and summarise it. Never waits silently: while
    another run holds the store, `on_progress` hears for whom, and after `wait_seconds` it gives up
    (`PoolWaitTimeout`, or `DaemonNotRunning` for a run queued while the daemon is down). `tags` go on the run
    (e.g. the enrichment asset's `codex/reenrich_fallbacks`)."""
    from codex_dreams import service
    from codex_dreams.automation.watchdog import DEFAULT_POOL_WAIT_SECONDS
    from codex_dreams.instance import ensure_instance

    ensure_instance(settings)
    wait_seconds = DEFAULT_POOL_WAIT_SECONDS if wait_seconds is None else wait_seconds
    started = time.monotonic()
    endpoint = service.endpoint(settings)
    with dg.DagsterInstance.get() as instance:
        if endpoint is not None:
            run_id = _submit_to_daemon(settings, endpoint, job_name, instance, on_progress, wait_seconds, tags)
            where = "daemon"
        else:
            run_id = _run_here(settings, job_name, instance, on_progress, wait_seconds, tags)
            where = "in-process"
        run = instance.get_run_by_id(run_id)
        steps, failures = _steps(instance, run_id)
    return {
        "job": job_name, "run_id": run_id, "status": run.status.value if run else "UNKNOWN",
        "seconds": time.monotonic() - started, "where": where, "steps": steps, "failures": failures,
    }


def _run_here(settings: Settings, job_name: str, instance: dg.DagsterInstance,
              on_progress: Callable[[str], None] | None, wait_seconds: float,
              tags: dict[str, str] | None = None) -> str:
    from codex_dreams.pipeline import run_job

    invocation = uuid.uuid4().hex
    holder: dict = {}
    done = threading.Event()

    def find_run_id() -> None:
        # The run id exists once the run is created; look it up (by this call's own tag) so progress can
        # follow its events.
        while not done.is_set() and "run_id" not in holder:
            runs = instance.get_run_ids(filters=dg.RunsFilter(tags={INVOCATION_TAG: invocation}), limit=1)
            if runs:
                holder["run_id"] = runs[0]
            done.wait(0.3)

    watchers = [threading.Thread(target=find_run_id, daemon=True),
                threading.Thread(target=_watch, args=(instance, holder, done, on_progress, job_name), daemon=True)]
    for thread in watchers:
        thread.start()
    try:
        result = run_job(job_name, settings, tags={**(tags or {}), INVOCATION_TAG: invocation},
                         wait_seconds=wait_seconds, on_wait=on_progress)
    finally:
        done.set()
    return result.run_id


class DaemonNotRunning(OperationalError):
    """A run was queued for the daemon, but the daemon process is not there to start it."""


def _submit_to_daemon(settings: Settings, endpoint: tuple[str, int], job_name: str, instance: dg.DagsterInstance,
                      on_progress: Callable[[str], None] | None, wait_seconds: float,
                      tags: dict[str, str] | None = None) -> str:
    from dagster_graphql import DagsterGraphQLClient

    from codex_dreams import service
    from codex_dreams.automation.watchdog import holders_sentence, pool_holders, reap_dead_runs

    reap_dead_runs(instance, log=on_progress)
    host, port = endpoint
    client = DagsterGraphQLClient(host, port_number=port)
    run_id = client.submit_job_execution(job_name, tags={**(tags or {}), "codex/rhythm": "manual"})
    waited_since = time.monotonic()
    while True:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in TERMINAL:
            return run_id
        state = run.status.value.lower() if run else "submitted"
        waiting_for = None
        if run is not None and run.status == dg.DagsterRunStatus.QUEUED:
            if not any(info.alive for info in service.process_info(settings) if info.name == "daemon"):
                instance.report_run_canceled(run, "Canceled by `codex consolidate`: the Dagster daemon is not "
                                                  "running, so nothing would ever start this queued run.")
                raise DaemonNotRunning(
                    f"{job_name} was queued (run {run_id[:8]}), but the Dagster daemon is not running, so it would "
                    "never start; the run was canceled. Start it with `codex daemon restart`.")
            waiting_for = "in the daemon's run queue (another run is in progress)"
        else:
            holders = pool_holders(instance, exclude_run_id=run_id)
            if holders and not _own_slots(instance, run_id):
                waiting_for = f"for the memory store, held by {holders_sentence(holders)}"
        if waiting_for is None:
            waited_since = time.monotonic()
        elif time.monotonic() - waited_since > wait_seconds:
            raise PoolWaitTimeout(f"Gave up after {wait_seconds:.0f} s: {job_name} (run {run_id[:8]}) is still "
                                  f"waiting {waiting_for}. See `codex health` and `codex daemon status`.")
        if on_progress is not None:
            if waiting_for is not None:
                on_progress(f"{job_name} {state}: waiting {waiting_for}")
            else:
                steps, _ = _steps(instance, run_id)
                on_progress(f"{job_name} {state}: {len(steps)} steps done")
        time.sleep(1.0)
