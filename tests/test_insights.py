"""`codex insights` offline: extractive insights over the demo memories, stored with provenance."""

import json

import pytest
from typer.testing import CliRunner

from codex_dreams.cli.main import app

runner = CliRunner()


@pytest.fixture
def demo_store(settings):
    from codex_dreams.enrichment import enrich_pending
    from codex_dreams.pipeline import load_demo_memories

    loaded = load_demo_memories(settings)
    assert loaded.stored and loaded.stored > 250
    enrich_pending(settings)
    return settings


def test_insights_cite_real_memories_and_are_stored(demo_store):
    from codex_dreams.store import open_store

    result = runner.invoke(app, ["insights", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    kinds = {insight["kind"] for insight in report["insights"]}
    assert {"topics", "people", "mood", "central"} <= kinds
    with open_store(demo_store) as con:
        known = {row[0] for row in con.execute("select id from raw.memories").fetchall()}
        stored = con.execute("select insight_id, kind, evidence, provenance from long_term_memory.insights").fetchall()
    for insight in report["insights"]:
        assert insight["evidence"], insight["title"]
        assert set(insight["evidence"]) <= known
        assert insight["provenance"]["method"] == "offline-extractive"
    assert {row[0] for row in stored} == {i["insight_id"] for i in report["insights"]}
    # the newest memory of the demo is 2026-11-09: "recent" is event time, not today's date
    assert report["period_end"].startswith("2026-11-09")
    people = next(i for i in report["insights"] if i["kind"] == "people")
    assert "Tom" in people["body"] or "Sam" in people["body"]
    # the demo text once began "people=Sam|...", and "people" led the recurring topics
    topics = next(i for i in report["insights"] if i["kind"] == "topics")
    assert "people (" not in topics["body"].lower(), topics["body"]


def test_running_twice_replaces_instead_of_duplicating(demo_store):
    from codex_dreams.store import open_store

    first = json.loads(runner.invoke(app, ["insights", "--json"]).stdout)
    second = json.loads(runner.invoke(app, ["insights", "--json"]).stdout)
    assert [i["insight_id"] for i in first["insights"]] == [i["insight_id"] for i in second["insights"]]
    with open_store(demo_store) as con:
        assert con.execute("select count(*) from long_term_memory.insights").fetchone()[0] == len(first["insights"])


def test_insights_on_an_empty_store_and_bad_days(settings):
    empty = runner.invoke(app, ["insights"])
    assert empty.exit_code == 0
    assert "No memories yet" in empty.stdout
    bad = runner.invoke(app, ["insights", "--days", "0"])
    assert bad.exit_code == 2
    assert "--days must be at least 1" in bad.stderr
