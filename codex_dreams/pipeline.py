"""Running the pipeline from Python (the `codex demo` / `codex consolidate` path) against the instance in
DAGSTER_HOME, so runs started here appear in the Dagster UI like scheduled ones."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from importlib import resources
from typing import Callable

from codex_dreams.settings import Settings

STAGE_SCHEMAS = ("raw", "enriched", "working_memory", "short_term_memory", "consolidation",
                 "long_term_memory", "monitoring")
DEMO_FILE = "demo_memories.jsonl"


@dataclass(frozen=True)
class DemoLoad:
    written: int
    stored: int | None


def demo_memories_path():
    return resources.files("codex_dreams.data").joinpath(DEMO_FILE)


def load_demo_memories(settings: Settings) -> DemoLoad:
    """Import the packaged demo set (idempotent: ids derive from time and content)."""
    from codex_dreams.sources.ingest import import_path

    with resources.as_file(demo_memories_path()) as path:
        report = import_path(path, fmt="jsonl", strict=True, settings=settings)
    return DemoLoad(written=report.written, stored=report.stored)


def table_counts(settings: Settings) -> list[dict]:
    """Rows per table in every stage schema (a read after the run; the store must be free)."""
    from codex_dreams.store import open_store

    with open_store(settings) as con:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where schema_name in "
            f"({', '.join('?' for _ in STAGE_SCHEMAS)}) union all "
            "select schema_name, view_name from duckdb_views() where not internal and schema_name in "
            f"({', '.join('?' for _ in STAGE_SCHEMAS)}) order by 1, 2",
            [*STAGE_SCHEMAS, *STAGE_SCHEMAS],
        ).fetchall()
        rows = []
        for schema, table in tables:
            # identifiers come from the catalog, quoted; no user input reaches this statement
            count = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
            rows.append({"stage": schema, "table": table, "rows": int(count)})
    order = {name: i for i, name in enumerate(STAGE_SCHEMAS)}
    return sorted(rows, key=lambda row: (order.get(row["stage"], 99), row["table"]))


def run_job(job_name: str, settings: Settings, *, log: Callable[[str], None] | None = None,
            run_config: dict | None = None, tags: dict | None = None,
            wait_seconds: float | None = None, on_wait: Callable[[str], None] | None = None):
    """Execute a job of the code location in this process, recorded in the DAGSTER_HOME instance.

    First the run watchdog cleans up runs whose process died, and the call waits (telling `on_wait` for whom)
    while another run holds the store's pool slot, at most `wait_seconds` (then `PoolWaitTimeout`)."""
    import dagster as dg

    from codex_dreams.automation.watchdog import DEFAULT_POOL_WAIT_SECONDS, wait_for_pool, worker_tags
    from codex_dreams.instance import ensure_instance

    ensure_instance(settings)
    from codex_dreams.definitions import build_definitions

    # Built for the current settings, not the module-level `defs` of the first import: a long-lived process
    # (a notebook, an agent, the test suite) may point CODEX_HOME elsewhere later.
    job = build_definitions().resolve_job_def(job_name)
    if log:
        log(f"Running {job_name} ...")
    # Dagster's per-event DEBUG lines go to the run's event log (and the UI), not to the terminal; dbt's
    # progress lines (which dagster-dbt writes to stdout) go to $CODEX_HOME/logs/runs.log, so stdout stays
    # clean for `--json`.
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}, **(run_config or {})}
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    # The instance is disposed after the run: its SQLite connections must not be left to the garbage
    # collector (which may run them down in another thread, e.g. dbt's).
    with dg.DagsterInstance.get() as instance, \
            (settings.logs_dir / "runs.log").open("a", encoding="utf-8") as run_log, \
            contextlib.redirect_stdout(run_log):
        wait_for_pool(instance, on_wait=on_wait or log,
                      timeout_seconds=DEFAULT_POOL_WAIT_SECONDS if wait_seconds is None else wait_seconds)
        return job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config,
                                      tags={**worker_tags(), **(tags or {})})


def run_full_cycle(settings: Settings, *, log: Callable[[str], None] | None = None) -> dict:
    started = time.monotonic()
    result = run_job("full_cycle_job", settings, log=log)
    seconds = time.monotonic() - started
    status = "SUCCESS" if result.success else "FAILURE"
    failures = [
        f"{event.step_key}: {event.event_specific_data.error.message.strip().splitlines()[0]}"
        for event in result.all_events
        if event.is_step_failure and event.event_specific_data and event.event_specific_data.error
    ]
    return {"run_id": result.run_id, "status": status, "seconds": seconds, "failures": failures,
            "tables": table_counts(settings)}

