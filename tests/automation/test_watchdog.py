"""A run killed with SIGKILL never reports its end and keeps its `duckdb_writer` pool slot. The run watchdog
finds it (its recorded worker process is gone), marks it failed and frees the slot, so the next run proceeds;
`codex health` names it until then; a caller waiting for a live holder says for whom and gives up in time."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import psutil
import pytest
from typer.testing import CliRunner

from codex_dreams.automation.watchdog import (
    WORKER_HOST_TAG,
    WORKER_PID_TAG,
    WORKER_STARTED_TAG,
    PoolWaitTimeout,
    build_watchdog_sensor,
    find_dead_runs,
    pool_holders,
    process_alive,
    reap_dead_runs,
    wait_for_pool,
    worker_tags,
)
from codex_dreams.cli.main import app
from codex_dreams.pools import DUCKDB_WRITER_POOL

CODEX = str(Path(sys.executable).with_name("codex"))
runner = CliRunner()


def _instance(settings) -> dg.DagsterInstance:
    from codex_dreams.instance import ensure_instance

    ensure_instance(settings)
    return dg.DagsterInstance.from_config(str(settings.dagster_home_path))


def _fake_started_run(instance: dg.DagsterInstance, tags: dict) -> str:
    """A STARTED run of full_cycle_job holding the pool slot, as a killed (or live) worker leaves it."""
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="full_cycle_job", run_id=run_id, status=dg.DagsterRunStatus.STARTED,
                                   tags=tags))
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default(DUCKDB_WRITER_POOL)
    claim = storage.claim_concurrency_slot(DUCKDB_WRITER_POOL, run_id, "raw_memories")
    assert claim.is_claimed
    return run_id


def _dead_pid() -> tuple[int, float]:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(child.pid).create_time()
    child.wait()
    return child.pid, started


def test_process_alive_tells_a_live_worker_from_a_dead_or_reused_pid():
    me = psutil.Process()
    assert process_alive(me.pid, me.create_time())
    # the same pid, recorded as a process that started long before this one: the pid was reused
    assert not process_alive(me.pid, me.create_time() - 3600)
    pid, started = _dead_pid()
    assert not process_alive(pid, started)


def test_a_dead_run_is_failed_with_its_reason_and_its_slot_freed(settings):
    pid, started = _dead_pid()
    with _instance(settings) as instance:
        host = worker_tags()[WORKER_HOST_TAG]
        dead_id = _fake_started_run(instance, {WORKER_PID_TAG: str(pid), WORKER_HOST_TAG: host,
                                               WORKER_STARTED_TAG: f"{started:.3f}"})
        [found] = find_dead_runs(instance)
        assert found.run_id == dead_id and found.pid == pid
        assert "process is gone" in found.sentence()

        cleaned = reap_dead_runs(instance)
        assert [item.run_id for item in cleaned] == [dead_id]
        run = instance.get_run_by_id(dead_id)
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert pool_holders(instance) == []
        failure = instance.get_records_for_run(dead_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        assert "run watchdog" in failure[0].event_log_entry.dagster_event.message
        assert find_dead_runs(instance) == []  # nothing left to clean


def test_runs_of_another_host_are_left_alone(settings):
    pid, started = _dead_pid()
    with _instance(settings) as instance:
        _fake_started_run(instance, {WORKER_PID_TAG: str(pid), WORKER_HOST_TAG: "another-machine",
                                     WORKER_STARTED_TAG: f"{started:.3f}"})
        assert find_dead_runs(instance) == []


def test_waiting_for_a_live_holder_names_it_and_gives_up_in_bounded_time(settings):
    with _instance(settings) as instance:
        live_id = _fake_started_run(instance, worker_tags())  # this very process: alive
        said: list[str] = []
        now = [0.0]

        def fake_sleep(seconds: float) -> None:
            now[0] += seconds

        with pytest.raises(PoolWaitTimeout) as raised:
            wait_for_pool(instance, timeout_seconds=10, on_wait=said.append, poll_seconds=2.0,
                          clock=lambda: now[0], sleep=fake_sleep)
        assert live_id[:8] in str(raised.value) and "full_cycle_job" in str(raised.value)
        assert said and all(live_id[:8] in line for line in said)
        assert 10 <= now[0] <= 12  # it polled until the deadline, not forever
        assert instance.get_run_by_id(live_id).status == dg.DagsterRunStatus.STARTED  # a live run is never reaped


def test_the_daemon_sensor_cleans_up_dead_runs(settings):
    pid, started = _dead_pid()
    with _instance(settings) as instance:
        dead_id = _fake_started_run(instance, {WORKER_PID_TAG: str(pid), WORKER_HOST_TAG: worker_tags()[WORKER_HOST_TAG],
                                               WORKER_STARTED_TAG: f"{started:.3f}"})
        sensor = build_watchdog_sensor()
        with dg.build_sensor_context(instance=instance, sensor_name=sensor.name) as context:
            result = sensor.evaluate_tick(context)
        assert not result.run_requests and dead_id[:8] in result.skip_message
        assert instance.get_run_by_id(dead_id).status == dg.DagsterRunStatus.FAILURE
        assert pool_holders(instance) == []


def _wait_until(condition, deadline_seconds: float, what: str):
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_run_killed_with_sigkill_does_not_freeze_the_next_run(settings, codex_home):
    """The reported bug, end to end: `codex consolidate --type all` is SIGKILLed while it holds the pool slot;
    health names the dead run; the next `codex consolidate` cleans it up and finishes."""
    from codex_dreams.commands.health import run_health
    from codex_dreams.sources.ingest import remember

    for minute in range(12):
        remember(f"Note {minute}: planning the Lisbon trip with Sam, tiles and Belém.",
                 at=f"2026-11-02T09:{minute:02d}:00Z", settings=settings)
    env = {**os.environ, "CODEX_HOME": str(codex_home), "CODEX_RHYTHMS": "off"}
    killed = subprocess.Popen([CODEX, "consolidate", "--type", "all", "--json"], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with _instance(settings) as instance:
            def holding_run():
                # the run holds the slot in a step after the first one (the run is well under way)
                holders = pool_holders(instance)
                return holders[0].run_id if holders and holders[0].step_key != "raw_memories" else None

            run_id = _wait_until(holding_run, 300, "the full cycle to hold the duckdb_writer slot")
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()

    with _instance(settings) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # what Dagster alone leaves
        assert [holder.run_id for holder in pool_holders(instance)] == [run_id]

    health = run_health(settings)
    assert health["status"] == "unhealthy"
    [named] = [check for check in health["checks"] if run_id[:8] in check["name"]]
    assert "process is gone" in named["detail"] and "codex consolidate" in named["detail"]

    result = runner.invoke(app, ["consolidate", "--type", "working", "--json", "--wait", "120"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "SUCCESS"
    assert f"Cleaned up run {run_id[:8]}" in result.stderr

    with _instance(settings) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert pool_holders(instance) == []
    assert not [c for c in run_health(settings)["checks"] if c["name"].startswith("run.")]
