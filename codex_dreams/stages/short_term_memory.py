"""Python asset checks of the short_term_memory group (the dbt models live in
dbt_project/models/short_term_memory/).

The dbt models build episodes, spatial and emotional context, decayed strengths and Hebbian co-activation
counts; these checks guard "nothing is lost" (every active memory reaches short-term memory) and the bound on
co-activation pairs, and report episode and strength summaries in Markdown. Each check only reads, briefly.
"""

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from codex_dreams.pools import DUCKDB_WRITER_POOL, STAGE_OWNERS
from codex_dreams.params import biological_params
from codex_dreams.stages.checks import StoreCheck, stage_checks
from codex_dreams.stages.working_memory import _markdown_table

STM_MEMORIES = dg.AssetKey(["short_term_memory", "stm_memories"])
STM_COACTIVATION = dg.AssetKey(["short_term_memory", "stm_coactivation"])


def stm_nothing_lost(con: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    active, in_stm, missing, extra, duplicated = con.execute(
        """
        with active as (select id from raw.memories where deleted_at is null),
             stm as (select memory_id from short_term_memory.stm_memories)
        select
            (select count(*) from active),
            (select count(*) from stm),
            (select count(*) from active anti join stm on stm.memory_id = active.id),
            (select count(*) from stm anti join active on active.id = stm.memory_id),
            (select count(*) - count(distinct memory_id) from stm)
        """
    ).fetchone()
    sample = [row[0] for row in con.execute(
        """
        select id from raw.memories m
        where deleted_at is null
          and not exists (select 1 from short_term_memory.stm_memories s where s.memory_id = m.id)
        order by created_at limit 5
        """
    ).fetchall()]
    episodes = con.execute(
        """
        select boundary_reason, count(*), avg(memory_count), max(memory_count), avg(strength)
        from short_term_memory.stm_episodes group by 1 order by 1
        """
    ).fetchall()
    strengths = con.execute(
        """
        select count(*), min(strength), quantile_cont(strength, 0.25), median(strength),
               quantile_cont(strength, 0.75), max(strength)
        from short_term_memory.stm_memories
        """
    ).fetchall()
    passed = missing == 0 and extra == 0 and duplicated == 0
    return dg.AssetCheckResult(
        passed=bool(passed),
        description=None if passed else (
            f"{missing} active memory(ies) missing (e.g. {', '.join(sample)}), {extra} unknown, "
            f"{duplicated} duplicated"
        ),
        metadata={
            "active_raw_memories": active,
            "stm_memories": in_stm,
            "missing": missing,
            "unknown_or_deleted": extra,
            "duplicated": duplicated,
            "episodes": dg.MetadataValue.md(_markdown_table(
                ["boundary", "episodes", "mean memories", "max memories", "mean strength"], episodes)),
            "strength": dg.MetadataValue.md(_markdown_table(
                ["memories", "min", "p25", "median", "p75", "max"], strengths)),
        },
    )


def stm_coactivation_bounded(con: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    params = biological_params()
    capacity = int(params["working_memory_capacity"])
    max_lag = int(params["coactivation_max_lag"])
    top = int(params["coactivation_top_salient"])
    memories, windows, episodes, window_events, episode_events, pairs, mean_count, max_count = con.execute(
        """
        select
            (select count(*) from short_term_memory.stm_memories),
            (select count(distinct window_start) from working_memory.wm_buffer),
            (select count(*) from short_term_memory.stm_episodes),
            (select count(*) from short_term_memory.stm_coactivation_events where context_type = 'window'),
            (select count(*) from short_term_memory.stm_coactivation_events where context_type = 'episode'),
            (select count(*) from short_term_memory.stm_coactivation),
            (select coalesce(avg(coactivation_count), 0) from short_term_memory.stm_coactivation),
            (select coalesce(max(coactivation_count), 0) from short_term_memory.stm_coactivation)
        """
    ).fetchone()
    window_bound = windows * capacity * (capacity - 1) // 2
    episode_bound = memories * max_lag + episodes * top * (top - 1) // 2
    passed = window_events <= window_bound and episode_events <= episode_bound
    return dg.AssetCheckResult(
        passed=bool(passed),
        metadata={
            "pairs": pairs,
            "window_events": window_events,
            "window_event_bound": window_bound,
            "episode_events": episode_events,
            "episode_event_bound": episode_bound,
            "mean_coactivation_count": float(mean_count),
            "max_coactivation_count": max_count,
            "pairs_per_memory": float(pairs / memories) if memories else 0.0,
        },
    )


CONSOLIDATION_BACKLOG = dg.AssetKey(["short_term_memory", "consolidation_backlog"])


@dg.asset(
    key=CONSOLIDATION_BACKLOG,
    group_name="short_term_memory",
    deps=[dg.AssetKey(["short_term_memory", "stm_episodes"]), STM_MEMORIES],
    kinds={"python", "duckdb"},
    owners=STAGE_OWNERS,
    pool=DUCKDB_WRITER_POOL,
    description=(
        "How many episodes wait for consolidation: episodes with a memory no consolidation cycle has seen "
        "yet. Reported as metadata `episodes_ready`, which the consolidation_backlog_sensor reads from the "
        "Dagster instance, so the sensor never opens the store."
    ),
)
def consolidation_backlog(duckdb: DuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        consolidated_known = con.execute(
            "select count(*) from duckdb_tables() where schema_name = 'consolidation' "
            "and table_name = 'memory_consolidation'"
        ).fetchone()[0]
        seen = "(select memory_id from consolidation.memory_consolidation)" if consolidated_known else \
            "(select null::varchar as memory_id where false)"
        episodes, ready, memories_waiting = con.execute(
            f"""
            with waiting as (
                select s.memory_id, s.episode_id from short_term_memory.stm_memories s
                anti join {seen} c on c.memory_id = s.memory_id
            )
            select (select count(*) from short_term_memory.stm_episodes),
                   (select count(distinct episode_id) from waiting),
                   (select count(*) from waiting)
            """
        ).fetchone()
    return dg.MaterializeResult(metadata={
        "episodes_ready": int(ready),
        "memories_waiting": int(memories_waiting),
        "episodes_total": int(episodes),
    })


assets: list = [consolidation_backlog]
asset_checks: list = [stage_checks("short_term_memory_checks", [
    StoreCheck(dg.AssetCheckSpec(
        "stm_nothing_lost", asset=STM_MEMORIES,
        description="Nothing is lost: every active raw memory is in short-term memory exactly once, no other."),
        stm_nothing_lost),
    StoreCheck(dg.AssetCheckSpec(
        "stm_coactivation_bounded", asset=STM_COACTIVATION,
        description="Pair generation stays bounded: window pairs <= C(capacity, 2) per window; episode pairs <= "
                    "memories * coactivation_max_lag + C(coactivation_top_salient, 2) per episode."),
        stm_coactivation_bounded),
])]
