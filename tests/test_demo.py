"""`codex demo` (what `make demo` runs): loads the packaged memories, runs the full cycle, prints the counts."""

import json

import pytest
from typer.testing import CliRunner

from codex_dreams.cli.main import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_demo_runs_the_whole_pipeline_and_reports_every_stage(settings):
    result = runner.invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "SUCCESS", summary["failures"]
    assert summary["demo_memories"] == summary["new_memories"] > 290
    rows = {(t["stage"], t["table"]): t["rows"] for t in summary["tables"]}
    total = summary["demo_memories"]
    assert rows[("raw", "memories")] == total
    assert rows[("working_memory", "wm_attention")] == total
    assert rows[("short_term_memory", "stm_memories")] == total  # nothing lost
    assert rows[("short_term_memory", "stm_episodes")] > 50
    assert rows[("consolidation", "associations")] > 0
    assert 0 < rows[("long_term_memory", "ltm_memories")] <= total
    assert rows[("monitoring", "memory_health")] > 0

    again = runner.invoke(app, ["demo", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["new_memories"] == 0  # the demo set is loaded once
