"""File importers: JSON Lines, CSV, LoCoMo; format detection; idempotent re-import; the real LoCoMo dev file."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from codex_dreams.sources.importers import (
    LOCOMO_TURN_SECONDS,
    ImportFormatError,
    detect_format,
    parse_locomo_date,
    read_file,
)
from codex_dreams.sources.ingest import ImportRefused, import_path

LOCOMO_DEV = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "locomo" / "locomo_dev.json"


def rows(settings, where: str = "true", params=()) -> list[tuple]:
    con = duckdb.connect(str(settings.database_path), read_only=True)
    try:
        return con.execute(
            f"select id, content, created_at, updated_at, metadata::varchar, source from raw.memories "
            f"where {where} order by created_at, id", list(params)
        ).fetchall()
    finally:
        con.close()


def parsed(path: Path, fmt: str = "auto"):
    resolved, lines = read_file(path, fmt)
    return resolved, list(lines)


# -- JSON Lines -------------------------------------------------------------------------------------------

def test_jsonl_fields_aliases_and_time_zones(settings, tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text("\n".join([
        json.dumps({"content": "Booked the flight to Oslo", "created_at": "2024-02-01T09:00:00+01:00",
                    "metadata": {"trip": "oslo"}}),
        json.dumps({"text": "Aliased text field", "at": "2024-02-01T10:00:00Z"}),
        json.dumps({"content": "Timestamp alias", "timestamp": "2024-02-01T11:00:00",
                    "updated_at": "2024-02-03T00:00:00Z", "id": "note-3"}),
        "",  # blank lines are ignored
        json.dumps({"content": "Integer id", "created_at": "2024-02-01T12:00:00Z", "id": 7}),
    ]) + "\n", encoding="utf-8")
    report = import_path(path, settings=settings)
    assert (report.format, report.accepted, report.written, report.stored, report.rejected) == ("jsonl", 4, 4, 4, [])
    got = rows(settings)
    assert [r[1] for r in got] == ["Booked the flight to Oslo", "Aliased text field", "Timestamp alias", "Integer id"]
    assert got[0][2] == datetime(2024, 2, 1, 8) and json.loads(got[0][4]) == {"trip": "oslo"}
    assert got[2][0] == "note-3" and got[2][3] == datetime(2024, 2, 3)
    assert got[3][0] == "7"
    assert {r[5] for r in got} == {"import:jsonl"}


def test_jsonl_with_a_byte_order_mark(settings, tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"content": "Exported by a Windows tool"}\n')
    _, lines = parsed(path)
    assert [line.record.content for line in lines] == ["Exported by a Windows tool"]


def test_jsonl_line_numbers_count_blank_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"content": "a"}\n\n\n{"content": ""}\n')
    _, lines = parsed(path)
    assert [(line.line, line.error) for line in lines] == [(1, None), (4, "content is empty")]


def test_undated_lines_are_idempotent_per_file(settings, tmp_path):
    path = tmp_path / "undated.jsonl"
    path.write_text('{"content": "No date here"}\n{"content": "Nor here"}\n')
    assert import_path(path, settings=settings).stored == 2
    assert import_path(path, settings=settings).stored == 0
    assert len(rows(settings)) == 2


# -- CSV --------------------------------------------------------------------------------------------------

def test_csv_columns_quoting_and_line_numbers(settings, tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text(
        "id,content,created_at,metadata\n"
        'a1,"Dinner with Sam, then a walk",2024-03-01T19:00:00Z,"{""with"": ""Sam""}"\n'
        'a2,"A note\nover two lines",2024-03-02T08:00:00Z,\n'
        "a3,,2024-03-03T08:00:00Z,\n",
        encoding="utf-8",
    )
    fmt, lines = parsed(path)
    assert fmt == "csv"
    assert [(line.line, line.error) for line in lines] == [(2, None), (4, None), (5, "content is empty")]
    report = import_path(path, settings=settings)
    assert report.stored == 2
    got = rows(settings)
    assert [(r[0], r[1], json.loads(r[4])) for r in got] == [
        ("a1", "Dinner with Sam, then a walk", {"with": "Sam"}),
        ("a2", "A note\nover two lines", {}),
    ]
    assert {r[5] for r in got} == {"import:csv"}


def test_csv_with_bom_and_tsv(tmp_path):
    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfcontent,created_at\r\nFrom a spreadsheet,2024-01-01\r\n")
    _, lines = parsed(csv_path)
    assert [(line.record.content, line.record.created_at) for line in lines] == [
        ("From a spreadsheet", datetime(2024, 1, 1))]
    tsv_path = tmp_path / "notes.tsv"
    tsv_path.write_text("content\tcreated_at\nTab, separated\t2024-01-02T00:00:00Z\n")
    fmt, lines = parsed(tsv_path)
    assert fmt == "csv" and [line.record.content for line in lines] == ["Tab, separated"]


def test_csv_missing_content_column_is_a_file_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("body,created_at\nhello,2024-01-01\n")
    with pytest.raises(ImportFormatError, match=r"^bad.csv has no 'content' column in its header row$"):
        parsed(path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ImportFormatError, match="has no 'content' column"):
        parsed(empty)


def test_csv_short_and_long_rows(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("created_at,content\n2024-01-01\n2024-01-01,ok,extra\n2024-01-01,fine\n")
    _, lines = parsed(path)
    assert [(line.line, line.error) for line in lines] == [
        (2, "missing 'content'"), (3, "more fields than the header names"), (4, None)]


def test_csv_that_is_not_utf8_is_reported(tmp_path):
    path = tmp_path / "latin1.csv"
    good = "".join(f"Good line {i}\n" for i in range(2000))  # past the decoder's first block
    path.write_bytes(("content\n" + good + "Caf\u00e9 au lait\n" + good).encode("latin-1"))
    _, lines = parsed(path)
    assert lines[-1].error == "not valid UTF-8 text (the rest of the file is skipped)"
    assert all(line.record is not None for line in lines[:-1]) and 0 < len(lines) - 1 <= 2000
    header_only_bad = tmp_path / "latin1-header.csv"
    header_only_bad.write_bytes("cont\u00e9nt\nx\n".encode("latin-1"))
    with pytest.raises(ImportFormatError, match="is not UTF-8 text"):
        parsed(header_only_bad)


# -- LoCoMo -----------------------------------------------------------------------------------------------

def _locomo_sample() -> list[dict]:
    return [
        {
            "sample_id": "conv-x",
            "conversation": {
                "speaker_a": "Ana", "speaker_b": "Ben",
                "session_1_date_time": "1:56 pm on 8 May, 2023",
                "session_1": [
                    {"speaker": "Ana", "dia_id": "D1:1", "text": "Hi Ben! How was the hike?"},
                    {"speaker": "Ben", "dia_id": "D1:2", "text": "Great, look at this view!",
                     "img_url": ["https://example.invalid/view.jpg"], "blip_caption": "a photo of a mountain lake",
                     "query": "mountain lake"},
                    {"speaker": "Ana", "dia_id": "D1:3", "text": "Wow, where is that?"},
                ],
                "session_2": [  # no session_2_date_time
                    {"speaker": "Ben", "dia_id": "D2:1", "text": "Back from the trip."},
                    {"speaker": "Ana", "dia_id": "D2:2", "text": "Welcome back!"},
                ],
                "session_3_date_time": "9:05 am on 20 June, 2023",
                "session_3": [
                    {"speaker": "Ana", "dia_id": "D3:1", "text": "Coffee later?"},
                    {"speaker": "Ben", "dia_id": "D3:2", "text": ""},
                ],
                "session_4_date_time": "10:00 am on 1 July, 2023",  # a date with no session: ignored
            },
            "qa": [{"question": "Where did Ben hike?", "answer": "a mountain lake", "evidence": ["D1:2"],
                    "category": 4}],
        },
        {
            "sample_id": "conv-y",
            "conversation": {
                "speaker_a": "Cy", "speaker_b": "Di",
                "session_10_date_time": "12:00 am on 1 January, 2024",
                "session_10": [{"speaker": "Cy", "dia_id": "D10:1", "text": "Happy new year!"}],
                "session_2_date_time": "11:30 pm on 31 December, 2023",
                "session_2": [{"speaker": "Di", "dia_id": "D2:1", "text": "Almost midnight."}],
            },
        },
    ]


def test_locomo_turns_times_metadata_and_skipped_sessions(settings, tmp_path):
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(_locomo_sample(), indent=2))
    fmt, lines = parsed(path)
    assert fmt == "locomo"
    errors = [(line.line, line.error) for line in lines if line.error]
    assert errors == [
        (4, "conv-x session_2 has no session_2_date_time, so its turns have no time"),
        (5, "conv-x session_2 has no session_2_date_time, so its turns have no time"),
        (7, "conv-x D3:2: content is empty"),
    ]
    report = import_path(path, settings=settings)
    assert (report.accepted, report.stored, len(report.rejected)) == (6, 6, 3)
    got = {json.loads(r[4])["dia_id"] + "@" + json.loads(r[4])["sample_id"]: r for r in rows(settings)}
    start = datetime(2023, 5, 8, 13, 56)
    for index, dia in enumerate(["D1:1", "D1:2", "D1:3"]):
        assert got[f"{dia}@conv-x"][2] == start + timedelta(seconds=LOCOMO_TURN_SECONDS * index)
    assert got["D1:2@conv-x"][1] == "Great, look at this view! [shares an image: a photo of a mountain lake]"
    assert json.loads(got["D1:2@conv-x"][4]) == {"sample_id": "conv-x", "session": 1, "dia_id": "D1:2",
                                                 "speaker": "Ben"}
    assert got["D3:1@conv-x"][2] == datetime(2023, 6, 20, 9, 5)
    # sessions are ordered by number (2 before 10), and 12:00 am is midnight
    assert got["D2:1@conv-y"][2] == datetime(2023, 12, 31, 23, 30)
    assert got["D10:1@conv-y"][2] == datetime(2024, 1, 1, 0, 0)
    assert json.loads(got["D10:1@conv-y"][4])["session"] == 10
    assert {r[5] for r in got.values()} == {"import:locomo"}
    # idempotent
    again = import_path(path, settings=settings)
    assert (again.written, again.stored) == (6, 0)
    assert len(rows(settings)) == 6


def test_locomo_strict_refuses_a_session_without_a_date(settings, tmp_path):
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(_locomo_sample()))
    with pytest.raises(ImportRefused) as caught:
        import_path(path, settings=settings, strict=True)
    assert str(caught.value) == ("line 4: conv-x session_2 has no session_2_date_time, so its turns have no time "
                                 "(and 2 more bad lines); nothing imported (--strict)")
    assert not settings.database_path.exists() or rows(settings) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:56 pm on 8 May, 2023", datetime(2023, 5, 8, 13, 56)),
        ("12:09 am on 13 September, 2023", datetime(2023, 9, 13, 0, 9)),
        ("10:37 AM on 27 June 2023", datetime(2023, 6, 27, 10, 37)),
    ],
)
def test_parse_locomo_date(text, expected):
    assert parse_locomo_date(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "13:56 pm on 8 May, 2023", "1:56 pm on 8 Mayo, 2023", None, 5])
def test_parse_locomo_date_refuses(text):
    from codex_dreams.sources.records import InvalidMemory

    with pytest.raises(InvalidMemory, match="is not like '1:56 pm on 8 May, 2023'"):
        parse_locomo_date(text)


def test_locomo_file_errors(tmp_path):
    not_json = tmp_path / "broken.json"
    not_json.write_text('[{"sample_id": ')
    with pytest.raises(ImportFormatError, match=r"^broken.json is not valid JSON \(line 1: Expecting value"):
        parsed(not_json, "locomo")
    not_list = tmp_path / "object.json"
    not_list.write_text('{"conversation": {}}')
    with pytest.raises(ImportFormatError, match="expected a JSON list of conversations"):
        parsed(not_list, "locomo")
    odd_items = tmp_path / "odd.json"
    odd_items.write_text('[1, {"sample_id": "c", "conversation": {"session_1_date_time": "1:00 pm on 1 May, 2023",'
                         ' "session_1": ["not a turn"]}}]')
    _, lines = parsed(odd_items, "locomo")
    assert [(line.line, line.error) for line in lines] == [
        (1, "item has no 'conversation' object"), (2, "turn is not an object")]


# -- detection --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("a.jsonl", '{"content": "x"}\n', "jsonl"),
        ("a.ndjson", '{"content": "x"}\n', "jsonl"),
        ("a.JSONL", '{"content": "x"}\n', "jsonl"),
        ("a.csv", "content\nx\n", "csv"),
        ("a.tsv", "content\nx\n", "csv"),
        ("a.json", '  \n [{"sample_id": "s", "conversation": {}}]', "locomo"),
        ("a.json", '{"content": "x"}\n{"content": "y"}\n', "jsonl"),
    ],
)
def test_detect_format(tmp_path, name, body, expected):
    path = tmp_path / name
    path.write_text(body)
    assert detect_format(path) == expected
    assert read_file(path)[0] == expected


def test_detect_format_refuses_unknown_extensions(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# notes")
    with pytest.raises(ImportFormatError, match="cannot tell the format of notes.md from its extension"):
        detect_format(path)


def test_explicit_format_overrides_the_extension(settings, tmp_path):
    path = tmp_path / "export.txt"
    path.write_text("content,created_at\nFrom a .txt file,2024-05-05T05:05:05Z\n")
    report = import_path(path, fmt="csv", settings=settings)
    assert (report.format, report.stored) == ("csv", 1)


# -- re-import ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_reimporting_the_same_file_adds_nothing(settings, tmp_path, fmt):
    path = tmp_path / f"m.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps({"content": f"memory {i}", "created_at": f"2024-01-01T00:00:{i:02d}Z"})
                                + "\n" for i in range(30)))
    else:
        path.write_text("content,created_at\n" + "".join(f"memory {i},2024-01-01T00:00:{i:02d}Z\n"
                                                         for i in range(30)))
    assert import_path(path, settings=settings).stored == 30
    second = import_path(path, settings=settings)
    assert (second.written, second.stored) == (30, 0)
    assert len(rows(settings)) == 30


def test_the_same_memory_in_two_formats_is_one_memory(settings, tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_text('{"content": "Shared memory", "created_at": "2024-01-01T00:00:00Z"}\n')
    b = tmp_path / "b.csv"
    b.write_text("content,created_at\nShared memory,2024-01-01T01:00:00+01:00\n")
    assert import_path(a, settings=settings).stored == 1
    assert import_path(b, settings=settings).stored == 0


# -- the real LoCoMo development split (read in place; never copied into the repository) -------------------

@pytest.mark.skipif(not LOCOMO_DEV.exists(), reason=f"{LOCOMO_DEV} is not present")
def test_real_locomo_dev_file(settings):
    report = import_path(LOCOMO_DEV, settings=settings)
    assert (report.format, report.accepted, report.rejected, report.stored) == ("locomo", 2760, [], 2760)
    con = duckdb.connect(str(settings.database_path), read_only=True)
    try:
        samples = con.execute(
            "select metadata->>'sample_id', count(*) from raw.memories group by 1 order by 1").fetchall()
        first = con.execute(
            "select content, created_at, metadata->>'speaker' from raw.memories "
            "where (metadata->>'sample_id') = 'conv-26' and (metadata->>'dia_id') = 'D1:1'").fetchone()
    finally:
        con.close()
    assert [s for s, _ in samples] == ["conv-26", "conv-30", "conv-41", "conv-42", "conv-43"]
    assert sum(n for _, n in samples) == 2760
    assert first == ("Hey Mel! Good to see you! How have you been?", datetime(2023, 5, 8, 13, 56), "Caroline")
    assert import_path(LOCOMO_DEV, settings=settings).stored == 0
