"""The rules every ingested memory obeys (records.make_record), below the CLI."""

import uuid
from datetime import datetime

import pytest

from codex_dreams.settings import MAX_MEMORY_CHARS
from codex_dreams.sources.records import (
    _ID_NAMESPACE,
    InvalidMemory,
    make_record,
    memory_id_for,
    metadata_to_json,
    parse_time,
)


@pytest.mark.parametrize("content", ["a", "héllo ☃ 😀", "x" * 5000, "line\nbreak"])
def test_memory_id_is_uuid5_of_time_and_content(content):
    at = datetime(2024, 1, 2, 3, 4, 5, 6)
    assert memory_id_for(content, at) == str(uuid.uuid5(_ID_NAMESPACE, f"{at.isoformat()}\x1f{content}"))


def test_same_time_and_content_give_the_same_id_and_stripped_content():
    a = make_record("  Walked the dog  ", at="2024-03-01T07:00:00Z")
    b = make_record("Walked the dog", at="2024-03-01T08:00:00+01:00")
    assert a.id == b.id and a.content == "Walked the dog" and a.created_at == datetime(2024, 3, 1, 7)
    assert a.updated_at == a.created_at and a.metadata == {} and a.metadata_json == "{}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01", datetime(2024, 3, 1)),
        ("2024-03-01T07:00:00", datetime(2024, 3, 1, 7)),
        ("2024-03-01T07:00:00Z", datetime(2024, 3, 1, 7)),
        ("2024-03-01T07:00:00.123456-05:00", datetime(2024, 3, 1, 12, 0, 0, 123456)),
        (datetime(2024, 3, 1, 7), datetime(2024, 3, 1, 7)),
    ],
)
def test_parse_time_gives_naive_utc(value, expected):
    assert parse_time(value) == expected


@pytest.mark.parametrize("value", ["", "   ", "soon", "2024-13-01", 1714000000, None, "0001-01-01T00:00:00+01:00"])
def test_parse_time_refuses(value):
    with pytest.raises(InvalidMemory):
        parse_time(value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content": None}, "content must be text"),
        ({"content": 42}, "content must be text"),
        ({"content": " \n\t "}, "content is empty"),
        ({"content": "x" * (MAX_MEMORY_CHARS + 1)},
         f"content is {MAX_MEMORY_CHARS + 1:,} characters; the limit is {MAX_MEMORY_CHARS:,} per memory"),
        ({"content": "bad \ud800 surrogate"}, "content is not valid Unicode text"),
        ({"content": "nul \x00 byte"}, "content must not contain NUL characters"),
        ({"content": "ok", "metadata": "[1]"}, "metadata must be a JSON object, not list"),
        ({"content": "ok", "metadata": 3}, "metadata must be a JSON object, not int"),
        ({"content": "ok", "metadata": '{"a": Infinity}'}, "metadata is not valid JSON (Infinity is not allowed)"),
        ({"content": "ok", "metadata": {"a": float("nan")}}, "metadata must not contain NaN or Infinity"),
        ({"content": "ok", "metadata": {"a": {1, 2}}}, "metadata is not JSON-serializable"),
        ({"content": "ok", "metadata": {"a": "nul \x00"}}, "metadata must not contain NUL characters"),
        ({"content": "ok", "metadata": {"a": "\udcff"}}, "metadata is not valid Unicode text"),
        ({"content": "ok", "memory_id": "x" * 201}, "id must be 1 to 200 characters"),
        ({"content": "ok", "memory_id": "   "}, "id must be 1 to 200 characters"),
        ({"content": "ok", "memory_id": {"a": 1}}, "id must be text or an integer"),
        ({"content": "ok", "memory_id": True}, "id must be text or an integer"),
        ({"content": "ok", "updated_at": "later"}, "updated_at 'later' is not an ISO 8601 date-time"),
    ],
)
def test_make_record_refuses(kwargs, message):
    content = kwargs.pop("content")
    with pytest.raises(InvalidMemory) as caught:
        make_record(content, **kwargs)
    assert str(caught.value).startswith(message)


def test_metadata_json_is_sorted_unicode_and_keeps_an_escaped_backslash_u0000():
    assert metadata_to_json({"b": 1, "a": "café"}) == '{"a": "café", "b": 1}'
    text = metadata_to_json({"path": "C:\\u0000dir"})  # a literal backslash, not a NUL
    assert text == '{"path": "C:\\\\u0000dir"}'


def test_integer_and_text_ids_are_kept():
    assert make_record("ok", memory_id=17).id == "17"
    assert make_record("ok", memory_id=" note-1 ").id == "note-1"


def test_postgres_error_scrubbing_hides_the_password_in_every_form():
    from codex_dreams.sources.postgres import _scrub

    url = "postgresql://codex:p%40ss%2Fw0rd@db.example:5432/codex_db"
    text = (f'Unable to connect to Postgres at "{url}": password "p@ss/w0rd" was refused\n'
            "\tIs the server running?")
    scrubbed = _scrub(text, url)
    assert "p@ss/w0rd" not in scrubbed and "p%40ss%2Fw0rd" not in scrubbed
    assert "postgresql://codex:***@db.example:5432/codex_db" in scrubbed and "\n" not in scrubbed
