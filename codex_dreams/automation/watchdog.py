"""Runs whose process died: found, marked failed and their pool slots freed, so one crash never freezes the rhythms.

A run killed with SIGKILL (power loss, the OOM killer, `kill -9`) never reports its end: Dagster keeps it
`STARTED` and, worse, it keeps its `duckdb_writer` pool slot, so every later run waits for that slot forever.
Dagster's own run monitoring cannot tell for the default run launcher whether a run worker is alive (it only
times out runs that never start and frees the slots of finished runs), so every run records who executes it
(`codex/worker_*` tags: process id, host, process start time) and this module checks those processes:

- `find_dead_runs` lists in-progress runs on this host whose process is gone (or whose pid now belongs to a
  younger process: pids are recycled), and slots still held by runs that already finished;
- `reap_dead_runs` marks each dead run failed with the reason (Dagster's `report_run_failed`) and frees its
  slots and pending steps (`free_concurrency_slots_for_run`, the call Dagster's daemon uses).

It runs before every `codex consolidate` / `codex demo` run, and in the daemon every minute (the
`run_watchdog_sensor`). Runs on another host are never touched: their process cannot be seen from here.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Callable

import dagster as dg
import psutil

from codex_dreams.errors import OperationalError
from codex_dreams.pools import DUCKDB_WRITER_POOL

WORKER_PID_TAG = "codex/worker_pid"
WORKER_HOST_TAG = "codex/worker_host"
WORKER_STARTED_TAG = "codex/worker_started"  # the process's start time (epoch seconds), to detect pid reuse
# A process start time is known to the second or better; a reused pid belongs to a process that started later.
_START_TIME_SLACK_SECONDS = 1.0
_IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def worker_tags() -> dict[str, str]:
    """The tags that say which process executes a run: this one."""
    me = psutil.Process()
    return {WORKER_PID_TAG: str(me.pid), WORKER_HOST_TAG: socket.gethostname(),
            WORKER_STARTED_TAG: f"{me.create_time():.3f}"}


def record_worker(instance: dg.DagsterInstance, run_id: str) -> None:
    """Tag a run with this process as its worker (called by the executor inside the run worker)."""
    instance.add_run_tags(run_id, worker_tags())


@dataclass(frozen=True)
class DeadRun:
    run_id: str
    job_name: str
    status: str
    pid: int | None
    host: str | None
    reason: str

    def sentence(self) -> str:
        who = f"pid {self.pid} on {self.host}" if self.pid else "an unknown process"
        return f"run {self.run_id[:8]} of {self.job_name} ({who}) {self.reason}"


def process_alive(pid: int, started: float | None) -> bool:
    """Whether `pid` is a live process that is the one that started at `started` (if known)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = process.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # it exists; we cannot look closer
    return started is None or created <= started + _START_TIME_SLACK_SECONDS


def _engine_event_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The worker pid Dagster itself logged ("Executing steps in process (pid: N)"), for runs without our tags
    (started by an older version, or by a launcher that bypasses our executor)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50).records
    for record in records:
        event = record.event_log_entry.dagster_event
        metadata = getattr(event.event_specific_data, "metadata", None) or {} if event else {}
        entry = metadata.get("pid")
        if entry is not None:
            try:
                return int(entry.value)
            except (TypeError, ValueError):
                continue
    return None


def _dead_reason(instance: dg.DagsterInstance, record: dg.RunRecord, host: str) -> DeadRun | None:
    run = record.dagster_run
    tags = run.tags
    run_host = tags.get(WORKER_HOST_TAG)
    if run_host is not None and run_host != host:
        return None  # another machine's process: not ours to judge
    pid_text = tags.get(WORKER_PID_TAG)
    if pid_text is not None:
        pid, started = int(pid_text), float(tags.get(WORKER_STARTED_TAG) or 0) or None
    else:
        pid = _engine_event_pid(instance, run.run_id)
        # Without a recorded start time, the process must at least be older than the run.
        started = record.start_time or record.create_timestamp.timestamp()
        if pid is None:
            return None  # not started far enough to know its process; Dagster's start timeout covers it
    if process_alive(pid, started):
        return None
    return DeadRun(run.run_id, run.job_name, run.status.value, pid, run_host or host,
                   "is marked " + run.status.value + " but its process is gone (killed or crashed)")


def find_dead_runs(instance: dg.DagsterInstance, *, host: str | None = None) -> list[DeadRun]:
    """In-progress runs of this host whose worker is gone, and finished runs still holding a pool slot."""
    host = host or socket.gethostname()
    dead = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=_IN_PROGRESS)):
        found = _dead_reason(instance, record, host)
        if found is not None:
            dead.append(found)
    seen = {run.run_id for run in dead}
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        holders = {slot.run_id for slot in storage.get_concurrency_info(DUCKDB_WRITER_POOL).claimed_slots}
        holders |= storage.get_concurrency_run_ids()
        for run_id in sorted(holders - seen):
            run = instance.get_run_by_id(run_id)
            if run is None:
                dead.append(DeadRun(run_id, "?", "DELETED", None, None, "no longer exists but holds a pool slot"))
            elif run.is_finished:
                dead.append(DeadRun(run_id, run.job_name, run.status.value, None, None,
                                    f"finished ({run.status.value}) but still holds a pool slot"))
    return dead


def reap_dead_runs(instance: dg.DagsterInstance, *, log: Callable[[str], None] | None = None) -> list[DeadRun]:
    """Mark every dead run failed (with the reason) and free its pool slots; returns what was cleaned up."""
    dead = find_dead_runs(instance)
    for item in dead:
        run = instance.get_run_by_id(item.run_id)
        if run is not None and not run.is_finished:
            instance.report_run_failed(
                run, f"Marked failed by the Codex Dreams run watchdog: its process (pid {item.pid}) is gone. "
                     "Re-running the job is safe: each cycle applies once (the ledger).")
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(item.run_id)
        if log is not None:
            log(f"Cleaned up {item.sentence()}: marked failed, pool slot freed.")
    return dead


@dataclass(frozen=True)
class SlotHolder:
    run_id: str
    job_name: str
    status: str
    step_key: str


def pool_holders(instance: dg.DagsterInstance, *, exclude_run_id: str | None = None) -> list[SlotHolder]:
    """Who holds the `duckdb_writer` slot right now (other than `exclude_run_id`)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    holders = []
    for slot in storage.get_concurrency_info(DUCKDB_WRITER_POOL).claimed_slots:
        if slot.run_id == exclude_run_id:
            continue
        run = instance.get_run_by_id(slot.run_id)
        holders.append(SlotHolder(slot.run_id, run.job_name if run else "?", run.status.value if run else "?",
                                  slot.step_key))
    return holders


def build_watchdog_sensor(interval_seconds: int = 60) -> dg.SensorDefinition:
    """The daemon's side: every minute, clean up runs whose process died (always on: it only ever frees)."""

    def evaluate(context: dg.SensorEvaluationContext):
        cleaned = reap_dead_runs(context.instance, log=context.log.warning)
        if cleaned:
            return dg.SkipReason("cleaned up " + "; ".join(item.sentence() for item in cleaned))
        return dg.SkipReason("no dead runs")

    return dg.SensorDefinition(
        name="run_watchdog_sensor", evaluation_fn=evaluate, minimum_interval_seconds=interval_seconds,
        description="Finds runs whose process was killed (still marked STARTED, still holding the duckdb_writer "
                    "pool slot), marks them failed and frees their slots, so the rhythms never freeze.",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )


class _WorkerRecordingExecutor(dg.Executor):
    """Dagster's in-process executor that first tags the run with its worker process (see `record_worker`)."""

    def __init__(self, inner: dg.Executor) -> None:
        self._inner = inner

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        record_worker(plan_context.instance, plan_context.run_id)
        yield from self._inner.execute(plan_context, execution_plan)


@dg.executor(name="in_process", config_schema=dg.in_process_executor.config_schema)
def worker_recording_in_process_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """One process per run, steps in order (as `dg.in_process_executor`), recording the worker process."""
    return _WorkerRecordingExecutor(dg.in_process_executor.executor_creation_fn(init_context))


class PoolWaitTimeout(OperationalError):
    """Another run held the store for longer than the caller would wait (exit 1, one sentence)."""


# How long `codex consolidate` waits for another run to release the store before it gives up (exit 1).
DEFAULT_POOL_WAIT_SECONDS = 900.0


def holders_sentence(holders: list[SlotHolder]) -> str:
    return ", ".join(f"run {h.run_id[:8]} of {h.job_name} ({h.status.lower()}, step {h.step_key})" for h in holders)


def wait_for_pool(instance: dg.DagsterInstance, *, timeout_seconds: float = DEFAULT_POOL_WAIT_SECONDS,
                  on_wait: Callable[[str], None] | None = None, poll_seconds: float = 2.0,
                  clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None) -> None:
    """Before a run starts in this process: clean up dead runs, then wait (saying for whom) until no other run
    holds the `duckdb_writer` slot. Raises `PoolWaitTimeout` after `timeout_seconds`."""
    import time

    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    deadline = clock() + timeout_seconds
    while True:
        reap_dead_runs(instance, log=on_wait)
        holders = pool_holders(instance)
        if not holders:
            return
        sentence = holders_sentence(holders)
        if clock() >= deadline:
            raise PoolWaitTimeout(
                f"Gave up after {timeout_seconds:.0f} s waiting for the memory store: the duckdb_writer pool is held "
                f"by {sentence}. See `codex health`; if that run is stuck, stop it in the Dagster UI.")
        if on_wait is not None:
            on_wait(f"Waiting for the memory store: the duckdb_writer pool is held by {sentence}")
        sleep(poll_seconds)
