"""The rhythm jobs (codex_dreams.jobs): names are a contract with the schedules; selections and step layout."""

import os
import subprocess
import sys

import pytest

from codex_dreams import jobs
from codex_dreams.stages.consolidation import CYCLE_ASSET_KEYS, STATE_TABLE_KEYS

JOB_NAMES = {"working_memory_job", "short_term_memory_job", "hippocampal_consolidation_job", "deep_sleep_job",
             "rem_sleep_job", "homeostasis_job", "full_cycle_job"}


@pytest.fixture(scope="module")
def defs():
    from codex_dreams.definitions import defs

    return defs


def selected(defs, name) -> set[str]:
    return {key.to_user_string() for key in defs.resolve_job_def(name).asset_layer.selected_asset_keys}


def dbt_steps(defs, name) -> int:
    return sum(1 for node in defs.resolve_job_def(name).graph.node_defs if node.name.startswith("codex_dbt_models"))


def test_the_job_names_the_schedules_use(defs):
    assert {job.name for job in jobs.jobs} == JOB_NAMES
    for name in JOB_NAMES:
        assert defs.resolve_job_def(name).description


@pytest.mark.parametrize("cycle_type, job_name", sorted(jobs.CYCLE_JOBS.items()))
def test_a_cycle_job_runs_its_cycle_then_refreshes_long_term_memory(defs, cycle_type, job_name):
    keys = selected(defs, job_name)
    cycle_keys = {key.to_user_string() for key in CYCLE_ASSET_KEYS.values()}
    assert keys & cycle_keys == {CYCLE_ASSET_KEYS[cycle_type].to_user_string()}
    assert {key.to_user_string() for key in STATE_TABLE_KEYS} <= keys
    assert {"long_term_memory/ltm_clusters", "long_term_memory/ltm_memories", "long_term_memory/ltm_report",
            "consolidation/memory_links", "monitoring/memory_health", "monitoring/consolidation_stats"} <= keys
    assert not any(key.startswith(("working_memory/", "short_term_memory/")) for key in keys)
    assert dbt_steps(defs, job_name) == 1  # all post-cycle dbt models in one dbt invocation


def test_the_fast_rhythms(defs):
    working = selected(defs, "working_memory_job")
    assert {"raw_memories", "working_memory/wm_attention"} <= working
    assert not any(key.startswith(("short_term_memory/", "consolidation/")) for key in working)
    short = selected(defs, "short_term_memory_job")
    assert "short_term_memory/stm_coactivation" in short
    assert all(key.startswith("short_term_memory/") for key in short)


def test_the_full_cycle_runs_everything_in_the_order_of_a_night(defs):
    assert selected(defs, "full_cycle_job") == {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()
                                                 if defs.resolve_asset_graph().get(key).is_executable}
    graph = defs.resolve_asset_graph()
    order = [CYCLE_ASSET_KEYS[c] for c in ("hippocampal", "deep_sleep", "rem_sleep", "homeostasis")]
    for earlier, later in zip(order, order[1:]):
        assert earlier in graph.get(later).parent_keys
    assert dbt_steps(defs, "full_cycle_job") == 2  # before the cycles (WM/STM) and after them


def test_schedules_can_tag_the_cycle_key():
    from datetime import datetime, timezone

    assert jobs.cycle_key_tag("deep_sleep", datetime(2026, 11, 25, 2, tzinfo=timezone.utc)) == {
        "codex/cycle_key": "deep_sleep:2026-11-25T02"}


def test_no_job_selects_an_asset_nothing_materializes(defs):
    """Group selections leave out external assets (meta/stage_runs sits in the monitoring group): a job that
    selected one would fail to build."""
    graph = defs.resolve_asset_graph()
    external = {key.to_user_string() for key in graph.get_all_asset_keys() if not graph.get(key).is_executable}
    assert "meta/stage_runs" in external
    for name in JOB_NAMES:
        assert selected(defs, name) and not selected(defs, name) & external, name


def test_loading_the_jobs_and_definitions_opens_no_store(tmp_path):
    """Dagster imports the code location in every process it starts: building the jobs, schedules and
    definitions must not create or open the DuckDB file (that is done by runs, under the writer pool)."""
    home = tmp_path / "codex_home"
    env = {**os.environ, "CODEX_HOME": str(home), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
           "POSTGRES_DB_URL": "", "DAGSTER_DISABLE_TELEMETRY": "1"}
    env.pop("DUCKDB_PATH", None)
    probe = ("import duckdb\nopened = []\nreal = duckdb.connect\n"
             "duckdb.connect = lambda *a, **k: opened.append(str(a[0] if a else k.get('database'))) or real(*a, **k)\n"
             "import codex_dreams.jobs, codex_dreams.definitions\n"
             "print([path for path in opened if path != ':memory:'])")
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert not list(home.rglob("*.duckdb"))
