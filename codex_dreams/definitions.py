"""Assembles the Definitions: stage assets (dbt + Python), checks, jobs, schedules, sensors, resources.

Each stage module exposes `assets` and `asset_checks`; `codex_dreams.jobs` the rhythm jobs;
`codex_dreams.automation` the schedules and sensors. Nothing here opens the store.
"""

import dagster as dg

from codex_dreams import automation, jobs
from codex_dreams.automation.watchdog import build_watchdog_sensor, worker_recording_in_process_executor
from codex_dreams.dbt import build_dbt_assets
from codex_dreams.enrichment.asset import memory_enrichment
from codex_dreams.retrieval.asset import assets as recall_assets
from codex_dreams.resources import build_resources
from codex_dreams.settings import use_private_file_modes
from codex_dreams.stages import (
    consolidation,
    long_term_memory,
    sensory_input,
    short_term_memory,
    working_memory,
)

STAGE_MODULES = (working_memory, short_term_memory, consolidation, long_term_memory)

# The code location's processes (code servers, run workers) write the store, the recall snapshot, dbt's target
# and compute logs under CODEX_HOME: user-only, as the `codex` command makes them, also when Dagster was started
# some other way (`dagster dev -m codex_dreams.definitions`). See settings.use_private_file_modes.
use_private_file_modes()


def build_definitions() -> dg.Definitions:
    assets = [sensory_input.raw_memories, memory_enrichment, build_dbt_assets(), *recall_assets]
    checks = []
    for module in STAGE_MODULES:
        assets.extend(module.assets)
        checks.extend(module.asset_checks)
    schedules, sensors = automation.build_rhythms({job.name for job in jobs.jobs})
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs.jobs,
        schedules=schedules,
        sensors=[*sensors, build_watchdog_sensor()],
        resources=build_resources(),
        # One process per run, steps in order: every step writes the one DuckDB file (pool of limit 1), so
        # a process per step would only add its start-up (seconds of imports) to every rhythm. The run records
        # its worker process, so the watchdog can free the pool slot of a run that was killed.
        executor=worker_recording_in_process_executor,
    )


defs = build_definitions()
