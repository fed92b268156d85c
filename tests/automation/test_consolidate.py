"""`codex consolidate` runs a rhythm's job in this process (no daemon), records it in DAGSTER_HOME, and the
short-term backlog it reports drives the consolidation sensor."""

import json

import dagster as dg
import pytest
from typer.testing import CliRunner

from codex_dreams.cli.main import app

pytestmark = pytest.mark.slow
runner = CliRunner()

MEMORIES = [
    ("2026-11-02T09:00:00Z", "Standup: Priya demoed the Atlas migration dashboard, Tom raised the disk alert."),
    ("2026-11-02T09:00:10Z", "Agreed with Priya to move ATLAS-212 into this sprint."),
    ("2026-11-02T09:00:20Z", "Tom will pair with Jonas on the NameNode failover runbook."),
    ("2026-11-02T13:30:00Z", "Lunch at Kestrel café with Sam, we planned the Lisbon trip."),
    ("2026-11-02T13:30:15Z", "Sam wants to see Belém and the tile museum in Lisbon."),
    ("2026-11-02T19:00:00Z", "Evening run along the Waterfront, knee felt fine, happy."),
    ("2026-11-03T08:00:00Z", "Dr. Okafor cleared me for gentle downhill running."),
    ("2026-11-04T10:00:00Z", "Cutover day: Atlas went live, Elena sent cake to the team."),
    ("2026-11-05T21:00:00Z", "Quiet evening with Biscuit on the porch, reading about Porto."),
]


def _latest_metadata(instance, key: dg.AssetKey) -> dict:
    records = instance.fetch_materializations(key, limit=1, ascending=False).records
    assert records, f"{key.to_user_string()} was not materialized"
    return {name: value.value for name, value in records[0].asset_materialization.metadata.items()}


def test_consolidate_runs_jobs_in_process_and_reports_the_backlog(settings):
    from codex_dreams.automation.rhythms import BACKLOG_ASSET
    from codex_dreams.definitions import build_definitions
    from codex_dreams.sources.ingest import remember

    for at, text in MEMORIES:
        remember(text, at=at, settings=settings)

    working = runner.invoke(app, ["consolidate", "--type", "working", "--json"])
    assert working.exit_code == 0, working.output
    summary = json.loads(working.stdout)
    assert summary["status"] == "SUCCESS" and summary["where"] == "in-process"
    assert any("memory_enrichment" in step["name"] for step in summary["steps"])

    # the 30-second rhythm also republishes the recall snapshot: new memories are searchable at once
    query = runner.invoke(app, ["query", "--text", "Kestrel café lunch", "--k", "1", "--json"])
    assert query.exit_code == 0, query.output
    [top] = json.loads(query.stdout)["results"]
    assert top["content"].startswith("Lunch at Kestrel café with Sam")

    short = runner.invoke(app, ["consolidate", "--type", "short_term", "--json"])
    assert short.exit_code == 0, short.output

    with dg.DagsterInstance.from_config(str(settings.dagster_home_path)) as instance:
        before = _latest_metadata(instance, BACKLOG_ASSET)
        assert before["episodes_ready"] == before["episodes_total"] >= 3
        assert before["memories_waiting"] == len(MEMORIES)
        runs = instance.get_runs()
        assert {run.job_name for run in runs} == {"working_memory_job", "short_term_memory_job"}

        sensor = build_definitions().resolve_sensor_def("consolidation_backlog_sensor")
        with dg.build_sensor_context(instance=instance, sensor_name=sensor.name) as ctx:
            assert len(sensor.evaluate_tick(ctx).run_requests) == 1

    hippocampal = runner.invoke(app, ["consolidate", "--type", "hippocampal", "--json"])
    assert hippocampal.exit_code == 0, hippocampal.output
    again = runner.invoke(app, ["consolidate", "--type", "short_term", "--json"])
    assert again.exit_code == 0, again.output
    with dg.DagsterInstance.from_config(str(settings.dagster_home_path)) as instance:
        after = _latest_metadata(instance, BACKLOG_ASSET)
    assert after["memories_waiting"] < before["memories_waiting"]
    assert after["episodes_ready"] < before["episodes_ready"]


def test_consolidate_rejects_an_unknown_type(settings):
    result = runner.invoke(app, ["consolidate", "--type", "nap"])
    assert result.exit_code == 2
    assert "unknown --type 'nap'" in result.stderr
