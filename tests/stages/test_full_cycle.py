"""full_cycle_job end to end, offline, on the packaged demo memories (what `codex demo` runs), then the hourly
hippocampal cycle as its schedule tags it, twice (test_jobs checks what the hourly job selects around it)."""

import os

import dagster as dg
import pytest

from codex_dreams.stages.consolidation import HIPPOCAMPAL
from scenario import query

pytestmark = pytest.mark.slow
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SCHEDULE_TAG = {"codex/cycle_key": "hippocampal_consolidation_schedule@2026-11-09T09:00+0000"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(settings, full_cycle result, scheduled hippocampal result, (defs, instance, resources)) on a store
    holding the demo memories."""
    from codex_dreams import pipeline
    from codex_dreams.definitions import defs
    from codex_dreams.resources import build_resources
    from codex_dreams.settings import load_settings

    home = tmp_path_factory.mktemp("demo") / "codex_home"
    with pytest.MonkeyPatch.context() as patch:  # the enrichment asset reads the settings at run time
        patch.setenv("CODEX_HOME", str(home))
        patch.setenv("CODEX_LLM_PROVIDER", "offline")
        patch.setenv("POSTGRES_DB_URL", "")
        for variable in ("DUCKDB_PATH", "DAGSTER_HOME", "OLLAMA_URL", "OPENAI_API_KEY"):
            patch.delenv(variable, raising=False)
        patch.chdir(home.parent)
        settings = load_settings()
        loaded = pipeline.load_demo_memories(settings)
        assert loaded.stored == loaded.written > 300
        resources = build_resources(settings)
        instance = dg.DagsterInstance.ephemeral()
        full = defs.resolve_job_def("full_cycle_job").execute_in_process(
            instance=instance, resources=resources, run_config=QUIET, raise_on_error=False)
        scheduled = dg.materialize([defs.get_assets_def(HIPPOCAMPAL)], instance=instance, resources=resources,
                                   run_config=QUIET, tags=SCHEDULE_TAG, raise_on_error=False)
        os.environ.pop("DUCKDB_PATH", None)
    return settings, full, scheduled, (defs, instance, resources)


def count(settings, table):
    return query(settings, f"select count(*) from {table}")[0][0]


def test_every_stage_holds_the_demo_memories(demo):
    settings, full, _, _ = demo
    failures = [event.step_key for event in full.all_events if event.is_step_failure]
    assert full.success, failures
    memories = count(settings, "raw.memories")
    assert count(settings, "enriched.memory_enrichment") == memories
    assert count(settings, "working_memory.wm_attention") == memories
    assert count(settings, "short_term_memory.stm_memories") == memories
    assert count(settings, "consolidation.associations") > 0
    assert count(settings, "consolidation.memory_consolidation") == memories
    assert 0 < count(settings, "long_term_memory.ltm_memories") < memories
    assert count(settings, "long_term_memory.ltm_concepts") > 0
    assert count(settings, "long_term_memory.ltm_columns") > 0
    assert count(settings, "long_term_memory.ltm_memory_embeddings") == memories
    assert count(settings, "monitoring.memory_dashboard") > 0


def test_the_night_applied_each_cycle_once_at_the_watermark(demo):
    settings = demo[0]
    keys = [row[0] for row in query(settings, "select cycle_key from consolidation.cycle_ledger order by started_at")]
    # the latest demo memory is Monday 2026-11-09 05:30: the first ticks after it, and its ISO week
    assert keys[:4] == ["hippocampal:2026-11-09T06", "deep_sleep:2026-11-09T06", "rem_sleep:2026-11-09T06:00",
                        "homeostasis:2026-W46"]


def test_checks_pass_and_metadata_reads_well(demo):
    _, full, _, _ = demo
    evaluations = full.get_asset_check_evaluations()
    assert evaluations and all(evaluation.passed for evaluation in evaluations)
    hippocampal = full.asset_materializations_for_node("consolidation__hippocampal_consolidation")[0].metadata
    assert hippocampal["status"].value == "applied"
    assert "| strength |" in hippocampal["strength_histogram"].value
    assert "pruned after" in hippocampal["forgetting_curve"].value
    report = full.asset_materializations_for_node("long_term_memory__ltm_report")[0].metadata
    assert "fresh" in report["categories"].value or "consolidating" in report["categories"].value
    assert "| rehearsals" in report["forgetting_curve"].value


def test_health_has_no_critical_alert(demo):
    levels = dict(query(demo[0], "select check_name, alert_level from monitoring.memory_health"))
    assert "CRITICAL" not in levels.values(), levels


def test_a_scheduled_cycle_applies_once(demo):
    settings, _, scheduled, (defs, instance, resources) = demo
    assert scheduled.success
    assert query(settings, "select count(*) from consolidation.cycle_ledger where cycle_key = 'hippocampal:2026-11-09T09'"
                 ) == [(1,)]
    before = query(settings, "select * from consolidation.associations order by memory_a, memory_b")
    again = dg.materialize([defs.get_assets_def(HIPPOCAMPAL)], instance=instance, resources=resources,
                           run_config=QUIET, tags=SCHEDULE_TAG)
    metadata = again.asset_materializations_for_node("consolidation__hippocampal_consolidation")[0].metadata
    assert metadata["status"].value == "skipped: already applied"
    assert query(settings, "select * from consolidation.associations order by memory_a, memory_b") == before


def test_current_views_are_not_rebuilt_but_their_checks_run(demo, monkeypatch):
    """After the full cycle every view carries the fingerprint the pipeline computes (codex_dreams.dbt and
    macros/view_materialization.sql agree), so the next run leaves the views out of dbt and reports them as
    current, while their tests still run; a changed project re-creates them."""
    from datetime import datetime

    from codex_dreams import dbt as codex_dbt
    from codex_dreams.stages.cycles import cycle_for

    settings, _, _, (defs, instance, resources) = demo
    rem_key = cycle_for("rem_sleep", datetime(2026, 11, 9, 10, 0)).cycle_key
    monkeypatch.setenv("CODEX_HOME", str(settings.codex_home))  # dbt_vars() reads the enrichment model key
    monkeypatch.setenv("CODEX_LLM_PROVIDER", "offline")
    variables = codex_dbt.dbt_vars()
    views = query(settings, "select database_name, schema_name, view_name, comment from duckdb_views() "
                            "where not internal and schema_name in ('working_memory', 'short_term_memory', "
                            "'consolidation', 'long_term_memory', 'monitoring')")
    assert len(views) >= 8
    for database, schema, name, comment in views:
        assert comment == codex_dbt.view_fingerprint(database, schema, name, variables), (schema, name)

    def rem_run():
        result = defs.resolve_job_def("rem_sleep_job").execute_in_process(
            instance=instance, resources=resources, run_config=QUIET, tags={"codex/cycle_key": rem_key})
        os.environ.pop("DUCKDB_PATH", None)
        assert result.success
        statuses = {}
        for materialization in result.asset_materializations_for_node("codex_dbt_models"):
            status = materialization.metadata.get("status")
            statuses[materialization.asset_key.to_user_string()] = status.value if status else None
        checks = {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}
        return statuses, checks

    statuses, checks = rem_run()
    assert statuses["monitoring/memory_health"] == "current view, not re-created"
    assert statuses["consolidation/memory_links"] == "current view, not re-created"
    assert statuses["long_term_memory/ltm_memories"] == "success"  # tables are rebuilt as always
    assert checks["memory_health_column_contract"] and checks["memory_links_column_contract"]

    monkeypatch.setattr(codex_dbt, "project_fingerprint", lambda: "a changed project")
    statuses, checks = rem_run()
    assert statuses["monitoring/memory_health"] == statuses["consolidation/memory_links"] == "success"
    assert checks["memory_health_column_contract"]
    comment, = query(settings, "select comment from duckdb_views() where view_name = 'memory_health'")[0]
    assert comment == codex_dbt.view_fingerprint(settings.database_path.stem, "monitoring", "memory_health",
                                                 codex_dbt.dbt_vars())
