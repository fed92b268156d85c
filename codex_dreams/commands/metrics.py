"""`codex metrics`: what the memory system did over a period, from the store and the Dagster instance."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from codex_dreams.errors import InputError
from codex_dreams.settings import Settings
from codex_dreams.store import relation_exists

_PERIOD = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# job -> stage shown in the metrics
JOB_STAGES = {
    "working_memory_job": "working_memory",
    "short_term_memory_job": "short_term_memory",
    "hippocampal_consolidation_job": "consolidation",
    "deep_sleep_job": "consolidation",
    "rem_sleep_job": "consolidation",
    "homeostasis_job": "consolidation",
    "full_cycle_job": "full_cycle",
}


class PeriodError(InputError):
    pass


def parse_period(text: str) -> timedelta:
    """'24h', '7d', '30m', '90s', '2w' -> timedelta."""
    match = _PERIOD.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise PeriodError(f"period {text!r} is not like 24h, 7d, 30m or 2w")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{_UNITS[unit]: amount})



# Ledger figures that describe the links after a cycle rather than what it did: reported as the last cycle's.
STATE_AFTER_CYCLE = frozenset({"links_after", "mean_strength_after", "links_before", "mean_before",
                               "mean_after_scaling", "scale_factor", "memories_seen"})


def _readable(value: float) -> float:
    """Floats rounded for people (0.30000000000000004 -> 0.3); integers unchanged."""
    return value if isinstance(value, int) else round(float(value), 4)


def _count(con, schema: str, table: str, where: str, params: list) -> int | None:
    if not relation_exists(con, schema, table):
        return None
    # schema/table/where are fixed strings of this module; values are bound parameters
    return int(con.execute(f'select count(*) from "{schema}"."{table}" where {where}', params).fetchone()[0])


def store_metrics(con, since: datetime) -> dict:
    metrics = {
        "memories_ingested": _count(con, "raw", "memories", "ingested_at >= ?", [since]),
        "memories_enriched": _count(con, "enriched", "memory_enrichment", "enriched_at >= ?", [since]),
        "recalls": _count(con, "long_term_memory", "access_log", "accessed_at >= ?", [since]),
    }
    if relation_exists(con, "working_memory", "wm_attention"):
        metrics["memories_attended"] = int(con.execute(
            "select count(*) from working_memory.wm_attention a join raw.memories m on m.id = a.memory_id "
            "where a.attended and m.ingested_at >= ?", [since]).fetchone()[0])
    if relation_exists(con, "short_term_memory", "stm_episodes"):
        metrics["episodes"] = int(con.execute(
            "select count(distinct s.episode_id) from short_term_memory.stm_memories s "
            "join raw.memories m on m.id = s.memory_id where m.ingested_at >= ?", [since]).fetchone()[0])
    sums: dict[str, float] = {}
    last: dict = {}
    if relation_exists(con, "consolidation", "cycle_ledger"):
        for cycle_type, cycle_key, counts in con.execute(
                "select cycle_type, cycle_key, counts from consolidation.cycle_ledger where finished_at >= ? "
                "order by finished_at, cycle_key", [since]).fetchall():
            values = json.loads(counts) if isinstance(counts, str) else (counts or {})
            state = {"cycle_key": cycle_key}
            for key, value in values.items():
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                if key in STATE_AFTER_CYCLE:
                    state[key] = _readable(value)
                else:
                    sums[key] = sums.get(key, 0) + value
            last[cycle_type] = state
        metrics["cycles"] = int(con.execute(
            "select count(*) from consolidation.cycle_ledger where finished_at >= ?", [since]).fetchone()[0])
    # one meaning per figure: what the cycles did is summed over the period; a state (link count, mean strength,
    # scale factor) is the last cycle's of each type, never added up
    metrics["consolidation_sums"] = {key: _readable(value) for key, value in sums.items()}
    metrics["consolidation_last_cycle"] = last
    if relation_exists(con, "monitoring", "memory_pipeline_metrics"):
        cursor = con.execute("select * from monitoring.memory_pipeline_metrics")
        columns = [d[0] for d in cursor.description]
        metrics["pipeline"] = [dict(zip(columns, row)) for row in cursor.fetchall()]
    return metrics


def run_metrics(instance, since: datetime) -> dict:
    import dagster as dg

    stages: dict[str, dict] = {}
    records = instance.get_run_records(filters=dg.RunsFilter(created_after=since), limit=10_000)
    for record in records:
        job = record.dagster_run.job_name
        stage = JOB_STAGES.get(job, job)
        entry = stages.setdefault(stage, {"runs": 0, "succeeded": 0, "failed": 0, "durations": []})
        entry["runs"] += 1
        status = record.dagster_run.status
        if status == dg.DagsterRunStatus.SUCCESS:
            entry["succeeded"] += 1
        elif status == dg.DagsterRunStatus.FAILURE:
            entry["failed"] += 1
        if record.start_time and record.end_time:
            entry["durations"].append(record.end_time - record.start_time)
    for entry in stages.values():
        durations = sorted(entry.pop("durations"))
        entry["mean_seconds"] = round(sum(durations) / len(durations), 3) if durations else None
        entry["max_seconds"] = round(durations[-1], 3) if durations else None
    return stages


def collect_metrics(settings: Settings, period: str) -> dict:
    import dagster as dg

    from codex_dreams.instance import ensure_instance
    from codex_dreams.store import StoreBusyError, connect

    span = parse_period(period)
    now = datetime.now(timezone.utc)
    since = (now - span).replace(tzinfo=None)
    result: dict = {"period": period, "since": since.isoformat() + "Z", "until": now.isoformat()}
    if settings.database_path.exists():
        try:
            con = connect(settings.database_path, read_only=True, extension_dir=settings.extension_dir,
                          wait_seconds=5.0)
        except StoreBusyError as error:
            result["store"] = {"error": str(error)}
        else:
            try:
                result["store"] = store_metrics(con, since)
            finally:
                con.close()
    else:
        result["store"] = {}
    ensure_instance(settings)
    with dg.DagsterInstance.get() as instance:
        result["runs"] = run_metrics(instance, now - span)
    return result
