"""`codex query`: JSON that validates against the shipped schema, batch = single queries, text output, and one
clear error line with exit 2 for every kind of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from codex_dreams.cli.main import app

runner = CliRunner()


def cli(*args: str, input: str | None = None):
    result = runner.invoke(app, ["query", *args], input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unexpected exception: {result.exception!r}\n{result.output}")
    assert "Traceback" not in result.output
    return result


def _lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_json_output_validates_against_the_schema(recall_store, query_schema):
    validator = Draft202012Validator(query_schema)
    Draft202012Validator.check_schema(query_schema)
    for extra in ([], ["--explain"]):
        result = cli("--text", "ferry tickets to Hydra", "--k", "4", "--json", *extra)
        assert result.exit_code == 0, result.output
        [answer] = _lines(result)
        errors = sorted(validator.iter_errors(answer), key=str)
        assert errors == [], errors[0].message if errors else ""
        assert answer["text"] == "ferry tickets to Hydra" and answer["k"] == 4
        assert [r["memory_id"] for r in answer["results"]][:2] == ["ferry", "bills"]
        assert ("explanation" in answer["results"][0]) == bool(extra)
    # the schema is strict: a drifted field would be caught
    answer["results"][0]["signals"]["surprise"] = 1.0
    assert list(validator.iter_errors(answer))


def test_batch_mode_equals_single_queries(recall_store, tmp_path, query_schema):
    queries = [{"id": "q1", "text": "brought home a new feline companion"}, {"id": 2, "text": "Kovacsevic"},
               {"id": "q3", "text": "ferry tickets to Hydra"}]
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(json.dumps(q) for q in queries) + "\n\n")  # a blank line is skipped
    batch = cli("--file", str(path), "--k", "5", "--json", "--explain")
    assert batch.exit_code == 0, batch.output
    answers = _lines(batch)
    assert [a["id"] for a in answers] == ["q1", 2, "q3"]
    validator = Draft202012Validator(query_schema)
    for query, answer in zip(queries, answers):
        assert not list(validator.iter_errors(answer))
        single = _lines(cli("--text", query["text"], "--k", "5", "--json", "--explain"))[0]
        assert [r["memory_id"] for r in answer["results"]] == [r["memory_id"] for r in single["results"]]
        for a, b in zip(answer["results"], single["results"]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
            assert a["explanation"]["brought_by"] == b["explanation"]["brought_by"]
    assert len({a["query_id"] for a in answers}) == 3  # each query is its own recall
    stdin = cli("--file", "-", "--k", "5", "--json", input=path.read_text())
    assert [a["id"] for a in _lines(stdin)] == ["q1", 2, "q3"]


def test_text_output_shows_the_memories_and_with_explain_why(recall_store):
    result = cli("--text", "ferry tickets to Hydra", "--k", "3", "--explain")
    assert result.exit_code == 0, result.output
    assert "Booked the ferry tickets to Hydra for our anniversary weekend." in result.stdout
    assert "associative via ferry (hebbian 0.90)" in result.stdout
    plain = cli("--text", "ferry tickets to Hydra", "--k", "3")
    assert "associative via" not in plain.stdout and "ferry" in plain.stdout


@pytest.mark.parametrize("args, expected", [
    (["--text", "x", "--k", "abc"], "Invalid value for '--k' / '-k'"),
    (["--text", "x", "--colour", "red"], "No such option: --colour"),
    (["--text", "x", "--k"], "Option '--k' requires an argument"),
    (["--text", "x", "--k", "-3"], "k must be between 1 and 1000 (got -3)"),
    (["--text", "x", "--k", "0"], "k must be between 1 and 1000 (got 0)"),
    (["--text", "   "], "the query text is empty"),
    (["--text", ""], "the query text is empty"),
    ([], "give exactly one of --text or --file"),
    (["--text", "x", "--file", "q.jsonl"], "give exactly one of --text or --file"),
    (["--file", "missing.jsonl"], "query file missing.jsonl does not exist"),
])
def test_bad_input_is_one_error_line_and_exit_2(settings, args, expected):
    """Input is checked before the snapshot is touched: no store is needed to refuse it."""
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ") and expected in line, line


@pytest.mark.parametrize("content, expected", [
    ('{"id": 1, "text": "ok"}\n{"id": 2, "text": "   "}\n', "queries.jsonl line 2: the query text is empty"),
    ('{"id": 1, "text": "ok"}\nnot json\n', "queries.jsonl line 2: not valid JSON (Expecting value)"),
    ('["a list"]\n', 'queries.jsonl line 1: expected an object like {"id": "q1", "text": "..."}'),
    ('{"id": 1}\n', 'queries.jsonl line 1: missing "text"'),
    ('{"id": [1], "text": "ok"}\n', 'queries.jsonl line 1: "id" must be a string or an integer'),
    ('{"id": 1, "text": 5}\n', "queries.jsonl line 1: the query text must be a string"),
    ("\n\n", "queries.jsonl holds no queries"),
])
def test_a_bad_query_file_is_refused_before_anything_is_answered(settings, tmp_path, content, expected):
    from codex_dreams.retrieval import log as recall_log

    path = tmp_path / "queries.jsonl"
    path.write_text(content)
    result = cli("--file", str(path), "--json")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"Error: {expected}"]
    assert recall_log.pending(recall_log.log_path(settings)) == 0  # nothing was recalled


def test_a_bad_weight_setting_is_one_line_and_exit_2(settings, monkeypatch):
    monkeypatch.setenv("CODEX_RECALL_W_DENSE", "heavy")
    result = cli("--text", "x")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: Invalid setting CODEX_RECALL_W_DENSE:")


def _hold_store(path: Path) -> subprocess.Popen:
    code = ("import duckdb, sys, time\n"
            f"con = duckdb.connect({str(path)!r})\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


class _VirtualClock:
    """Stands in for the `time` module of the store's connect(): sleeping advances the clock at once, and a wait
    beyond a virtual minute is taken for a hang (recall waits at most seconds for the store)."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.now > 60:
            raise AssertionError("recall waited more than a minute for the store")


def test_no_snapshot_and_a_busy_store_is_a_clear_failure(settings, monkeypatch):
    from codex_dreams.store import duckdb_store, open_store

    with open_store(settings):
        pass
    holder = _hold_store(settings.database_path)
    clock = _VirtualClock()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(duckdb_store, "time", clock)
            result = cli("--text", "anything")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: no recall snapshot yet; run `codex consolidate` or wait for the pipeline (the memory store is "
        "busy, so one cannot be built now)"]
    assert 0 < clock.now <= 60  # waited for the store, a bounded time (a hang would have raised above)


def test_the_console_script_answers_in_a_fresh_process(recall_store, codex_home):
    """The installed `codex`, as a user runs it: JSON out, and no Dagster or dbt imported (their imports alone
    would take seconds; the 1.5 s target itself is measured by benchmarks/recall.py on a quiet machine)."""
    env = {**os.environ, "CODEX_HOME": str(codex_home)}
    codex = str(Path(sys.executable).with_name("codex"))
    done = subprocess.run([codex, "query", "--text", "Kovacsevic", "--k", "2", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["memory_id"] == "zoltan"
    probe = ("import sys\nfrom codex_dreams.cli.main import app\n"
             "try:\n    app(['query', '--text', 'Kovacsevic', '--json'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'dbt', 'dagster_dbt')))")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
