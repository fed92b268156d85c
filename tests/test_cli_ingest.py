"""`codex remember` and `codex import` through the real CLI: every bad-input rule gives one clear error line
(no traceback, exit code 2) and leaves the store exactly as it was; valid lines are kept unless --strict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from codex_dreams.cli.main import app
from codex_dreams.settings import MAX_MEMORY_CHARS, load_settings
from codex_dreams.sources import inbox

runner = CliRunner()
ISO_HINT = "is not an ISO 8601 date-time (e.g. 2026-11-25T09:30:00Z)"


def store_state(settings) -> dict:
    """Rows in raw.memories, rows waiting in the inbox, and the inbox's high-water mark."""
    raw = 0
    if settings.database_path.exists():
        con = duckdb.connect(str(settings.database_path), read_only=True)
        try:
            raw = con.execute("select count(*) from raw.memories").fetchone()[0]
        finally:
            con.close()
    return {"raw": raw, "inbox": inbox.pending(settings.inbox_path),
            "hwm": inbox.high_water_mark(settings.inbox_path)}


def cli(*args: str):
    result = runner.invoke(app, list(args))
    # Typer turns an unexpected exception into result.exception; the CLI must never let one escape.
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unexpected exception: {result.exception!r}\n{result.output}")
    assert "Traceback" not in result.output
    return result


def assert_bad_input(result, expected_error: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"Error: {expected_error}"]


@pytest.fixture
def seeded(settings, tmp_path):
    """A store with two stored memories and one waiting in the inbox, so 'unchanged' means something."""
    seed = tmp_path / "seed.jsonl"
    seed.write_text(
        '{"content": "Coffee with Ana at the harbour", "created_at": "2024-05-01T09:00:00Z"}\n'
        '{"content": "Finished the quarterly report", "created_at": "2024-05-01T17:30:00Z"}\n'
    )
    assert cli("import", str(seed)).exit_code == 0
    assert cli("remember", "Waiting in the inbox", "--at", "2024-05-02T08:00:00Z").exit_code == 0
    state = store_state(settings)
    assert state == {"raw": 2, "inbox": 1, "hwm": 1}  # the import went straight into the free store
    return state


# -- remember ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["remember", ""], "content is empty"),
        (["remember", "   \t  "], "content is empty"),
        (["remember", "x" * (MAX_MEMORY_CHARS + 1)],
         f"content is {MAX_MEMORY_CHARS + 1:,} characters; the limit is {MAX_MEMORY_CHARS:,} per memory"),
        (["remember", "a\x00b"], "content must not contain NUL characters"),
        (["remember", "ok", "--meta", "[1, 2]"], "metadata must be a JSON object, not list"),
        (["remember", "ok", "--meta", '"just text"'], "metadata must be a JSON object, not str"),
        (["remember", "ok", "--meta", "42"], "metadata must be a JSON object, not int"),
        (["remember", "ok", "--meta", "{bad"],
         "metadata is not valid JSON (Expecting property name enclosed in double quotes at column 2)"),
        (["remember", "ok", "--meta", '{"score": NaN}'], "metadata is not valid JSON (NaN is not allowed)"),
        (["remember", "ok", "--at", "yesterday"], f"created_at 'yesterday' {ISO_HINT}"),
        (["remember", "ok", "--at", "2024-02-30T10:00:00"], f"created_at '2024-02-30T10:00:00' {ISO_HINT}"),
        (["remember", "ok", "--at", "0001-01-01T00:00:00+01:00"],
         "created_at '0001-01-01T00:00:00+01:00' is out of range"),
        # user text that looks like console markup is printed as is (it used to crash or vanish)
        (["remember", "ok", "--at", "[/]"], f"created_at '[/]' {ISO_HINT}"),
        (["remember", "ok", "--at", "[bold]noon"], f"created_at '[bold]noon' {ISO_HINT}"),
    ],
    ids=["empty", "whitespace", "too-long", "nul", "meta-list", "meta-str", "meta-int", "meta-bad-json",
         "meta-nan", "bad-date", "impossible-date", "date-overflow", "markup-close", "markup-open"],
)
def test_remember_refuses_bad_input_and_changes_nothing(seeded, settings, args, expected):
    assert_bad_input(cli(*args), expected)
    assert store_state(settings) == seeded


def test_remember_accepts_the_size_limit_exactly(settings):
    result = cli("remember", "y" * MAX_MEMORY_CHARS, "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["content"]) == MAX_MEMORY_CHARS


def test_remember_json_output_and_time_zone_conversion(settings):
    result = cli("remember", "  Lunch with Ana in Lisbon  ", "--at", "2024-06-01T12:30:00+02:00",
                 "--meta", '{"place": "Lisbon"}', "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["content"] == "Lunch with Ana in Lisbon"
    assert payload["created_at"] == "2024-06-01T10:30:00"  # stored as naive UTC
    assert payload["metadata"] == {"place": "Lisbon"}
    assert payload["destination"] == "embedded"
    # durable in the inbox when the command returns; the store file is not even needed
    assert store_state(settings) == {"raw": 0, "inbox": 1, "hwm": 1}


def test_remember_plain_output(settings):
    result = cli("remember", "Bought a blue bicycle", "--at", "2024-06-02T08:00:00Z")
    assert result.exit_code == 0
    assert result.stdout.startswith("Remembered ") and result.stdout.rstrip().endswith("at 2024-06-02T08:00:00Z")


def test_remember_fails_cleanly_when_the_inbox_cannot_be_written(codex_home, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("CODEX_HOME", str(blocker / "home"))
    result = cli("remember", "hello")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: cannot write the inbox {blocker / 'home' / 'inbox.sqlite'}: ")


def test_an_invalid_setting_is_bad_input(codex_home, monkeypatch):
    monkeypatch.setenv("MAX_CONCURRENCY", "0")
    result = cli("remember", "hello")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: Invalid setting MAX_CONCURRENCY:")


# -- import: whole-file errors --------------------------------------------------------------------------

def test_import_unknown_format(seeded, settings, tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"content": "fine"}\n')
    assert_bad_input(cli("import", str(path), "--format", "xml"),
                     "unknown format 'xml'; choose one of auto, jsonl, csv, locomo")
    assert store_state(settings) == seeded


def test_import_missing_file(seeded, settings, tmp_path):
    path = tmp_path / "nowhere.jsonl"
    assert_bad_input(cli("import", str(path)), f"{path} does not exist")
    assert store_state(settings) == seeded


def test_import_a_directory(seeded, settings, tmp_path):
    assert_bad_input(cli("import", str(tmp_path)), f"{tmp_path} is not a file")
    assert store_state(settings) == seeded


def test_import_unknown_extension_needs_a_format(seeded, settings, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text('{"content": "fine"}\n')
    assert_bad_input(cli("import", str(path)),
                     "cannot tell the format of notes.txt from its extension; pass --format jsonl, csv or locomo")
    assert store_state(settings) == seeded
    assert cli("import", str(path), "--format", "jsonl").exit_code == 0


def test_import_csv_without_content_column_refuses_the_whole_file(seeded, settings, tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("text,created_at\nA perfectly good memory,2024-01-01T00:00:00Z\n")
    assert_bad_input(cli("import", str(path)), "notes.csv has no 'content' column in its header row")
    assert store_state(settings) == seeded


def test_import_a_file_name_with_markup_characters(seeded, settings, tmp_path):
    path = tmp_path / "[bold]notes.csv"
    path.write_text("text\nhello\n")
    assert_bad_input(cli("import", str(path)), "[bold]notes.csv has no 'content' column in its header row")
    assert store_state(settings) == seeded


# -- import: one bad line, alone (nothing valid: refused) and among good lines (skipped) -----------------

GOOD_JSONL = '{"content": "Planted tomatoes on the balcony", "created_at": "2024-04-02T10:00:00Z"}\n'
CSV_HEADER = "content,created_at,metadata\n"
GOOD_CSV_ROW = "Planted tomatoes on the balcony,2024-04-02T10:00:00Z,\n"

BAD_LINES = {
    "bad-json": ("m.jsonl", "", '{"content": "unterminated\n',
                 "not valid JSON (Invalid control character at column 26)"),
    "bad-json-2": ("m.jsonl", "", '{"content": "x",}\n',
                   "not valid JSON (Expecting property name enclosed in double quotes at column 17)"),
    "nan": ("m.jsonl", "", '{"content": "x", "metadata": {"v": NaN}}\n', "not valid JSON (NaN is not allowed)"),
    "not-an-object": ("m.jsonl", "", '["content", "x"]\n', "expected a JSON object"),
    "missing-content": ("m.jsonl", "", '{"text_body": "x"}\n', "missing 'content'"),
    "bad-date": ("m.jsonl", "", '{"content": "x", "created_at": "last Tuesday"}\n',
                 f"created_at 'last Tuesday' {ISO_HINT}"),
    "meta-not-object": ("m.jsonl", "", '{"content": "x", "metadata": ["a", "b"]}\n',
                        "metadata must be a JSON object, not list"),
    "empty-content": ("m.jsonl", "", '{"content": "   "}\n', "content is empty"),
    "too-long": ("m.jsonl", "", json.dumps({"content": "z" * (MAX_MEMORY_CHARS + 5)}) + "\n",
                 f"content is {MAX_MEMORY_CHARS + 5:,} characters; the limit is {MAX_MEMORY_CHARS:,} per memory"),
    "not-utf8": ("m.jsonl", "", b'{"content": "caf\xe9"}\n', "not valid UTF-8 text"),
    "csv-extra-field": ("m.csv", CSV_HEADER, "Too many,2024-01-01T00:00:00Z,,surprise\n",
                        "more fields than the header names"),
    "csv-bad-date": ("m.csv", CSV_HEADER, "Something,31/12/2024,\n", f"created_at '31/12/2024' {ISO_HINT}"),
    "csv-meta-not-object": ("m.csv", CSV_HEADER, 'Something,2024-01-01T00:00:00Z,"[1, 2]"\n',
                            "metadata must be a JSON object, not list"),
    "csv-meta-bad-json": ("m.csv", CSV_HEADER, 'Something,2024-01-01T00:00:00Z,{oops}\n',
                          "metadata is not valid JSON (Expecting property name enclosed in double quotes at column 2)"),
    "csv-empty-content": ("m.csv", CSV_HEADER, '"  ",2024-01-01T00:00:00Z,\n', "content is empty"),
}


def _write(path: Path, header: str, *lines) -> None:
    data = header.encode() + b"".join(line.encode() if isinstance(line, str) else line for line in lines)
    path.write_bytes(data)


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_import_a_file_of_only_a_bad_line_is_refused(seeded, settings, tmp_path, case):
    name, header, line, error = BAD_LINES[case]
    path = tmp_path / name
    _write(path, header, line)
    number = 2 if header else 1
    assert_bad_input(cli("import", str(path)), f"line {number}: {error}; nothing imported (no valid lines)")
    assert store_state(settings) == seeded


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_import_skips_a_bad_line_and_keeps_the_valid_ones(seeded, settings, tmp_path, case):
    name, header, line, error = BAD_LINES[case]
    good = GOOD_CSV_ROW if name.endswith(".csv") else GOOD_JSONL
    path = tmp_path / name
    _write(path, header, good, line)
    number = 3 if header else 2
    result = cli("import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"skipped line {number}: {error}"]
    fmt = "csv" if name.endswith(".csv") else "jsonl"
    # the store is free: straight into raw.memories, after the memory that was waiting in the inbox
    assert result.stdout.splitlines() == [
        f"Imported 1 memories ({fmt}) into the store; 1 lines skipped.", "2 new memories are in the store."
    ]
    assert store_state(settings) == {"raw": seeded["raw"] + 2, "inbox": 0, "hwm": seeded["hwm"]}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_import_strict_refuses_the_whole_file_for_one_bad_line(seeded, settings, tmp_path, case):
    name, header, line, error = BAD_LINES[case]
    good = GOOD_CSV_ROW if name.endswith(".csv") else GOOD_JSONL
    path = tmp_path / name
    _write(path, header, good, line, good.replace("tomatoes", "basil"))
    number = 3 if header else 2
    assert_bad_input(cli("import", str(path), "--strict"), f"line {number}: {error}; nothing imported (--strict)")
    assert store_state(settings) == seeded


def test_import_strict_lists_every_bad_line(seeded, settings, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        GOOD_JSONL
        + "{bad\n"
        + '{"content": "b", "created_at": "nope"}\n'
        + '{"content": "c", "metadata": 7}\n'
        + '{"content": ""}\n'
    )
    result = cli("import", str(path), "--strict")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: line 2: not valid JSON (Expecting property name enclosed in double quotes at column 2) "
        "(and 3 more bad lines); nothing imported (--strict)",
        f"line 3: created_at 'nope' {ISO_HINT}",
        "line 4: metadata must be a JSON object, not int",
        "line 5: content is empty",
    ]
    assert store_state(settings) == seeded


def test_import_strict_json_report(seeded, settings, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(GOOD_JSONL + '{"content": ""}\n')
    result = cli("import", str(path), "--strict", "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["refused"] is True and report["written"] == 0 and report["accepted"] == 1
    assert report["rejected"] == [{"line": 2, "error": "content is empty"}]
    assert store_state(settings) == seeded


def test_import_json_report_and_idempotent_reimport(settings, tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(GOOD_JSONL + '{"content": "Undated, takes the import time"}\n{"content": ""}\n')
    first = json.loads(cli("import", str(path), "--json").stdout)
    assert first == {"path": str(path), "format": "jsonl", "destination": "embedded", "accepted": 2,
                     "written": 2, "stored": 2, "refused": False, "via_inbox": False,
                     "rejected": [{"line": 3, "error": "content is empty"}]}
    second = json.loads(cli("import", str(path), "--json").stdout)
    assert second["written"] == 2 and second["stored"] == 0  # accepted again, but nothing new stored
    assert store_state(settings)["raw"] == 2


def test_import_many_bad_lines_are_summarised(settings, tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(GOOD_JSONL + '{"content": ""}\n' * 25)
    result = cli("import", str(path))
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 21 and lines[-1] == "... and 5 more skipped lines"
    assert lines[0] == "skipped line 2: content is empty"


def test_import_an_empty_file_imports_nothing(seeded, settings, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    result = cli("import", str(path))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["Imported 0 memories (jsonl) into the inbox; 0 lines skipped."]
    assert store_state(settings) == seeded


def test_import_while_a_run_holds_the_store_leaves_memories_in_the_inbox(settings, tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(GOOD_JSONL)
    from codex_dreams.store import open_store

    with open_store(settings):
        pass  # an existing, bootstrapped store
    proc = _hold_store_in_subprocess(settings.database_path)  # another process holds it read-write
    try:
        result = cli("import", str(path))
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["Imported 1 memories (jsonl) into the inbox; 0 lines skipped.",
                                          "The store is busy: they will be stored by the next pipeline run."]
    assert store_state(settings) == {"raw": 0, "inbox": 1, "hwm": 1}


def _hold_store_in_subprocess(path: Path) -> subprocess.Popen:
    code = (
        "import duckdb, sys, time\n"
        f"con = duckdb.connect({str(path)!r})\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# -- the installed console script, in a real process ----------------------------------------------------

def _codex(*args: str, env: dict) -> subprocess.CompletedProcess:
    codex = str(Path(sys.executable).with_name("codex"))
    return subprocess.run([codex, *args], env=env, capture_output=True, text=True, timeout=60)


def test_console_script_bad_input_is_one_line_and_exit_2(codex_home, tmp_path):
    env = {**os.environ, "CODEX_HOME": str(codex_home), "COLUMNS": "40"}  # narrow: no wrapping either
    settings = load_settings()
    cases = [
        (["remember", "   "], "Error: content is empty"),
        (["remember", "ok", "--at", "[/]"], f"Error: created_at '[/]' {ISO_HINT}"),
        (["remember", "ok", "--meta", "[1]"], "Error: metadata must be a JSON object, not list"),
        (["import", str(tmp_path / "missing.jsonl")], f"Error: {tmp_path / 'missing.jsonl'} does not exist"),
    ]
    for args, expected in cases:
        done = _codex(*args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == ""
        assert done.stderr.splitlines() == [expected], args
    assert store_state(settings) == {"raw": 0, "inbox": 0, "hwm": 0}
    done = _codex("remember", "A real memory", "--json", env=env)
    assert done.returncode == 0 and json.loads(done.stdout)["content"] == "A real memory"
    assert store_state(settings) == {"raw": 0, "inbox": 1, "hwm": 1}
