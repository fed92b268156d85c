"""A family note from 1900 (or year 1) is a real memory: it goes through every stage and is recalled. A time
years in the future is a placeholder, not a time: it is refused at the door with one line, and changes nothing."""

import pytest
from typer.testing import CliRunner

from codex_dreams.cli.main import app
from codex_dreams.sources.records import InvalidMemory, make_record

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.mark.parametrize("when", ["9999-12-31T00:00:00Z", "2100-01-01T00:00:00Z"])
def test_a_time_years_ahead_is_refused_at_the_door(when, settings):
    with pytest.raises(InvalidMemory, match="more than a year in the future"):
        make_record("Placeholder date", at=when)
    result = runner.invoke(app, ["remember", "Placeholder date", "--at", when])
    assert result.exit_code == 2 and "more than a year in the future" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    from codex_dreams.sources import inbox

    assert inbox.pending(settings.inbox_path) == 0


def test_memories_from_1900_and_year_one_go_through_every_stage(settings):
    from codex_dreams.api import recall
    from codex_dreams.pipeline import run_full_cycle
    from codex_dreams.sources.ingest import remember

    remember("Great-grandmother Ida arrived in Hamburg by steamship", at="1900-05-01T12:00:00Z", settings=settings)
    remember("A coin minted in the first year of the common era", at="0001-01-01T00:00:00Z", settings=settings)
    remember("Planted the tulip bulbs along the fence", at="2026-11-02T09:00:00Z", settings=settings)
    remember("Coffee with Priya near the office", at="2026-11-02T09:00:10Z", settings=settings)
    first = run_full_cycle(settings)
    assert first["status"] == "SUCCESS", first["failures"]
    second = run_full_cycle(settings)  # and the run after it, which used to fail at the contract every time
    assert second["status"] == "SUCCESS", second["failures"]
    [top] = recall("Ida steamship Hamburg", k=1, log=False, settings=settings)
    assert top.content.startswith("Great-grandmother Ida") and top.created_at.year == 1900
