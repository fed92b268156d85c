"""`codex demo` (what `make demo` runs): loads the packaged memories, runs the full cycle, prints the counts."""

import json
import re

import pytest
from typer.testing import CliRunner

from codex_dreams.cli.main import app
from codex_dreams.pipeline import demo_memories_path

runner = CliRunner()


def test_demo_memories_read_like_notes_with_people_in_metadata():
    """The packaged set is what a new user sees first: a `key=value|` prefix in the text showed in recall
    results and made "people" the top topic of `codex insights`; who was there belongs in metadata.people."""
    memories = [json.loads(line) for line in demo_memories_path().read_text(encoding="utf-8").splitlines()
                if line.strip()]
    prefixed = [m["content"][:40] for m in memories if re.match(r"^\w+=", m["content"])]
    assert prefixed == []
    with_people = [m for m in memories if "people" in m["metadata"]]
    # 129 memories always had metadata.people; the 35 that had the prefix in their text now have it too
    assert len(with_people) == 164
    for memory in with_people:
        people = memory["metadata"]["people"]
        assert isinstance(people, list) and people and all(isinstance(p, str) and p.strip() == p and p
                                                           for p in people), memory
    by_content = {m["content"]: m["metadata"].get("people") for m in memories}
    assert by_content["Date night on Alberta Street — Thai food and then the tiny bookshop with the cat asleep in "
                      "the window."] == ["Sam"]
    team_lunch = next(p for c, p in by_content.items() if c.startswith("Team lunch at Kestrel café. The"))
    assert team_lunch == ["Priya", "Tom", "Jonas", "Elena"]


@pytest.mark.slow
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
