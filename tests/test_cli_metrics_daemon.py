"""`codex metrics` and the `codex daemon` subcommands that need no running daemon: output and exit codes."""

import json

import pytest
from typer.testing import CliRunner

from codex_dreams.cli.main import app
from codex_dreams.sources.ingest import drain_if_free, remember

runner = CliRunner()


def test_metrics_counts_what_happened_in_the_period(settings):
    for i in range(4):
        remember(f"Note {i} about the Atlas cutover", at=f"2026-11-0{i + 1}T09:00:00Z", settings=settings)
    drain_if_free(settings)
    result = runner.invoke(app, ["metrics", "--period", "1h", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["period"] == "1h"
    assert report["store"]["memories_ingested"] == 4  # ingested now, whatever their event time
    assert report["runs"] == {}
    text = runner.invoke(app, ["metrics", "--period", "7d"])
    assert text.exit_code == 0
    assert "memories ingested: 4" in text.stdout


@pytest.mark.parametrize("period", ["", "24", "0h", "1y", "-3d", "h24"])
def test_metrics_rejects_a_bad_period(settings, period):
    result = runner.invoke(app, ["metrics", "--period", period])
    assert result.exit_code == 2
    assert "is not like 24h, 7d, 30m or 2w" in result.stderr
    assert "Traceback" not in result.output


def test_daemon_commands_when_nothing_runs(settings):
    status = runner.invoke(app, ["daemon", "status", "--json"])
    assert status.exit_code == 3  # LSB: program is not running
    report = json.loads(status.stdout)
    assert report["running"] is False
    assert {p["name"] for p in report["processes"]} == {"webserver", "daemon"}
    assert len(report["rhythms"]) == 7
    stop = runner.invoke(app, ["daemon", "stop"])
    assert stop.exit_code == 0 and "Not running." in stop.stdout
    logs = runner.invoke(app, ["daemon", "logs", "--lines", "5"])
    assert logs.exit_code == 0 and logs.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["daemon", "logs", "--level", "LOUD"], "unknown level 'LOUD'; choose one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        (["daemon", "logs", "--lines", "0"], "--lines must be at least 1"),
    ],
)
def test_daemon_logs_bad_input(settings, args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_daemon_logs_filter_by_level(settings):
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    (settings.logs_dir / "daemon.log").write_text(
        "2026-11-25 10:00:00 +0000 - dagster.daemon - INFO - tick\n"
        "2026-11-25 10:00:01 +0000 - dagster.daemon - ERROR - boom\n"
        "2026-11-25 10:00:02 +0000 - dagster.daemon - WARNING - slow\n")
    result = runner.invoke(app, ["daemon", "logs", "--level", "warning"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "[daemon] 2026-11-25 10:00:01 +0000 - dagster.daemon - ERROR - boom",
        "[daemon] 2026-11-25 10:00:02 +0000 - dagster.daemon - WARNING - slow",
    ]
    last = runner.invoke(app, ["daemon", "logs", "--lines", "1"])
    assert last.stdout.splitlines() == ["[daemon] 2026-11-25 10:00:02 +0000 - dagster.daemon - WARNING - slow"]


def test_metrics_sum_what_cycles_did_and_report_states_from_the_last_cycle(store):
    """Counts of work (links strengthened) add up over the period; a state (links after, mean strength after,
    a scale factor) is the last cycle's of its type, never summed, and floats are rounded for people."""
    from datetime import datetime

    from codex_dreams.commands.metrics import store_metrics

    rows = [("hippocampal", "hippocampal:2026-11-02T10", {"strengthened": 3, "links_after": 10,
                                                           "mean_strength_after": 0.30000000000000004}),
            ("homeostasis", "homeostasis:2026-W45", {"scaled": 10, "scale_factor": 1.5, "links_after": 9,
                                                      "mean_strength_after": 0.45}),
            ("hippocampal", "hippocampal:2026-11-02T11", {"strengthened": 2, "links_after": 12,
                                                           "mean_strength_after": 0.31})]
    for minute, (cycle_type, key, counts) in enumerate(rows):
        at = datetime(2026, 11, 2, 12, minute)
        store.execute("insert into consolidation.cycle_ledger (cycle_type, cycle_key, as_of, started_at, finished_at, "
                      "counts, params, run_id) values (?, ?, ?, ?, ?, ?, '{}', 'r')",
                      [cycle_type, key, at, at, at, json.dumps(counts)])
    metrics = store_metrics(store, datetime(2026, 11, 1))
    assert metrics["cycles"] == 3
    assert metrics["consolidation_sums"] == {"strengthened": 5, "scaled": 10}
    assert metrics["consolidation_last_cycle"] == {
        "hippocampal": {"cycle_key": "hippocampal:2026-11-02T11", "links_after": 12, "mean_strength_after": 0.31},
        "homeostasis": {"cycle_key": "homeostasis:2026-W45", "scale_factor": 1.5, "links_after": 9,
                        "mean_strength_after": 0.45}}
