"""One check step per stage: the stage's Python invariant checks evaluated on one store connection.

Each invariant stays its own asset check in the UI (its own name, result and metadata); they share the step
so a rhythm pays one step start and one DuckDB open per stage, not one per invariant. The step can be
subset: running one check from the UI evaluates only that one.
"""

from dataclasses import dataclass
from typing import Callable, Sequence

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from codex_dreams.pools import DUCKDB_WRITER_POOL


@dataclass(frozen=True)
class StoreCheck:
    """An invariant: its spec and the function that evaluates it on an open store connection (the result's
    asset key and check name come from the spec)."""

    spec: dg.AssetCheckSpec
    evaluate: Callable[[duckdb.DuckDBPyConnection], dg.AssetCheckResult]


def stage_checks(name: str, checks: Sequence[StoreCheck]) -> dg.AssetChecksDefinition:
    by_key = {check.spec.key: check for check in checks}

    @dg.multi_asset_check(name=name, specs=[check.spec for check in checks], can_subset=True,
                          pool=DUCKDB_WRITER_POOL,
                          description="Invariant checks: " + ", ".join(check.spec.name for check in checks))
    def _stage_checks(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource):
        from codex_dreams.stages.consolidation import store_connection

        selected = [by_key[key] for key in by_key if key in context.selected_asset_check_keys]
        with store_connection(duckdb) as con:
            results = [(check.spec, check.evaluate(con)) for check in selected]
        for spec, result in results:
            yield dg.AssetCheckResult(asset_key=spec.asset_key, check_name=spec.name, passed=result.passed,
                                      severity=result.severity, description=result.description,
                                      metadata=result.metadata)

    return _stage_checks
