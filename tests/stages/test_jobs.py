"""The rhythm jobs (codex_dreams.jobs): names are a contract with the schedules; selections and step layout."""

import dagster as dg
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
    assert dg.AssetSelection  # the module imports cleanly without opening any store
