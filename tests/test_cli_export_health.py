"""`codex export` and `codex health`: output, exit codes and bad input, through the real CLI."""

import csv
import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from codex_dreams.cli.main import app
from codex_dreams.sources.ingest import drain_if_free, remember

runner = CliRunner()


@pytest.fixture
def three_memories(settings):
    contents = ["Booked the Lisbon flight", 'Sam said "let\'s get a plant", then laughed', "Ran 8 km, knee fine"]
    for i, text in enumerate(contents):
        remember(text, at=f"2026-10-0{i + 1}T08:00:00Z", metadata={"n": i, "tags": ["a", "b"]}, settings=settings)
    assert drain_if_free(settings) == 3
    return contents


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_export_writes_every_row_in_each_format(three_memories, tmp_path, fmt):
    target = tmp_path / f"out.{fmt}"
    result = runner.invoke(app, ["export", "--format", fmt, "--output", str(target), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"path": str(target), "format": fmt, "stage": "raw", "rows": 3}
    if fmt == "json":
        rows = json.loads(target.read_text())
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in target.read_text().splitlines()]
    elif fmt == "csv":
        with target.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        rows = pq.read_table(target).to_pylist()
    assert [row["content"] for row in rows] == three_memories  # ordered by time, text intact
    if fmt in ("json", "jsonl"):
        assert rows[1]["metadata"] == {"n": 1, "tags": ["a", "b"]}
    assert not list(tmp_path.glob(".*.partial"))


def test_export_refuses_to_overwrite_without_force(three_memories, tmp_path):
    target = tmp_path / "out.json"
    target.write_text("precious")
    result = runner.invoke(app, ["export", "--format", "json", "--output", str(target)])
    assert result.exit_code == 2
    assert "exists; pass --force to overwrite it" in result.stderr
    assert target.read_text() == "precious"
    forced = runner.invoke(app, ["export", "--format", "json", "--output", str(target), "--force"])
    assert forced.exit_code == 0
    assert len(json.loads(target.read_text())) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "unknown format 'xml'; choose one of json, jsonl, csv, parquet"),
        (["--stage", "dreams"], "unknown stage 'dreams'"),
    ],
)
def test_export_bad_input_is_one_line(three_memories, tmp_path, args, message):
    result = runner.invoke(app, ["export", "--output", str(tmp_path / "x.out"), *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_export_into_a_missing_directory_is_refused(three_memories, tmp_path):
    result = runner.invoke(app, ["export", "--output", str(tmp_path / "nowhere" / "x.json")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_health_on_a_fresh_store_is_healthy(three_memories):
    result = runner.invoke(app, ["health", "--json", "--verbose"])
    report = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert report["status"] == "healthy"
    names = {check["name"] for check in report["checks"]}
    assert {"store", "inbox", "llm"} <= names
    store = next(c for c in report["checks"] if c["name"] == "store")
    assert "3 active memories" in store["detail"]


def test_unreachable_llm_degrades_and_unreachable_postgres_is_unhealthy(three_memories, monkeypatch):
    monkeypatch.setenv("CODEX_LLM_PROVIDER", "ollama")
    monkeypatch.setenv("OLLAMA_URL", "http://127.0.0.1:9")
    degraded = runner.invoke(app, ["health", "--json"])
    assert degraded.exit_code == 1
    assert json.loads(degraded.stdout)["status"] == "degraded"

    monkeypatch.setenv("POSTGRES_DB_URL", "postgresql://codex:hunter2-secret@127.0.0.1:1/codex_db")
    unhealthy = runner.invoke(app, ["health"])
    assert unhealthy.exit_code == 2
    assert "Overall: unhealthy" in unhealthy.stdout
    assert "hunter2-secret" not in unhealthy.output
    assert "postgresql://codex:***@127.0.0.1:1/codex_db" in unhealthy.stdout.replace("\n", "")
