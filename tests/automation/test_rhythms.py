"""The rhythms: exactly the catalogue's schedules and sensors, their cadence, and the sensors' decisions."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from codex_dreams.automation.rhythms import BACKLOG_ASSET, CYCLE_KEY_TAG, RHYTHM_TAG

EXPECTED_SCHEDULES = {
    "short_term_memory_schedule": ("*/5 * * * *", "short_term_memory_job"),
    "hippocampal_consolidation_schedule": ("0 * * * *", "hippocampal_consolidation_job"),
    "deep_sleep_schedule": ("0 2-4 * * *", "deep_sleep_job"),
    "rem_sleep_schedule": (["0 */3 * * *", "30 1-22/3 * * *"], "rem_sleep_job"),
    "homeostasis_schedule": ("0 3 * * 0", "homeostasis_job"),
}
EXPECTED_SENSORS = {
    "working_memory_sensor": (30, "working_memory_job"),
    "consolidation_backlog_sensor": (60, "hippocampal_consolidation_job"),
}
# Not a rhythm: the run watchdog (codex_dreams.automation.watchdog) launches no job, it only cleans up.
WATCHDOG_SENSORS = {"run_watchdog_sensor": (60, None)}
T0 = datetime(2026, 11, 25, 0, 10, tzinfo=timezone.utc)  # a Wednesday


@pytest.fixture(scope="module")
def defs():
    from codex_dreams.definitions import build_definitions

    return build_definitions()


def _schedule(defs, name) -> dg.ScheduleDefinition:
    return defs.resolve_schedule_def(name)


def _ticks(schedule: dg.ScheduleDefinition, start: datetime, count: int) -> list[datetime]:
    from dagster._utils.schedules import cron_string_iterator

    crons = schedule.cron_schedule if isinstance(schedule.cron_schedule, list) else [schedule.cron_schedule]
    ticks = set()
    for cron in crons:
        iterator = cron_string_iterator(start.timestamp(), cron, schedule.execution_timezone)
        taken = 0
        while taken < count:
            tick = next(iterator)
            if tick.timestamp() > start.timestamp():
                ticks.add(tick.astimezone(timezone.utc))
                taken += 1
    return sorted(ticks)[:count]


def test_definitions_hold_exactly_the_catalogued_rhythms(defs):
    schedules = {s.name: (s.cron_schedule, s.job_name) for s in defs.schedules}
    sensors = {s.name: (s.minimum_interval_seconds, s.job_name if s.targets else None) for s in defs.sensors}
    assert schedules == EXPECTED_SCHEDULES
    assert sensors == {**EXPECTED_SENSORS, **WATCHDOG_SENSORS}
    for schedule in defs.schedules:
        assert schedule.execution_timezone == "UTC"
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_deep_sleep_runs_at_two_three_and_four(defs):
    ticks = _ticks(_schedule(defs, "deep_sleep_schedule"), T0, 4)
    assert [t.strftime("%d %H:%M") for t in ticks] == ["25 02:00", "25 03:00", "25 04:00", "26 02:00"]


def test_rem_sleep_is_every_90_minutes_all_day(defs):
    ticks = _ticks(_schedule(defs, "rem_sleep_schedule"), datetime(2026, 11, 24, 23, 59, tzinfo=timezone.utc), 17)
    assert ticks[0] == datetime(2026, 11, 25, 0, 0, tzinfo=timezone.utc)
    assert ticks[1] == datetime(2026, 11, 25, 1, 30, tzinfo=timezone.utc)
    assert {b - a for a, b in zip(ticks, ticks[1:])} == {timedelta(minutes=90)}
    assert sum(1 for t in ticks if t.date() == ticks[0].date()) == 16


def test_homeostasis_is_sunday_three_am_and_hippocampal_hourly(defs):
    assert _ticks(_schedule(defs, "homeostasis_schedule"), T0, 2) == [
        datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc), datetime(2026, 12, 6, 3, 0, tzinfo=timezone.utc)]
    hourly = _ticks(_schedule(defs, "hippocampal_consolidation_schedule"), T0, 3)
    assert [t.strftime("%H:%M") for t in hourly] == ["01:00", "02:00", "03:00"]
    five = _ticks(_schedule(defs, "short_term_memory_schedule"), T0, 3)
    assert [t.strftime("%H:%M") for t in five] == ["00:15", "00:20", "00:25"]


def test_timezone_is_configurable(codex_home, monkeypatch):
    from codex_dreams.definitions import build_definitions

    monkeypatch.setenv("CODEX_TIMEZONE", "Europe/Berlin")
    berlin = build_definitions()
    deep = berlin.resolve_schedule_def("deep_sleep_schedule")
    assert deep.execution_timezone == "Europe/Berlin"
    first = _ticks(deep, T0, 1)[0]
    assert first == datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)  # 02:00 in Berlin (UTC+1 in November)


def test_a_schedule_tick_carries_its_rhythm_and_cycle_key(defs):
    schedule = _schedule(defs, "hippocampal_consolidation_schedule")
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(["short_term_memory", "stm_memories"]))
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime(
                2026, 11, 25, 14, 0, tzinfo=timezone.utc)) as ctx:
            data = schedule.evaluate_tick(ctx)
    [request] = data.run_requests
    assert request.tags[RHYTHM_TAG] == "hippocampal_consolidation_schedule"
    assert request.tags[CYCLE_KEY_TAG] == "hippocampal_consolidation_schedule@2026-11-25T14:00+0000"
    assert request.run_key == request.tags[CYCLE_KEY_TAG]


@pytest.mark.parametrize("name, prerequisite", [
    ("short_term_memory_schedule", ["working_memory", "wm_attention"]),
    ("rem_sleep_schedule", ["short_term_memory", "stm_memories"]),
])
def test_a_schedule_skips_until_what_its_job_reads_has_been_built(defs, name, prerequisite):
    """On a fresh install the 5-minute and sleep rhythms tick before any memory went through working memory."""
    schedule = _schedule(defs, name)
    when = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as ctx:
            skipped = schedule.evaluate_tick(ctx)
        instance.report_runless_asset_event(dg.AssetMaterialization(prerequisite))
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as ctx:
            requested = schedule.evaluate_tick(ctx)
    assert not skipped.run_requests and "has not been built yet" in skipped.skip_message
    assert len(requested.run_requests) == 1


# -- sensors -------------------------------------------------------------------------------------------

def _evaluate(sensor: dg.SensorDefinition, instance, cursor=None):
    with dg.build_sensor_context(instance=instance, cursor=cursor, sensor_name=sensor.name) as ctx:
        return sensor.evaluate_tick(ctx)


def test_working_memory_sensor_requests_one_run_per_arrival(defs, settings):
    from codex_dreams.sources.ingest import remember

    sensor = defs.resolve_sensor_def("working_memory_sensor")
    with dg.instance_for_test() as instance:
        empty = _evaluate(sensor, instance)
        assert not empty.run_requests and empty.skip_message == "no memories yet"
        remember("Booked the dentist for Tuesday", settings=settings)
        first = _evaluate(sensor, instance, cursor=empty.cursor)
        assert len(first.run_requests) == 1
        quiet = _evaluate(sensor, instance, cursor=first.cursor)
        assert not quiet.run_requests and "no new memories" in quiet.skip_message

        remember("Lunch with Priya at Kestrel café", settings=settings)
        news = _evaluate(sensor, instance, cursor=first.cursor)
        assert len(news.run_requests) == 1
        assert news.cursor != first.cursor
        assert news.run_requests[0].tags[RHYTHM_TAG] == "working_memory_sensor"
        again = _evaluate(sensor, instance, cursor=news.cursor)
        assert not again.run_requests


def test_working_memory_sensor_skips_while_its_job_is_in_flight(defs, settings):
    from codex_dreams.sources.ingest import remember

    sensor = defs.resolve_sensor_def("working_memory_sensor")
    with dg.instance_for_test() as instance:
        baseline = _evaluate(sensor, instance).cursor
        instance.create_run_for_job(defs.resolve_job_def("working_memory_job"), status=dg.DagsterRunStatus.STARTED)
        remember("A new memory while a run waits", settings=settings)
        busy = _evaluate(sensor, instance, cursor=baseline)
        assert not busy.run_requests
        assert "already queued or running" in busy.skip_message
        assert busy.cursor in (None, baseline)  # the arrival is not forgotten


def _report_backlog(instance, ready: int) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(BACKLOG_ASSET, metadata={"episodes_ready": ready}))


def test_backlog_sensor_requests_one_consolidation_per_backlog(defs):
    sensor = defs.resolve_sensor_def("consolidation_backlog_sensor")
    with dg.instance_for_test() as instance:
        nothing = _evaluate(sensor, instance)
        assert not nothing.run_requests
        _report_backlog(instance, 2)
        below = _evaluate(sensor, instance)
        assert not below.run_requests and "threshold 5" in below.skip_message
        _report_backlog(instance, 7)
        first = _evaluate(sensor, instance)
        assert len(first.run_requests) == 1
        assert first.run_requests[0].tags[RHYTHM_TAG] == "consolidation_backlog_sensor"
        repeat = _evaluate(sensor, instance, cursor=first.cursor)
        assert not repeat.run_requests and "already triggered" in repeat.skip_message
        _report_backlog(instance, 9)
        second = _evaluate(sensor, instance, cursor=first.cursor)
        assert len(second.run_requests) == 1
        assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_backlog_sensor_skips_while_consolidation_runs(defs):
    sensor = defs.resolve_sensor_def("consolidation_backlog_sensor")
    with dg.instance_for_test() as instance:
        _report_backlog(instance, 12)
        instance.create_run_for_job(defs.resolve_job_def("hippocampal_consolidation_job"),
                                    status=dg.DagsterRunStatus.STARTED)
        busy = _evaluate(sensor, instance)
        assert not busy.run_requests and "already queued or running" in busy.skip_message
