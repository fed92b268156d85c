"""Python assets and checks of the consolidation group (the dbt models live in dbt_project/models/consolidation/).

One asset per sleep/wake cycle, chained in the order of a night (hippocampal -> deep sleep -> REM -> homeostasis)
so a full run applies them in that order; each is a thin wrapper over `codex_dreams.stages.cycles`, which runs
the cycle and its ledger row in one DuckDB transaction (exactly once per cycle key). After the cycles,
`consolidation_tables` reports the three state tables they share (consolidation/associations,
/memory_consolidation, /cycle_ledger: asset = table) and carries the invariant checks; the dbt models read those
tables as sources with these asset keys.

Cycle keys come from the run: the `codex/cycle_key` tag (set by the schedules, e.g.
`hippocampal:2026-11-25T14`), else the `codex/as_of` tag, else the event-time watermark (the first tick after
the latest memory). Run config `cycle_key` overrides both; `param_overrides` overrides dbt vars for one run.
"""


from contextlib import contextmanager
from typing import Any, Iterator

import dagster as dg
import duckdb as duckdb_module
from dagster_duckdb import DuckDBResource

from codex_dreams.pools import DUCKDB_WRITER_POOL, STAGE_OWNERS
from codex_dreams.params import biological_params
from codex_dreams.stages import cycles, reporting
from codex_dreams.stages.checks import StoreCheck, stage_checks
from codex_dreams.store import bootstrap

GROUP = "consolidation"
STM_KEYS = [dg.AssetKey(["short_term_memory", name]) for name in ("stm_memories", "stm_episodes", "stm_coactivation")]

HIPPOCAMPAL = dg.AssetKey([GROUP, "hippocampal_consolidation"])
DEEP_SLEEP = dg.AssetKey([GROUP, "deep_sleep_consolidation"])
REM_SLEEP = dg.AssetKey([GROUP, "rem_sleep"])
HOMEOSTASIS = dg.AssetKey([GROUP, "synaptic_homeostasis"])
ASSOCIATIONS_KEY = dg.AssetKey([GROUP, "associations"])
MEMORY_CONSOLIDATION_KEY = dg.AssetKey([GROUP, "memory_consolidation"])
CYCLE_LEDGER_KEY = dg.AssetKey([GROUP, "cycle_ledger"])
STATE_TABLE_KEYS = [ASSOCIATIONS_KEY, MEMORY_CONSOLIDATION_KEY, CYCLE_LEDGER_KEY]
CYCLE_ASSET_KEYS = {"hippocampal": HIPPOCAMPAL, "deep_sleep": DEEP_SLEEP, "rem_sleep": REM_SLEEP,
                    "homeostasis": HOMEOSTASIS}


class CycleConfig(dg.Config):
    cycle_key: str | None = None  # e.g. "hippocampal:2026-11-25T14"; overrides the run tags
    param_overrides: dict[str, Any] = {}  # dbt vars for this run only, e.g. {"hebbian_learning_rate": 0.2}


@contextmanager
def store_connection(resource: DuckDBResource) -> Iterator[duckdb_module.DuckDBPyConnection]:
    """A bootstrapped connection that is closed even when the body fails (the resource closes it only on
    success), so a failed cycle does not keep the file open in this process."""
    failure: BaseException | None = None
    with resource.get_connection() as con:
        try:
            bootstrap(con)
            yield con
        except BaseException as error:  # re-raised below, after the connection is closed
            failure = error
    if failure is not None:
        raise failure


def run_params(overrides: dict | None = None) -> dict:
    """The dbt vars (optionally overridden) plus `enrichment_model`, the active enrichment model key, which the
    dbt models receive as a var too: SQL and Python choose the same embedding per memory."""
    from codex_dreams.enrichment.cache import active_model_key
    from codex_dreams.settings import get_settings

    return {**biological_params(overrides), "enrichment_model": active_model_key(get_settings())}


def _cycle_metadata(con, result: cycles.CycleResult, params: dict) -> dict:
    counts = result.counts
    metadata: dict[str, Any] = {
        "status": result.status,
        "cycle_type": result.cycle.cycle_type,
        "cycle_key": result.cycle.cycle_key,
        "as_of": result.cycle.as_of.isoformat(sep=" "),
        "key_source": result.cycle.source,
        "counts": dg.MetadataValue.json(counts),
    }
    for name, value in counts.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            metadata[name] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            metadata[name] = dg.MetadataValue.float(value)
    links = con.execute(f"select count(*) from {cycles.ASSOCIATIONS}").fetchone()[0]
    metadata["dagster/row_count"] = dg.MetadataValue.int(links)
    metadata["strength_histogram"] = dg.MetadataValue.md(
        reporting.histogram_md(con, f"select strength from {cycles.ASSOCIATIONS}"))
    if result.cycle.cycle_type in cycles.CONSOLIDATING_CYCLES:
        metadata["forgetting_curve"] = dg.MetadataValue.md(reporting.link_forgetting_curve_md(params))
    return metadata


def _cycle_asset(cycle_type: str, key: dg.AssetKey, deps: list, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=key,
        group_name=GROUP,
        kinds={"python", "duckdb"},
        owners=STAGE_OWNERS,
        pool=DUCKDB_WRITER_POOL,
        deps=deps,
        description=description,
    )
    def _cycle(context: dg.AssetExecutionContext, config: CycleConfig, duckdb: DuckDBResource
               ) -> dg.MaterializeResult:
        params = run_params(config.param_overrides or None)
        started = reporting.utc_now()
        with store_connection(duckdb) as con:
            if config.cycle_key:
                cycle = cycles.parse_cycle_key(config.cycle_key, "config")
                if cycle.cycle_type != cycle_type:
                    raise ValueError(f"config cycle_key {config.cycle_key!r} is not a {cycle_type} key")
            else:
                cycle = cycles.resolve_cycle(cycle_type, context.run.tags, cycles.event_watermark(con))
            if cycle is None:
                context.log.info(f"{cycle_type}: no memories yet, nothing to consolidate")
                return dg.MaterializeResult(metadata={"status": "skipped: no memories"})
            result = cycles.apply_cycle(con, params, cycle, run_id=context.run_id)
            if result.applied:
                context.log.info(f"{cycle.cycle_key} applied (as_of {cycle.as_of}, key from {cycle.source}): "
                                 f"{result.counts}")
            else:
                context.log.info(f"{cycle.cycle_key} skipped: already applied (the ledger has it); nothing changed")
            metadata = _cycle_metadata(con, result, params)
            reporting.record_stage_run(con, stage=GROUP, asset=key.path[-1], run_id=context.run_id,
                                       started_at=started, finished_at=reporting.utc_now(),
                                       rows=metadata["dagster/row_count"].value)
        return dg.MaterializeResult(metadata=metadata)

    return _cycle


hippocampal_consolidation = _cycle_asset(
    "hippocampal", HIPPOCAMPAL, STM_KEYS,
    "Hourly hippocampal replay (sharp-wave ripples): replays the highest-priority episodes "
    "(salience x strength x recency), strengthens co-activated links (Hebbian: w <- min(1, w (1 + rate))), creates "
    "links for new co-activated pairs, lets the others fade (w <- w * gradual_forgetting_rate), prunes links below "
    "weak_connection_threshold and moves memories whose consolidation strength reaches consolidation_threshold to "
    "long-term memory. One ledger row per cycle key: a re-run changes nothing.",
)
deep_sleep_consolidation = _cycle_asset(
    "deep_sleep", DEEP_SLEEP, [*STM_KEYS, HIPPOCAMPAL, dg.AssetKey("memory_enrichment")],
    "Deep (slow-wave) sleep, 2-4 AM: the hippocampal cycle with a larger replay budget "
    "(deep_sleep_replay_episodes) plus semantic links between replayed memories and very similar ones (cosine >= "
    "semantic_link_threshold). Ledger-protected like every cycle.",
)
rem_sleep = _cycle_asset(
    "rem_sleep", REM_SLEEP, [*STM_KEYS, DEEP_SLEEP, dg.AssetKey("memory_enrichment")],
    "REM sleep, every 90 minutes: creative links between memories of different episodes that share a neighbour "
    "in the association graph or are moderately similar (cosine in [rem_similarity_min, rem_similarity_max]); "
    "strength = rem_creativity_factor x similarity, at most rem_max_links_per_cycle, named by a shared topic.",
)
synaptic_homeostasis = _cycle_asset(
    "homeostasis", HOMEOSTASIS, [REM_SLEEP],
    "Weekly synaptic scaling (Turrigiano): multiplies every link strength by homeostasis_target_mean / mean "
    "(at most x homeostasis_max_scale), clamps to [0, 1] and prunes links that fall below the threshold, so "
    "strengths cannot run away and their ranking is kept.",
)


def _state_spec(key: dg.AssetKey, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(key, group_name=GROUP, kinds={"python", "duckdb"}, owners=STAGE_OWNERS,
                        deps=list(CYCLE_ASSET_KEYS.values()), description=description)


@dg.multi_asset(
    name="consolidation_tables",
    specs=[
        _state_spec(ASSOCIATIONS_KEY,
                    "consolidation.associations, the association graph after the latest cycle: one row per linked "
                    "pair (memory_a < memory_b), strength in [0, 1], type hebbian / temporal / semantic / creative. "
                    "Reported with links per type, the strength histogram and the forgetting curve."),
        _state_spec(MEMORY_CONSOLIDATION_KEY,
                    "consolidation.memory_consolidation: per memory seen by a cycle, its consolidation strength, "
                    "replays and when it moved to long-term memory."),
        _state_spec(CYCLE_LEDGER_KEY,
                    "consolidation.cycle_ledger: one row per applied cycle key (written in the cycle's own "
                    "transaction: a cycle applies exactly once)."),
    ],
    pool=DUCKDB_WRITER_POOL,
)
def consolidation_tables(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    """Reports the state the cycles share (they write it; this step reads it and carries the checks)."""
    params = biological_params()
    started = reporting.utc_now()
    with store_connection(duckdb) as con:
        links, mean, memories, in_ltm, cycles_applied = con.execute(f"""
            select (select count(*) from {cycles.ASSOCIATIONS}), (select avg(strength) from {cycles.ASSOCIATIONS}),
                   (select count(*) from {cycles.MEMORY_CONSOLIDATION}),
                   (select count(*) from {cycles.MEMORY_CONSOLIDATION} where consolidated_at is not null),
                   (select count(*) from {cycles.LEDGER})
        """).fetchone()
        by_type = con.execute(f"""
            select link_type, count(*), avg(strength), min(strength), max(strength)
            from {cycles.ASSOCIATIONS} group by 1 order by 1
        """).fetchall()
        recent = con.execute(f"""
            select cycle_key, as_of, finished_at,
                   coalesce((counts->>'created')::bigint, 0) + coalesce((counts->>'created_semantic')::bigint, 0),
                   counts->>'strengthened', counts->>'weakened', counts->>'pruned', counts->>'transferred'
            from {cycles.LEDGER} order by finished_at desc, cycle_key limit 10
        """).fetchall()
        per_type = con.execute(f"select cycle_type, count(*), max(as_of) from {cycles.LEDGER} group by 1 order by 1"
                               ).fetchall()
        link_histogram = reporting.histogram_md(con, f"select strength from {cycles.ASSOCIATIONS}")
        consolidation_histogram = reporting.histogram_md(
            con, f"select consolidation_strength from {cycles.MEMORY_CONSOLIDATION}", what="memories")
        reporting.record_stage_run(con, stage=GROUP, asset="consolidation_tables", run_id=context.run_id,
                                   started_at=started, finished_at=reporting.utc_now(), rows=int(links))
    context.log.info(f"association graph: {links} links (mean {float(mean or 0):.3f}); {in_ltm} of {memories} "
                     f"memories in long-term memory; {cycles_applied} cycles applied")
    yield dg.MaterializeResult(asset_key=ASSOCIATIONS_KEY, metadata={
        "dagster/row_count": dg.MetadataValue.int(int(links)),
        "mean_strength": dg.MetadataValue.float(float(mean or 0.0)),
        "links_by_type": dg.MetadataValue.md(reporting.table_md(["type", "links", "mean", "min", "max"], by_type)),
        "strength_histogram": dg.MetadataValue.md(link_histogram),
        "forgetting_curve": dg.MetadataValue.md(reporting.link_forgetting_curve_md(params)),
    })
    yield dg.MaterializeResult(asset_key=MEMORY_CONSOLIDATION_KEY, metadata={
        "dagster/row_count": dg.MetadataValue.int(int(memories)),
        "memories_in_long_term_memory": dg.MetadataValue.int(int(in_ltm)),
        "consolidation_histogram": dg.MetadataValue.md(consolidation_histogram),
    })
    yield dg.MaterializeResult(asset_key=CYCLE_LEDGER_KEY, metadata={
        "dagster/row_count": dg.MetadataValue.int(int(cycles_applied)),
        "cycles_by_type": dg.MetadataValue.md(reporting.table_md(["cycle type", "applied", "latest as_of"],
                                                                 per_type)),
        "recent_cycles": dg.MetadataValue.md(reporting.table_md(
            ["cycle", "as of", "finished (UTC)", "created", "strengthened", "weakened", "pruned", "transferred"],
            recent)),
    })


def _check(asset: dg.AssetKey, name: str, description: str, sql: str, what: str):
    """A blocking invariant that passes when `sql` counts zero offending rows (and names one of them)."""

    def evaluate(con: duckdb_module.DuckDBPyConnection) -> dg.AssetCheckResult:
        used = params_for(sql, biological_params())
        offending, sample = (con.execute(sql, used) if used else con.execute(sql)).fetchone()
        return dg.AssetCheckResult(
            passed=offending == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{offending} {what}" + (f", e.g. {sample}" if offending else ""),
            metadata={"offending_rows": dg.MetadataValue.int(int(offending))},
        )

    return StoreCheck(dg.AssetCheckSpec(name, asset=asset, description=description, blocking=True), evaluate)


def params_for(sql: str, params: dict) -> dict:
    return {name: value for name, value in params.items() if f"${name}" in sql}


strengths_in_unit_interval = _check(
    ASSOCIATIONS_KEY,
    "strengths_in_unit_interval",
    "Every link strength and consolidation strength is a number in [0, 1].",
    f"""
    select count(*), any_value(what) from (
        select memory_a || '-' || memory_b as what from {cycles.ASSOCIATIONS}
        where not (strength between 0 and 1) or isnan(strength)
        union all
        select memory_id from {cycles.MEMORY_CONSOLIDATION}
        where not (consolidation_strength between 0 and 1) or isnan(consolidation_strength)
    )
    """,
    "strengths outside [0, 1]",
)
no_link_below_pruning_threshold = _check(
    ASSOCIATIONS_KEY,
    "no_link_below_pruning_threshold",
    "After a cycle no link is weaker than weak_connection_threshold (pruning ran in the same transaction).",
    f"""
    select count(*), any_value(memory_a || '-' || memory_b || '=' || strength::varchar)
    from {cycles.ASSOCIATIONS} where strength < $weak_connection_threshold
    """,
    "links below the pruning threshold",
)
ledger_one_row_per_cycle_key = _check(
    CYCLE_LEDGER_KEY,
    "ledger_one_row_per_cycle_key",
    "The cycle ledger holds at most one row per (cycle_type, cycle_key): no cycle was applied twice.",
    f"""
    select count(*), any_value(cycle_type || ' ' || cycle_key) from (
        select cycle_type, cycle_key from {cycles.LEDGER} group by 1, 2 having count(*) > 1
    )
    """,
    "cycle keys applied more than once",
)
links_are_canonical_pairs = _check(
    ASSOCIATIONS_KEY,
    "links_are_canonical_pairs",
    "Each link is stored once, as (memory_a, memory_b) with memory_a < memory_b.",
    f"""
    select count(*), any_value(memory_a || '-' || memory_b) from {cycles.ASSOCIATIONS}
    where not (memory_a < memory_b)
    """,
    "links not stored as memory_a < memory_b",
)

assets: list = [hippocampal_consolidation, deep_sleep_consolidation, rem_sleep, synaptic_homeostasis,
                consolidation_tables]
asset_checks: list = [stage_checks("consolidation_checks", [
    strengths_in_unit_interval, no_link_below_pruning_threshold, ledger_one_row_per_cycle_key,
    links_are_canonical_pairs])]
