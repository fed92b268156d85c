"""The consolidation cycles as plain functions over a DuckDB connection (the Dagster assets are thin wrappers).

Every cycle runs as ONE transaction that also inserts its row into `consolidation.cycle_ledger`
(primary key `(cycle_type, cycle_key)`): a cycle applies exactly once per key. A re-run with the same key finds
the ledger row and changes nothing; a failure anywhere rolls back every statement, the ledger row included,
so the next run applies the whole cycle once. All updates are set-based SQL; only the embedding similarities
(REM, deep sleep) are computed in numpy and inserted from an Arrow table.

Time: a cycle works at its `as_of`, an event-time instant (naive UTC) named by its key, and sees only
memories with `created_at < as_of` (see `cycle_for`). The long form, with the formulas, is docs/stages.md.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from codex_dreams.enrichment.embeddings import stored_unit_rows

CYCLE_TYPES = ("hippocampal", "deep_sleep", "rem_sleep", "homeostasis")
CONSOLIDATING_CYCLES = ("hippocampal", "deep_sleep")  # the cycles that replay, forget and transfer
CYCLE_KEY_TAG = "codex/cycle_key"  # '<cycle_type>:<bucket>', set by the schedules (or by hand)
AS_OF_TAG = "codex/as_of"  # an ISO 8601 instant; each cycle of the run takes its bucket of it
REM_PERIOD = timedelta(minutes=90)
HOUR = timedelta(hours=1)

STM_MEMORIES = "short_term_memory.stm_memories"
STM_EPISODES = "short_term_memory.stm_episodes"
STM_COACTIVATION = "short_term_memory.stm_coactivation"
ENRICHMENT = "enriched.memory_enrichment"

LEDGER = "consolidation.cycle_ledger"
ASSOCIATIONS = "consolidation.associations"
MEMORY_CONSOLIDATION = "consolidation.memory_consolidation"


class MissingUpstream(RuntimeError):
    """A table a cycle reads (short-term memory) does not exist yet."""


# ---------------------------------------------------------------------------------------------------------
# Cycle keys


@dataclass(frozen=True)
class Cycle:
    cycle_type: str
    cycle_key: str
    as_of: datetime  # naive UTC; the cycle sees memories created strictly before it
    source: str = "explicit"  # explicit | tag | as_of tag | watermark


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def cycle_for(cycle_type: str, moment: datetime, source: str = "explicit") -> Cycle:
    """The cycle of `cycle_type` whose tick is the latest one at or before `moment`.

    hippocampal, deep_sleep: hourly ticks, key 'hippocampal:2026-11-25T14', as_of 14:00.
    rem_sleep: 90-minute ticks from midnight (00:00, 01:30, ... 22:30), key 'rem_sleep:2026-11-25T13:30'.
    homeostasis: ISO weeks, key 'homeostasis:2026-W48', as_of Sunday 03:00 of that week.
    An aware `moment` is converted to UTC first (a schedule's local 2 AM becomes its UTC hour).
    """
    if cycle_type not in CYCLE_TYPES:
        raise ValueError(f"unknown cycle type {cycle_type!r} (one of {', '.join(CYCLE_TYPES)})")
    moment = _naive_utc(moment)
    if cycle_type in ("hippocampal", "deep_sleep"):
        tick = moment.replace(minute=0, second=0, microsecond=0)
        label = tick.strftime("%Y-%m-%dT%H")
    elif cycle_type == "rem_sleep":
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        tick = midnight + REM_PERIOD * ((moment - midnight) // REM_PERIOD)
        label = tick.strftime("%Y-%m-%dT%H:%M")
    else:
        year, week, _ = moment.isocalendar()
        tick = datetime.fromisocalendar(year, week, 7).replace(hour=3)
        label = f"{year}-W{week:02d}"
    return Cycle(cycle_type, f"{cycle_type}:{label}", tick, source)


_KEY_PATTERNS = {
    "hippocampal": (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}$"), "%Y-%m-%dT%H"),
    "deep_sleep": (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}$"), "%Y-%m-%dT%H"),
    "rem_sleep": (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$"), "%Y-%m-%dT%H:%M"),
}


def parse_cycle_key(key: str, source: str = "explicit") -> Cycle:
    """'hippocampal:2026-11-25T14' -> Cycle; ValueError with the expected form when it does not parse."""
    cycle_type, _, label = key.partition(":")
    if cycle_type not in CYCLE_TYPES:
        raise ValueError(f"cycle key {key!r} must start with one of {', '.join(CYCLE_TYPES)} and a colon")
    try:
        if cycle_type == "homeostasis":
            match = re.fullmatch(r"(\d{4})-W(\d{2})", label)
            if not match:
                raise ValueError
            moment = datetime.fromisocalendar(int(match[1]), int(match[2]), 7).replace(hour=3)
        else:
            pattern, fmt = _KEY_PATTERNS[cycle_type]
            if not pattern.match(label):
                raise ValueError
            moment = datetime.strptime(label, fmt)
    except ValueError:
        example = cycle_for(cycle_type, datetime(2026, 11, 25, 14, 0)).cycle_key
        raise ValueError(f"cycle key {key!r} is not of the form {example!r}") from None
    cycle = cycle_for(cycle_type, moment, source)
    if cycle.cycle_key != key:
        raise ValueError(f"cycle key {key!r} is not on the {cycle_type} grid (nearest: {cycle.cycle_key!r})")
    return cycle


def derived_cycle(cycle_type: str, watermark: datetime) -> Cycle:
    """The default cycle after the event-time watermark (the latest memory): the first tick after it, so the
    latest memory is included. Re-running without new memories derives the same key and is a no-op."""
    period = {"rem_sleep": REM_PERIOD, "homeostasis": timedelta(0)}.get(cycle_type, HOUR)
    if cycle_type == "homeostasis":
        return cycle_for(cycle_type, watermark, "watermark")
    return cycle_for(cycle_type, watermark + period, "watermark")


def _parse_moment(text: str) -> datetime | None:
    text = text.strip()
    for candidate in (text.replace("Z", "+00:00"), text):
        try:
            return datetime.fromisoformat(candidate)
        except ValueError:
            pass
    for fmt in ("%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    return None


def cycle_from_tag(cycle_type: str, tag: str, watermark: datetime | None) -> Cycle | None:
    """The cycle a `codex/cycle_key` tag names, in any of the forms the rhythms use:

    - '<cycle_type>:<bucket>' (e.g. 'hippocampal:2026-11-25T14'): that cycle; for another cycle type of the
      same run, the bucket of the tag's time;
    - '<rhythm>@<time>' (a schedule's tick, e.g. 'hippocampal_consolidation_schedule@2026-11-25T14:00+0000'):
      the cycle of the tick, converted to UTC;
    - '<rhythm>@<marker>' (a sensor's request, the marker not a time): a cycle of its own, key
      '<cycle_type>:<tag>', at the tick after the watermark, so a retried request applies once and does not
      take the key of the next scheduled cycle. None when there are no memories.
    """
    head, sep, _ = tag.partition(":")
    if sep and head in CYCLE_TYPES:
        tagged = parse_cycle_key(tag, "tag")
        return tagged if tagged.cycle_type == cycle_type else cycle_for(cycle_type, tagged.as_of, "tag")
    name, at, marker = tag.rpartition("@")
    if not at or not name:
        raise ValueError(f"tag {CYCLE_KEY_TAG}={tag!r} is neither '<cycle_type>:<bucket>' nor '<rhythm>@<time>'")
    moment = _parse_moment(marker)
    if moment is not None:
        return cycle_for(cycle_type, moment, "schedule tag")
    if watermark is None:
        return None
    derived = derived_cycle(cycle_type, watermark)
    return Cycle(cycle_type, f"{cycle_type}:{tag}", derived.as_of, "sensor tag")


def resolve_cycle(cycle_type: str, tags: Mapping[str, str], watermark: datetime | None) -> Cycle | None:
    """The cycle a run applies: from the `codex/cycle_key` tag (`cycle_from_tag`), else the `codex/as_of` tag
    (the bucket of that instant), else derived from the watermark (None when there are no memories)."""
    key = (tags or {}).get(CYCLE_KEY_TAG)
    if key:
        return cycle_from_tag(cycle_type, key, watermark)
    as_of = (tags or {}).get(AS_OF_TAG)
    if as_of:
        moment = _parse_moment(as_of)
        if moment is None:
            raise ValueError(f"tag {AS_OF_TAG}={as_of!r} is not an ISO 8601 date-time")
        return cycle_for(cycle_type, moment, "as_of tag")
    if watermark is None:
        return None
    return derived_cycle(cycle_type, watermark)


def event_watermark(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The latest event time among live memories."""
    return con.execute("select max(created_at) from raw.memories where deleted_at is null").fetchone()[0]


# ---------------------------------------------------------------------------------------------------------
# The ledger


@dataclass
class CycleResult:
    cycle: Cycle
    applied: bool  # False: the key was already in the ledger, nothing changed
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "applied" if self.applied else "skipped: already applied"


def _jsonable(params: Mapping) -> dict:
    return {name: (value if isinstance(value, (int, float, str, bool, type(None))) else str(value))
            for name, value in params.items()}


def run_in_ledger(con: duckdb.DuckDBPyConnection, cycle: Cycle, params: Mapping,
                  body: Callable[[duckdb.DuckDBPyConnection], dict], *, run_id: str | None = None) -> CycleResult:
    """Run `body` and the ledger insert in one transaction, unless the ledger already holds the key."""
    started_wall = datetime.now(timezone.utc).replace(tzinfo=None)
    started = time.perf_counter()
    con.execute("begin transaction")
    try:
        done = con.execute(f"select counts from {LEDGER} where cycle_type = ? and cycle_key = ?",
                           [cycle.cycle_type, cycle.cycle_key]).fetchone()
        if done is not None:
            con.execute("rollback")
            return CycleResult(cycle, False, json.loads(done[0]), time.perf_counter() - started)
        counts = body(con)
        counts["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        con.execute(
            f"insert into {LEDGER} (cycle_type, cycle_key, as_of, started_at, finished_at, counts, params, run_id) "
            "values (?, ?, ?, ?, ?, ?, ?, ?)",
            [cycle.cycle_type, cycle.cycle_key, cycle.as_of, started_wall,
             datetime.now(timezone.utc).replace(tzinfo=None), json.dumps(counts), json.dumps(_jsonable(params)),
             run_id],
        )
        con.execute("commit")
    except BaseException:
        try:
            con.execute("rollback")
        except duckdb.Error:
            pass
        raise
    return CycleResult(cycle, True, counts, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------------------
# Shared steps


def _sql(con: duckdb.DuckDBPyConnection, statement: str, **values):
    """Execute with named $parameters, passing only those the statement uses."""
    used = {name: value for name, value in values.items() if f"${name}" in statement}
    return con.execute(statement, used) if used else con.execute(statement)


def _affected(con: duckdb.DuckDBPyConnection, statement: str, **values) -> int:
    row = _sql(con, statement, **values).fetchone()
    return int(row[0]) if row else 0


def _table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    from codex_dreams.store import relation_exists

    return relation_exists(con, *qualified.split("."))


def _require_stm(con: duckdb.DuckDBPyConnection) -> None:
    missing = [name for name in (STM_MEMORIES, STM_EPISODES, STM_COACTIVATION) if not _table_exists(con, name)]
    if missing:
        raise MissingUpstream(
            f"{', '.join(missing)} not built yet: materialize the short_term_memory assets before consolidating"
        )


def _stage_memories(con: duckdb.DuckDBPyConnection, as_of: datetime) -> None:
    """_c_mem: short-term memories the cycle may see (created before as_of), strengths clamped to [0, 1]."""
    _sql(con, f"""
        create or replace temp table _c_mem as
        select memory_id, episode_id, created_at,
               least(1.0, greatest(0.0, coalesce(encoding_strength, 0.0))) as encoding_strength,
               least(1.0, greatest(0.0, coalesce(emotional_salience, 0.0))) as emotional_salience
        from {STM_MEMORIES}
        where created_at < $as_of
    """, as_of=as_of)


def _select_replay(con: duckdb.DuckDBPyConnection, as_of: datetime, budget: int, recency_hours: float,
                   min_priority: float) -> None:
    """_c_replay: the `budget` episodes of highest priority = salience x strength x recency at as_of, among
    those with priority >= replay_min_priority (replay favours recent experience: an average episode drops
    out after about three days).

    strength = mean encoding strength of the episode's memories seen so far; recency =
    exp(-hours since its latest memory / replay_recency_hours). Ties go to the lower episode id.
    """
    _sql(con, f"""
        create or replace temp table _c_replay as
        with seen as (
            select episode_id, avg(encoding_strength) as strength, max(created_at) as last_at
            from _c_mem where episode_id is not null group by episode_id
        ),
        scored as (
            select seen.episode_id,
                   least(1.0, greatest(0.0, coalesce(e.salience, 0.0))) * seen.strength
                   * exp(-(epoch($as_of) - epoch(seen.last_at)) / 3600.0 / $recency_hours) as priority
            from seen left join {STM_EPISODES} as e on e.episode_id = seen.episode_id
        )
        select episode_id, priority from scored
        where priority >= $min_priority
        order by priority desc, episode_id
        limit $budget
    """, as_of=as_of, budget=int(budget), recency_hours=float(recency_hours), min_priority=float(min_priority))


def _register_memories(con: duckdb.DuckDBPyConnection, cycle: Cycle, initial) -> int:
    """_c_new: memories no cycle has seen before; they get a memory_consolidation row whose consolidation
    strength starts at initial_consolidation * encoding_strength (the hippocampal trace laid down at encoding;
    replay consolidates the rest)."""
    con.execute(f"""
        create or replace temp table _c_new as
        select m.memory_id, m.episode_id, m.encoding_strength from _c_mem as m
        anti join {MEMORY_CONSOLIDATION} as mc on mc.memory_id = m.memory_id
    """)
    return _affected(con, f"""
        insert into {MEMORY_CONSOLIDATION} (memory_id, episode_id, first_seen_at, first_seen_cycle_key,
                                            consolidation_strength)
        select memory_id, episode_id, $as_of, $key, least(1.0, greatest(0.0, $initial * encoding_strength))
        from _c_new
    """, as_of=cycle.as_of, key=cycle.cycle_key, initial=initial)


def _replay(con: duckdb.DuckDBPyConnection, cycle: Cycle, rate) -> int:
    """Replay strengthens each memory of a replayed episode toward 1:
    c <- c + rate * encoding_strength * (1 + emotional_salience) * (1 - c), capped at 1."""
    return _affected(con, f"""
        update {MEMORY_CONSOLIDATION} as mc
        set consolidation_strength = least(1.0, greatest(0.0, mc.consolidation_strength
                + $rate * m.encoding_strength * (1 + m.emotional_salience) * (1 - mc.consolidation_strength))),
            replay_count = mc.replay_count + 1,
            last_replayed_at = $as_of,
            last_replay_cycle_key = $key,
            episode_id = m.episode_id
        from _c_mem as m join _c_replay as r on r.episode_id = m.episode_id
        where mc.memory_id = m.memory_id
    """, rate=rate, as_of=cycle.as_of, key=cycle.cycle_key)


def _stage_reactivated_pairs(con: duckdb.DuckDBPyConnection) -> int:
    """_c_pairs: pairs reactivated in this cycle, with their co-activation evidence.

    Reactivated = new evidence (either memory is new to consolidation) or replayed together (both in a replayed
    episode). evidence = STM co-activation count + replays of the pair (min of the two memories' replay counts
    when they share an episode).
    """
    # every reactivated pair has a new or replayed memory: the co-activation counts are aggregated for the
    # pairs of those only (filtered below the view's aggregate), not for every pair of the store
    con.execute("""
        create or replace temp table _c_focus as
        select memory_id from _c_new
        union
        select m.memory_id from _c_mem as m semi join _c_replay as r on r.episode_id = m.episode_id
    """)
    con.execute(f"""
        create or replace temp table _c_pairs as
        with pairs as (
            select least(memory_a, memory_b) as memory_a, greatest(memory_a, memory_b) as memory_b,
                   max(coalesce(window_coactivations, 0)) as window_coactivations,
                   max(coalesce(coactivation_count, 0)) as coactivation_count
            from {STM_COACTIVATION}
            where memory_a <> memory_b
              and (memory_a in (select memory_id from _c_focus) or memory_b in (select memory_id from _c_focus))
            group by 1, 2
        )
        select p.memory_a, p.memory_b, p.window_coactivations,
               p.coactivation_count + case when ma.episode_id = mb.episode_id
                                           then least(ca.replay_count, cb.replay_count) else 0 end as evidence,
               sqrt(ma.encoding_strength * mb.encoding_strength) as encoding
        from pairs as p
        join _c_mem as ma on ma.memory_id = p.memory_a
        join _c_mem as mb on mb.memory_id = p.memory_b
        join {MEMORY_CONSOLIDATION} as ca on ca.memory_id = p.memory_a
        join {MEMORY_CONSOLIDATION} as cb on cb.memory_id = p.memory_b
        where p.memory_a in (select memory_id from _c_new)
           or p.memory_b in (select memory_id from _c_new)
           or (ma.episode_id = mb.episode_id and ma.episode_id in (select episode_id from _c_replay))
    """)
    return con.execute("select count(*) from _c_pairs").fetchone()[0]


def _hebbian(con: duckdb.DuckDBPyConnection, cycle: Cycle, eta, threshold, weak) -> dict:
    """Hebbian learning on the reactivated pairs.

    existing link, evidence >= threshold: w <- min(1, w * (1 + eta))
    existing link, evidence <  threshold: unchanged, but reactivated (spared from forgetting)
    new pair,      evidence >= threshold: w0 = (1 - (1 - eta)^evidence) * sqrt(enc_a * enc_b)
        (each co-activation an LTP step w <- w + eta (1 - w) from 0, scaled by how well both were encoded);
        type hebbian when they shared a working-memory window, else temporal (same episode, in sequence).
        Pairs whose w0 would be below the pruning threshold do not form a link.
    """
    values = dict(eta=eta, threshold=threshold, weak=weak, as_of=cycle.as_of, key=cycle.cycle_key)
    strengthened = _affected(con, f"""
        update {ASSOCIATIONS} as a
        set strength = least(1.0, a.strength * (1 + $eta)),
            coactivations = r.evidence, reactivations = a.reactivations + 1, cycles_since_reactivation = 0,
            last_reactivated_at = $as_of, updated_at = $as_of, updated_cycle_key = $key
        from _c_pairs as r
        where a.memory_a = r.memory_a and a.memory_b = r.memory_b and r.evidence >= $threshold
    """, **values)
    refreshed = _affected(con, f"""
        update {ASSOCIATIONS} as a
        set coactivations = r.evidence, cycles_since_reactivation = 0,
            last_reactivated_at = $as_of, updated_at = $as_of, updated_cycle_key = $key
        from _c_pairs as r
        where a.memory_a = r.memory_a and a.memory_b = r.memory_b and r.evidence < $threshold
    """, **values)
    created = _affected(con, f"""
        insert into {ASSOCIATIONS} (memory_a, memory_b, strength, link_type, coactivations, created_at, updated_at,
                                    last_reactivated_at, created_cycle_key, updated_cycle_key)
        select memory_a, memory_b, w0, link_type, evidence, $as_of, $as_of, $as_of, $key, $key
        from (
            select r.*, least(1.0, (1 - pow(greatest(0.0, 1 - $eta), r.evidence)) * r.encoding) as w0,
                   case when r.window_coactivations > 0 then 'hebbian' else 'temporal' end as link_type
            from _c_pairs as r
            anti join {ASSOCIATIONS} as a on a.memory_a = r.memory_a and a.memory_b = r.memory_b
            where r.evidence >= $threshold
        )
        where w0 >= $weak
    """, **values)
    return {"strengthened": strengthened, "refreshed": refreshed, "created": created}


def decayed_strength_sql(strength: str, updated_at: str, rate: str) -> str:
    """Forgetting on event time (the one formula; DESIGN principle 6): a link last set at `updated_at` holds
    w * rate^(dt / forgetting_period_hours) at the cycle's as_of, dt the event time in between (never
    negative: a cycle older than the link's last update changes nothing). Hourly cycles, daily cycles and one
    cycle after a bulk import therefore give the same strength: rate^(a/p) * rate^(b/p) = rate^((a+b)/p)."""
    return (f"({strength} * pow({rate}, greatest(0.0, epoch($as_of) - epoch({updated_at})) / 3600.0 "
            f"/ $period_hours))")


def _forget(con: duckdb.DuckDBPyConnection, cycle: Cycle, rate, cortical_rate, period_hours) -> int:
    """Links this cycle did not reactivate fade by the event time since their last update: rate
    gradual_forgetting_rate per forgetting_period_hours, or cortical_forgetting_rate when both memories are
    already in long-term memory (consolidated cortical traces fade slowly). Brought to as_of, so a second cycle
    at the same event time forgets nothing more."""
    return _affected(con, f"""
        update {ASSOCIATIONS} as a
        set strength = {decayed_strength_sql("a.strength", "a.updated_at", "f.rate")},
            cycles_since_reactivation = a.cycles_since_reactivation + 1,
            updated_at = greatest(a.updated_at, $as_of), updated_cycle_key = $key
        from (
            select l.memory_a, l.memory_b,
                   case when ca.consolidated_at is not null and cb.consolidated_at is not null
                        then $cortical_rate else $rate end as rate
            from {ASSOCIATIONS} as l
            left join {MEMORY_CONSOLIDATION} as ca on ca.memory_id = l.memory_a
            left join {MEMORY_CONSOLIDATION} as cb on cb.memory_id = l.memory_b
            where l.updated_cycle_key <> $key
        ) as f
        where a.memory_a = f.memory_a and a.memory_b = f.memory_b
    """, rate=rate, cortical_rate=cortical_rate, as_of=cycle.as_of, key=cycle.cycle_key,
        period_hours=float(period_hours))


# Pruning more links than this (and than a fifth of them) rebuilds the table instead of deleting rows: DuckDB
# deletes from a primary-key index row by row (83 s for 970k of 1M links here), while copying the survivors
# into a new table and swapping it in takes 0.1 s. A long gap in event time (a week offline, an old archive)
# makes forgetting prune most links at once.
PRUNE_REBUILD_MIN = 10_000


def _prune(con: duckdb.DuckDBPyConnection, weak) -> int:
    doomed, total = _sql(con, f"select count(*) filter (where strength < $weak), count(*) from {ASSOCIATIONS}",
                         weak=weak).fetchone()
    if doomed <= max(PRUNE_REBUILD_MIN, total // 5):
        return _affected(con, f"delete from {ASSOCIATIONS} where strength < $weak", weak=weak)
    schema, table = ASSOCIATIONS.split(".")
    ddl = con.execute("select sql from duckdb_tables() where schema_name = ? and table_name = ?",
                      [schema, table]).fetchone()[0]
    survivors = f"{ASSOCIATIONS}_pruned"
    # the same definition (columns, defaults, primary key) under another name; identifiers are the module's own
    con.execute(ddl.replace(f"{ASSOCIATIONS}(", f"{survivors}(", 1))
    _sql(con, f"insert into {survivors} select * from {ASSOCIATIONS} where strength >= $weak", weak=weak)
    con.execute(f"drop table {ASSOCIATIONS}")
    con.execute(f"alter table {survivors} rename to {table}")
    return int(doomed)


def _transfer(con: duckdb.DuckDBPyConnection, cycle: Cycle, threshold) -> int:
    """Memories whose consolidation strength reached the threshold move to long-term memory (once).
    The threshold is read as a number once, in the transaction (a value that is not a number fails the cycle
    here, whatever the data, and rolls everything back)."""
    threshold = _sql(con, "select cast($threshold as double)", threshold=threshold).fetchone()[0]
    return _affected(con, f"""
        update {MEMORY_CONSOLIDATION}
        set consolidated_at = $as_of, consolidated_cycle_key = $key
        where consolidated_at is null and consolidation_strength >= $threshold
    """, threshold=threshold, as_of=cycle.as_of, key=cycle.cycle_key)


def _link_stats(con: duckdb.DuckDBPyConnection) -> dict:
    links, mean = con.execute(f"select count(*), avg(strength) from {ASSOCIATIONS}").fetchone()
    return {"links_after": int(links), "mean_strength_after": round(float(mean), 6) if mean is not None else None}


def _drop_temp(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    for name in names:
        con.execute(f"drop table if exists {name}")


# ---------------------------------------------------------------------------------------------------------
# Embedding candidates (REM creative links, deep-sleep semantic links)


def _stage_terms(con: duckdb.DuckDBPyConnection, members: str) -> None:
    """_c_terms: the topics and entities (lower case, sorted) of the staged memories among `members` (a relation
    with a memory_id column), for naming links: only the memories of candidate links, not every staged one."""
    con.execute(f"""
        create or replace temp table _c_terms as
        select s.memory_id,
               list_sort(list_distinct(list_transform(
                   coalesce(s.topics, []::varchar[]) || coalesce(s.entities, []::varchar[]), t -> lower(t)))) as terms
        from {STM_MEMORIES} as s
        semi join _c_mem as m on m.memory_id = s.memory_id
        semi join {members} as wanted on wanted.memory_id = s.memory_id
    """)


class _EmbeddingCache:
    """The unit vectors of the chosen enrichment rows, kept in this process between calls: deep sleep, REM and the
    long-term clusters each need them, and a run executes its steps in one process. A call reads only a version
    number per chosen row and fetches the vectors of rows that are new or changed since the last call, so the
    work follows what was enriched, not the size of the store. One store and model at a time; vectors live in
    one matrix per dimension, rows appended as they come (compacted when half of them are stale)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clear(None)

    def _clear(self, source: tuple | None) -> None:
        self._source = source
        self._versions: dict[str, int] = {}
        self._row_of: dict[str, tuple[int, int]] = {}  # memory id -> (dimension, row in that matrix)
        self._matrices: dict[int, np.ndarray] = {}

    def lookup(self, con: duckdb.DuckDBPyConnection, enrichment_model: str
               ) -> tuple[dict[str, tuple[int, int]], dict[int, np.ndarray]]:
        """(memory id -> (dimension, row), dimension -> matrix of unit rows) for every memory with a vector.
        Both are the cache's own: read them, do not keep them across calls."""
        # an in-memory database has no path that tells one from another: nothing is kept for it
        database = con.execute(
            "select path from duckdb_databases() where database_name = current_database()").fetchone()[0]
        # chosen over the key columns (memory_id, model), as the dbt macro chosen_enrichment does; a row's vector
        # never changes without its enriched_at, content hash, embedding model or dimension (enrichment.cache)
        chosen = _sql(con, f"""
            select memory_id, model,
                   hash(model, enriched_at, content_hash, embedding_model, embedding_dim) as version
            from {ENRICHMENT}
            where embedding_dim > 0
            qualify row_number() over (
                partition by memory_id order by coalesce(model = $model, false) desc, enriched_at desc, model) = 1
        """, model=enrichment_model).to_arrow_table()
        ids = chosen.column("memory_id").to_pylist()
        versions = dict(zip(ids, chosen.column("version").to_pylist()))
        with self._lock:
            if database is None or self._source != (database, enrichment_model):
                self._clear((database, enrichment_model))
            changed = [i for i, memory_id in enumerate(ids) if self._versions.get(memory_id) != versions[memory_id]]
            # gone or changed: forgotten first, so a failed fetch below leaves them to be fetched next time
            for memory_id in (self._versions.keys() - versions.keys()) | {ids[i] for i in changed}:
                self._versions.pop(memory_id, None)
                self._row_of.pop(memory_id, None)
            if changed:
                wanted = chosen.select(["memory_id", "model"]).take(pa.array(changed))
                con.register("_c_embedding_rows", wanted)
                try:
                    fetched = con.execute(f"""
                        select e.memory_id, e.embedding from {ENRICHMENT} as e
                        semi join _c_embedding_rows as w on w.memory_id = e.memory_id and w.model = e.model
                    """).to_arrow_table()
                finally:
                    con.unregister("_c_embedding_rows")
                fetched_ids = fetched.column("memory_id").to_pylist()
                self._append(fetched_ids, fetched.column("embedding").combine_chunks())
                self._versions.update((memory_id, versions[memory_id]) for memory_id in fetched_ids)
            return self._row_of, self._matrices

    def _append(self, ids: list[str], vectors: pa.ListArray) -> None:
        lengths = pc.fill_null(pc.list_value_length(vectors), 0).to_numpy(zero_copy_only=False)
        for dim in (int(d) for d in np.unique(lengths) if d > 0):  # an empty vector compares with nothing
            keep = lengths == dim
            rows = stored_unit_rows(vectors.filter(pa.array(keep)))
            old = self._matrices.get(dim, np.zeros((0, dim), dtype=np.float32))
            live = sorted(row for d, row in self._row_of.values() if d == dim)
            if len(live) < len(old) // 2:  # mostly stale rows: keep the live ones only
                remap = {row: i for i, row in enumerate(live)}
                old = old[live]
                self._row_of = {m: (d, remap[r]) if d == dim else (d, r) for m, (d, r) in self._row_of.items()}
            self._matrices[dim] = np.concatenate([old, rows.reshape(-1, dim)])
            added = [memory_id for memory_id, kept in zip(ids, keep) if kept]
            self._row_of.update((memory_id, (dim, len(old) + row)) for row, memory_id in enumerate(added))


_EMBEDDINGS = _EmbeddingCache()


def memory_embeddings(con: duckdb.DuckDBPyConnection, enrichment_model: str | None = None,
                      members_sql: str = "select memory_id, episode_id from _c_mem where episode_id is not null"
                      ) -> tuple[list[str], list[str], np.ndarray]:
    """(memory ids, episode ids, unit vectors [n, d]) of the memories `members_sql` selects (memory_id,
    episode_id) that have an embedding, ordered by memory id; by default the staged memories of this cycle.

    One enrichment row per memory, in the order of the dbt macro `preferred_enrichment_order` (the model named by
    the dbt var `enrichment_model` if set, else the latest enrichment). Vectors of another dimension than the
    dominant one (a model switch in progress) are left out.
    """
    row_of, matrices = _EMBEDDINGS.lookup(con, enrichment_model or "")
    members = _sql(con, f"select memory_id, episode_id from ({members_sql}) order by memory_id").to_arrow_table()
    found = [(memory_id, episode_id, row_of[memory_id]) for memory_id, episode_id
             in zip(members.column("memory_id").to_pylist(), members.column("episode_id").to_pylist())
             if memory_id in row_of]
    if not found:
        return [], [], np.zeros((0, 0), dtype=np.float32)
    dims = [place[0] for _, _, place in found]
    dim = max(set(dims), key=lambda d: (dims.count(d), -d))  # one embedding space: the dominant dimension
    found = [member for member in found if member[2][0] == dim]
    matrix = matrices[dim][[place[1] for _, _, place in found]]
    return [m[0] for m in found], [m[1] for m in found], matrix


def _similar_pairs(con: duckdb.DuckDBPyConnection, seed_ids: set[str], low: float, high: float,
                   *, cross_episode: bool, limit: int, enrichment_model: str | None = None) -> pa.Table:
    """Pairs (seed, other) with cosine similarity in [low, high], strongest first, at most `limit` (x 4 kept
    as candidates, so that pairs already linked can be skipped in SQL). Deterministic: ties by ids."""
    ids, episodes, matrix = memory_embeddings(con, enrichment_model)
    empty = pa.table({"memory_a": pa.array([], pa.string()), "memory_b": pa.array([], pa.string()),
                      "base": pa.array([], pa.float64())})
    if not ids or not seed_ids or limit <= 0:
        return empty
    index = {memory_id: i for i, memory_id in enumerate(ids)}
    seeds = np.array(sorted(index[m] for m in seed_ids if m in index), dtype=np.int64)
    if seeds.size == 0:
        return empty
    episodes_arr = np.asarray(episodes, dtype=object)
    keep_a, keep_b, keep_s = [], [], []
    for start in range(0, seeds.size, 256):
        block = seeds[start:start + 256]
        sims = matrix[block] @ matrix.T
        mask = (sims >= low) & (sims <= high)
        mask[np.arange(block.size), block] = False
        if cross_episode:
            mask &= episodes_arr[block][:, None] != episodes_arr[None, :]
        rows, cols = np.nonzero(mask)
        keep_a.append(block[rows])
        keep_b.append(cols)
        keep_s.append(sims[rows, cols])
    a = np.concatenate(keep_a)
    b = np.concatenate(keep_b)
    s = np.concatenate(keep_s).astype(np.float64)
    if a.size == 0:
        return empty
    ids_arr = np.asarray(ids, dtype=object)
    first = np.where(ids_arr[a] < ids_arr[b], ids_arr[a], ids_arr[b])
    second = np.where(ids_arr[a] < ids_arr[b], ids_arr[b], ids_arr[a])
    pairs = pa.table({"memory_a": pa.array(first.tolist(), pa.string()),
                      "memory_b": pa.array(second.tolist(), pa.string()), "base": pa.array(s)})
    # one row per pair, strongest first; keep a margin over `limit` for pairs that turn out to be linked
    con.register("_c_sim_raw", pairs)
    try:
        return con.execute("""
            select memory_a, memory_b, max(base) as base from _c_sim_raw group by 1, 2
            order by base desc, memory_a, memory_b limit ?
        """, [int(limit) * 4 + 100]).to_arrow_table()
    finally:
        con.unregister("_c_sim_raw")


def _insert_embedding_links(con: duckdb.DuckDBPyConnection, cycle: Cycle, candidates: pa.Table, *,
                            link_type: str, scale: float, weak, limit: int) -> int:
    """Insert the strongest `limit` candidate pairs not linked yet, strength = scale * base, named by the
    first shared topic or entity of the two memories."""
    con.register("_c_candidates", candidates)
    try:
        _stage_terms(con, "(select memory_a as memory_id from _c_candidates "
                          "union select memory_b from _c_candidates)")
        return _affected(con, f"""
            insert into {ASSOCIATIONS} (memory_a, memory_b, strength, link_type, label, created_at, updated_at,
                                        last_reactivated_at, created_cycle_key, updated_cycle_key)
            select memory_a, memory_b, strength, $link_type, label, $as_of, $as_of, $as_of, $key, $key
            from (
                select c.memory_a, c.memory_b, least(1.0, $scale * c.base) as strength,
                       {_LABEL_SQL} as label
                from _c_candidates as c
                anti join {ASSOCIATIONS} as a on a.memory_a = c.memory_a and a.memory_b = c.memory_b
                left join _c_terms as ta on ta.memory_id = c.memory_a
                left join _c_terms as tb on tb.memory_id = c.memory_b
            )
            where strength >= $weak
            order by strength desc, memory_a, memory_b
            limit $limit
        """, link_type=link_type, scale=float(scale), weak=weak, limit=int(limit), as_of=cycle.as_of,
            key=cycle.cycle_key)
    finally:
        con.unregister("_c_candidates")


# A heuristic name for a link: the first shared topic/entity, else "<topic of a> ~ <topic of b>".
_LABEL_SQL = """coalesce(
    list_sort(list_intersect(coalesce(ta.terms, []::varchar[]), coalesce(tb.terms, []::varchar[])))[1],
    case when len(ta.terms) > 0 and len(tb.terms) > 0 then ta.terms[1] || ' ~ ' || tb.terms[1] end)"""


# ---------------------------------------------------------------------------------------------------------
# The cycles


def _consolidation_body(cycle: Cycle, params: Mapping, budget: int, *, semantic: bool):
    def body(con: duckdb.DuckDBPyConnection) -> dict:
        _require_stm(con)
        counts: dict = {}
        _stage_memories(con, cycle.as_of)
        _select_replay(con, cycle.as_of, budget, params["replay_recency_hours"], params["replay_min_priority"])
        counts["memories_seen"] = con.execute("select count(*) from _c_mem").fetchone()[0]
        counts["new_memories"] = _register_memories(con, cycle, params["initial_consolidation"])
        counts["replayed_episodes"] = con.execute("select count(*) from _c_replay").fetchone()[0]
        counts["replayed_memories"] = _replay(con, cycle, params["replay_learning_rate"])
        counts["reactivated_pairs"] = _stage_reactivated_pairs(con)
        counts.update(_hebbian(con, cycle, params["hebbian_learning_rate"],
                               params["hebbian_coactivation_threshold"], params["weak_connection_threshold"]))
        counts["created_semantic"] = 0
        if semantic:
            replayed = {row[0] for row in con.execute(
                "select m.memory_id from _c_mem as m join _c_replay as r using (episode_id)").fetchall()}
            candidates = _similar_pairs(con, replayed, float(params["semantic_link_threshold"]), 1.0,
                                        cross_episode=False, limit=int(params["semantic_links_per_cycle"]),
                                        enrichment_model=params.get("enrichment_model"))
            counts["created_semantic"] = _insert_embedding_links(
                con, cycle, candidates, link_type="semantic", scale=1.0, weak=params["weak_connection_threshold"],
                limit=int(params["semantic_links_per_cycle"]))
        counts["weakened"] = _forget(con, cycle, params["gradual_forgetting_rate"], params["cortical_forgetting_rate"],
                                     params["forgetting_period_hours"])
        counts["pruned"] = _prune(con, params["weak_connection_threshold"])
        counts["transferred"] = _transfer(con, cycle, params["consolidation_threshold"])
        counts.update(_link_stats(con))
        _drop_temp(con, "_c_mem", "_c_replay", "_c_new", "_c_focus", "_c_pairs", "_c_terms")
        return counts

    return body


def apply_hippocampal_cycle(con: duckdb.DuckDBPyConnection, params: Mapping, cycle: Cycle, *,
                            run_id: str | None = None) -> CycleResult:
    """Hourly hippocampal replay: replay the top `hippocampal_replay_episodes` episodes, Hebbian update of the
    reactivated pairs, forgetting of the rest, pruning, transfer to long-term memory."""
    _expect(cycle, "hippocampal")
    body = _consolidation_body(cycle, params, int(params["hippocampal_replay_episodes"]), semantic=False)
    return run_in_ledger(con, cycle, _used(params, CONSOLIDATION_PARAMS), body, run_id=run_id)


def apply_deep_sleep_cycle(con: duckdb.DuckDBPyConnection, params: Mapping, cycle: Cycle, *,
                           run_id: str | None = None) -> CycleResult:
    """Deep (slow-wave) sleep, 2-4 AM: the hippocampal cycle with the larger `deep_sleep_replay_episodes`
    budget, plus semantic links between replayed memories and very similar memories (cosine >=
    `semantic_link_threshold`): new memories are fitted into what is already known."""
    _expect(cycle, "deep_sleep")
    body = _consolidation_body(cycle, params, int(params["deep_sleep_replay_episodes"]), semantic=True)
    return run_in_ledger(con, cycle, _used(params, CONSOLIDATION_PARAMS + SEMANTIC_PARAMS), body, run_id=run_id)


def apply_rem_cycle(con: duckdb.DuckDBPyConnection, params: Mapping, cycle: Cycle, *,
                    run_id: str | None = None) -> CycleResult:
    """REM sleep, every 90 minutes: creative links between memories of DIFFERENT episodes.

    Seeds: the memories of the `rem_seed_episodes` highest-priority episodes at as_of. Candidates: (1) a seed x
    and a memory z that share a neighbour y, base = max over y of w(x,y) * w(y,z); (2) a seed and a memory
    whose embeddings are moderately similar, cosine in [rem_similarity_min, rem_similarity_max], base = cosine.
    strength = rem_creativity_factor * base; never within one episode, never for pairs already linked, at most
    `rem_max_links_per_cycle` links (strongest first), named by a shared topic when there is one.
    """
    _expect(cycle, "rem_sleep")
    p = params

    def body(con: duckdb.DuckDBPyConnection) -> dict:
        _require_stm(con)
        _stage_memories(con, cycle.as_of)
        _select_replay(con, cycle.as_of, int(p["rem_seed_episodes"]), p["replay_recency_hours"],
                       p["replay_min_priority"])
        con.execute("""
            create or replace temp table _r_seeds as
            select m.memory_id, m.episode_id from _c_mem as m join _c_replay as r using (episode_id)
        """)
        seeds = {row[0] for row in con.execute("select memory_id from _r_seeds").fetchall()}
        # two hops from the seeds, built hop by hop (each a semi-join on the links) so the cost follows the
        # seeds' neighbourhoods, not the size of the graph
        con.execute(f"""
            create or replace temp table _r_hop1 as
            select s.memory_id as x, s.episode_id as x_episode, a.memory_b as y, a.strength
            from {ASSOCIATIONS} as a join _r_seeds as s on s.memory_id = a.memory_a
            union all
            select s.memory_id, s.episode_id, a.memory_a, a.strength
            from {ASSOCIATIONS} as a join _r_seeds as s on s.memory_id = a.memory_b
        """)
        con.execute(f"""
            create or replace temp table _r_hop2 as
            with middle as (select distinct y from _r_hop1)
            select a.memory_a as y, a.memory_b as z, a.strength
            from {ASSOCIATIONS} as a semi join middle on middle.y = a.memory_a
            union all
            select a.memory_b, a.memory_a, a.strength
            from {ASSOCIATIONS} as a semi join middle on middle.y = a.memory_b
        """)
        con.execute("""
            create or replace temp table _r_neighbour as
            select least(h1.x, h2.z) as memory_a, greatest(h1.x, h2.z) as memory_b,
                   max(h1.strength * h2.strength) as base
            from _r_hop1 as h1
            join _r_hop2 as h2 on h2.y = h1.y
            join _c_mem as mz on mz.memory_id = h2.z
            where h2.z <> h1.x and mz.episode_id is not null and mz.episode_id <> h1.x_episode
            group by 1, 2
        """)
        similar = _similar_pairs(con, seeds, float(p["rem_similarity_min"]), float(p["rem_similarity_max"]),
                                 cross_episode=True, limit=int(p["rem_max_links_per_cycle"]),
                                 enrichment_model=p.get("enrichment_model"))
        con.register("_r_similar", similar)
        try:
            con.execute("""
                create or replace temp table _r_candidates as
                select memory_a, memory_b, max(base) as base
                from (select * from _r_neighbour union all select memory_a, memory_b, base from _r_similar)
                group by 1, 2
            """)
        finally:
            con.unregister("_r_similar")
        candidates = con.execute("select * from _r_candidates").to_arrow_table()
        counts = {
            "seed_memories": len(seeds),
            "neighbour_candidates": con.execute("select count(*) from _r_neighbour").fetchone()[0],
            "similarity_candidates": similar.num_rows,
        }
        counts["created"] = _insert_embedding_links(
            con, cycle, candidates, link_type="creative", scale=float(p["rem_creativity_factor"]),
            weak=p["weak_connection_threshold"], limit=int(p["rem_max_links_per_cycle"]))
        counts.update(_link_stats(con))
        _drop_temp(con, "_c_mem", "_c_replay", "_c_terms", "_r_seeds", "_r_hop1", "_r_hop2", "_r_neighbour",
                   "_r_candidates")
        return counts

    return run_in_ledger(con, cycle, _used(params, REM_PARAMS), body, run_id=run_id)


def apply_homeostasis_cycle(con: duckdb.DuckDBPyConnection, params: Mapping, cycle: Cycle, *,
                            run_id: str | None = None) -> CycleResult:
    """Weekly synaptic scaling (Turrigiano): every link strength is multiplied by one factor
    f = homeostasis_target_mean / mean strength, kept within [1 / homeostasis_max_scale, homeostasis_max_scale],
    then clamped to [0, 1]; links that fall below the pruning threshold are pruned. Multiplicative, so the
    ranking of links is preserved (ties only where strengths saturate at 1). It leaves `updated_at` alone:
    scaling commutes with the event-time forgetting, which goes on from each link's own last update."""
    _expect(cycle, "homeostasis")
    p = params

    def body(con: duckdb.DuckDBPyConnection) -> dict:
        links, mean = con.execute(f"select count(*), avg(strength) from {ASSOCIATIONS}").fetchone()
        counts: dict = {"links_before": int(links), "mean_before": mean, "scale_factor": 1.0, "scaled": 0}
        if links and mean and mean > 0:
            cap = max(1.0, float(p["homeostasis_max_scale"]))
            factor = min(cap, max(1.0 / cap, float(p["homeostasis_target_mean"]) / mean))
            counts["scale_factor"] = factor
            counts["scaled"] = _affected(con, f"""
                update {ASSOCIATIONS}
                set strength = least(1.0, greatest(0.0, strength * $factor)), updated_cycle_key = $key
            """, factor=factor, as_of=cycle.as_of, key=cycle.cycle_key)
        counts["mean_after_scaling"] = con.execute(f"select avg(strength) from {ASSOCIATIONS}").fetchone()[0]
        counts["pruned"] = _prune(con, p["weak_connection_threshold"])
        counts.update(_link_stats(con))
        return counts

    return run_in_ledger(con, cycle, _used(params, HOMEOSTASIS_PARAMS), body, run_id=run_id)


APPLY = {
    "hippocampal": apply_hippocampal_cycle,
    "deep_sleep": apply_deep_sleep_cycle,
    "rem_sleep": apply_rem_cycle,
    "homeostasis": apply_homeostasis_cycle,
}

CONSOLIDATION_PARAMS = (
    "hebbian_learning_rate", "hebbian_coactivation_threshold", "weak_connection_threshold",
    "gradual_forgetting_rate", "cortical_forgetting_rate", "forgetting_period_hours", "consolidation_threshold",
    "replay_learning_rate",
    "replay_recency_hours", "replay_min_priority", "hippocampal_replay_episodes", "deep_sleep_replay_episodes",
    "initial_consolidation",
)
SEMANTIC_PARAMS = ("semantic_link_threshold", "semantic_links_per_cycle", "enrichment_model")
REM_PARAMS = ("rem_creativity_factor", "rem_similarity_min", "rem_similarity_max", "rem_seed_episodes",
              "rem_max_links_per_cycle", "replay_recency_hours", "replay_min_priority", "weak_connection_threshold",
              "enrichment_model")
HOMEOSTASIS_PARAMS = ("homeostasis_target_mean", "homeostasis_max_scale", "weak_connection_threshold")


def _used(params: Mapping, names: tuple[str, ...]) -> dict:
    return {name: params[name] for name in names if name in params}


def _expect(cycle: Cycle, cycle_type: str) -> None:
    if cycle.cycle_type != cycle_type:
        raise ValueError(f"{cycle.cycle_key!r} is not a {cycle_type} cycle key")


def apply_cycle(con: duckdb.DuckDBPyConnection, params: Mapping, cycle: Cycle, *,
                run_id: str | None = None) -> CycleResult:
    return APPLY[cycle.cycle_type](con, params, cycle, run_id=run_id)
