"""Fuzzed input (issue "Reliability", point 7): whatever text, metadata or file a user hands to `codex remember`,
`codex import` or `codex query`, each memory is either stored exactly as given (content without its surrounding
whitespace, metadata value for value) or refused: one line on stderr per bad input line, exit 2, and nothing
written. Never a traceback, never a partial write.

Inputs mix arbitrary Unicode with the awkward cases: lone surrogates, NUL, right-to-left marks, combining marks,
byte-order marks, line and paragraph separators, console markup; metadata nested up to 1,100 levels (the limit is
64), and metadata of megabytes. Every expectation comes from the ingestion rules in the README, written out here
(`accepted_*`), not from the code under test.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import duckdb
import pytest
from hypothesis import HealthCheck, assume, given, settings as hypothesis_settings, strategies as st
from typer.testing import CliRunner

from codex_dreams.cli.main import app
from codex_dreams.retrieval.engine import MAX_QUERY_CHARS
from codex_dreams.settings import MAX_MEMORY_CHARS
from codex_dreams.sources import inbox, ingest
from codex_dreams.sources.records import MAX_METADATA_DEPTH, InvalidMemory

runner = CliRunner()
FUZZ = hypothesis_settings(max_examples=30, deadline=None, database=None,
                           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                  HealthCheck.large_base_example, HealthCheck.data_too_large])
_serial = itertools.count(1)

# -- the rules, written out ----------------------------------------------------------------------------------


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def strings_in(value):
    """Every key and string in a JSON value (iterative: values may be deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, child in item.items():
                yield key
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def depth_of(value) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def accepted_content(text: str) -> bool:
    text = text.strip()
    return bool(text) and len(text) <= MAX_MEMORY_CHARS and "\x00" not in text and encodable(text)


def accepted_metadata(value: dict) -> bool:
    return depth_of(value) <= MAX_METADATA_DEPTH and all("\x00" not in s and encodable(s) for s in strings_in(value))


def accepted_query(text: str) -> bool:
    text = text.strip()
    return bool(text) and len(text) <= MAX_QUERY_CHARS and "\x00" not in text and encodable(text)


def canonical(value) -> str:
    """Values compared as JSON text: 1, 1.0, true and -0.0 stay distinct (== would confuse them)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)


# -- strategies -------------------------------------------------------------------------------------------

AWKWARD = [
    "\x00", "\ud800", "\udbff", "\udc00", "\udfff",           # NUL, lone surrogates
    "\u200f", "\u200e", "\u202e", "\u2067", "\u061c",         # right-to-left / left-to-right marks, overrides
    "\u0301", "\u0308", "\u20dd", "\u0e47",                   # combining marks
    "\ufeff", "\u2028", "\u2029", "\x85", "\x1c", "\x0b",     # BOM, line/paragraph separators, NEL, FS, VT
    "\n", "\r", "\t", " ", "\u3000", '"', "'", "\\", ",", "{", "}", "[/]", "[bold]", "--", "-",
    "é", "😀", "\U0010ffff", "ﷺ", "שלום", "مرحبا",
]


def texts(*, surrogates: bool = True, max_size: int = 40) -> st.SearchStrategy[str]:
    awkward = AWKWARD if surrogates else [c for c in AWKWARD if encodable(c)]
    # st.characters() includes lone surrogates; codec="utf-8" leaves them out
    pieces = st.one_of(st.characters() if surrogates else st.characters(codec="utf-8"), st.sampled_from(awkward))
    return st.lists(pieces, max_size=max_size).map("".join)


def contents(*, surrogates: bool = True) -> st.SearchStrategy[str]:
    long = st.sampled_from([MAX_MEMORY_CHARS, MAX_MEMORY_CHARS + 1]).map(lambda n: " " + "\u05e9" * n + "\n")
    return st.one_of(texts(surrogates=surrogates), texts(surrogates=surrogates, max_size=3), long)


@dataclass(frozen=True)
class Meta:
    """Metadata as a user gives it: `text` (JSON text, None: not given), `in_jsonl` (how it sits in a JSON Lines
    record), whether the rules accept it, and the value then stored."""
    text: str | None
    in_jsonl: str | None
    accepted: bool
    expected: dict | None
    label: str


def _json_values(surrogates: bool):
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=False, allow_infinity=False), texts(surrogates=surrogates, max_size=12))
    return st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                        st.dictionaries(texts(surrogates=surrogates, max_size=8),
                                                                        kids, max_size=3)),
                        max_leaves=10)


def _object_meta(value: dict, ascii_only: bool) -> Meta:
    text = json.dumps(value, ensure_ascii=ascii_only)
    ok = accepted_metadata(value)
    return Meta(text, text, ok, value if ok else None, "object")


def deep_text(depth: int, container: str) -> str:
    """A metadata object nested `depth` levels (the object itself is level 1), built as text: json.dumps itself
    fails on ~1,000 levels."""
    inner = depth - 1
    opening, closing_ = ('{"d": ' * inner, "}" * inner) if container == "dict" else ("[" * inner, "]" * inner)
    return '{"deep": ' + opening + '"leaf"' + closing_ + "}"


def _deep_meta(depth: int, container: str) -> Meta:
    text = deep_text(depth, container)
    ok = depth <= MAX_METADATA_DEPTH
    return Meta(text, text, ok, json.loads(text) if ok else None, f"deep {depth}")


def _huge_meta(size: int) -> Meta:
    value = {"blob": ("Δx\u202e" * size)[:size], "items": list(range(size // 1000)), "nested": {"n": size}}
    text = json.dumps(value, ensure_ascii=False)
    return Meta(text, text, True, value, f"huge {len(text):,}")


def metas(*, surrogates: bool = True) -> st.SearchStrategy[Meta]:
    absent = st.just(Meta(None, None, True, {}, "absent"))
    objects = st.builds(_object_meta, st.dictionaries(texts(surrogates=surrogates, max_size=10),
                                                      _json_values(surrogates), max_size=4),
                        st.booleans())
    deep = st.builds(_deep_meta, st.one_of(st.sampled_from([1, 2, 63, 64, 65, 100, 1000]), st.integers(1, 1100)),
                     st.sampled_from(["dict", "list"]))
    huge = st.sampled_from([150_000, 600_000]).map(_huge_meta)
    not_object = st.sampled_from(["[1, 2]", "42", "true", '{"x": NaN}', '{"x": Infinity}']).map(
        lambda text: Meta(text, text, False, None, f"not accepted {text}"))
    bad_json = texts(surrogates=surrogates, max_size=10).map(
        lambda t: Meta("{bad " + t, json.dumps("{bad " + t), False, None, "bad json"))
    return st.one_of(absent, objects, objects, deep, huge, not_object, bad_json)


@dataclass(frozen=True)
class When:
    text: str | None
    accepted: bool
    expected: datetime | None  # None with text None: the time of the import


def whens(*, surrogates: bool = True) -> st.SearchStrategy[When]:
    return st.one_of(
        st.just(When(None, True, None)),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(2025, 12, 31)).map(
            lambda d: When(d.isoformat() + "Z", True, d)),
        texts(surrogates=surrogates, max_size=8).map(lambda t: When("not a date " + t, False, None)),
    )


@dataclass(frozen=True)
class Line:
    id: str
    content: str
    meta: Meta
    when: When

    @property
    def accepted(self) -> bool:
        stripped = self.id.strip()
        id_ok = 1 <= len(stripped) <= 200 and "\x00" not in stripped and encodable(stripped)
        return id_ok and accepted_content(self.content) and self.meta.accepted and self.when.accepted


def lines(*, surrogates: bool = True) -> st.SearchStrategy[Line]:
    ids = st.one_of(st.just(""), texts(surrogates=surrogates, max_size=12), st.just("x" * 200))
    return st.builds(lambda suffix, content, meta, when: Line(f"fz{next(_serial)}-{suffix}", content, meta, when),
                     ids, contents(surrogates=surrogates), metas(surrogates=surrogates), whens(surrogates=surrogates))


# -- observing the store ------------------------------------------------------------------------------------

def cli(*args: str):
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unexpected exception: {result.exception!r}")
    assert "Traceback" not in result.output
    return result


def json_lines(text: str) -> list:
    """JSON Lines split on "\n" only: str.splitlines() would also split at U+2028 inside a JSON string."""
    assert text.endswith("\n")
    return [json.loads(line) for line in text[:-1].split("\n")]


def error_lines(result) -> list[str]:
    assert result.stderr.endswith("\n"), repr(result.stderr[-200:])
    return result.stderr[:-1].split("\n")


def assert_refused_in_one_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stderr[:500])
    assert result.stdout == ""
    [line] = error_lines(result)
    assert line.startswith("Error: ") and len(line) > len("Error: ")
    return line


def state(settings) -> dict:
    raw = 0
    if settings.database_path.exists():
        with closing(duckdb.connect(str(settings.database_path), read_only=True)) as con:
            raw = con.execute("select count(*) from raw.memories").fetchone()[0]
    return {"raw": raw, "inbox": inbox.pending(settings.inbox_path),
            "hwm": inbox.high_water_mark(settings.inbox_path)}


def stored(settings, memory_id: str):
    """(content, created_at, metadata text) of a memory in raw.memories, or None."""
    if not settings.database_path.exists():
        return None
    with closing(duckdb.connect(str(settings.database_path), read_only=True)) as con:
        return con.execute("select content, created_at, metadata::varchar from raw.memories where id = ?",
                           [memory_id]).fetchone()


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def assert_stored_exactly(settings, line: Line, started: datetime) -> None:
    row = stored(settings, line.id.strip())
    assert row is not None, f"memory {line.id!r} was accepted but is not in raw.memories"
    content, created_at, metadata = row
    assert content == line.content.strip()
    assert canonical(json.loads(metadata)) == canonical(line.meta.expected)
    if line.when.expected is not None:
        assert created_at == line.when.expected
    else:
        assert started - timedelta(seconds=1) <= created_at <= utc_now() + timedelta(seconds=1)


# -- codex remember ------------------------------------------------------------------------------------------

@FUZZ
@given(content=contents(), meta=metas(), when=whens())
def test_remember_stores_exactly_or_refuses_in_one_line(settings, content, meta, when):
    before = state(settings)
    args = ["remember", "--json"]
    if meta.text is not None:
        args += ["--meta", meta.text]
    if when.text is not None:
        args += ["--at", when.text]
    started = utc_now()
    result = cli(*args, "--", content)  # `--`: a memory may start with "-"
    if accepted_content(content) and meta.accepted and when.accepted:
        assert result.exit_code == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["content"] == content.strip()
        assert canonical(answer["metadata"]) == canonical(meta.expected)
        assert state(settings)["inbox"] == before["inbox"] + 1
        # The pipeline's first step (the drain into raw.memories) takes it as it is. An id derives from time and
        # text: the same pair remembered in an earlier example is the memory stored then.
        seen_before = stored(settings, answer["id"]) is not None
        assert ingest.drain_if_free(settings) == (0 if seen_before else 1)
        if seen_before:
            assert stored(settings, answer["id"])[0] == content.strip()
        else:
            assert_stored_exactly(settings, Line(answer["id"], content, meta, when), started)
    else:
        assert_refused_in_one_line(result)
        assert state(settings) == before


@FUZZ
@given(content=contents(), meta=metas(), when=whens(), as_dict=st.booleans())
def test_the_python_api_stores_exactly_or_raises_invalid_memory(settings, content, meta, when, as_dict):
    before = state(settings)
    metadata = meta.text
    if as_dict and meta.accepted and meta.expected:
        metadata = meta.expected  # the Python API also takes a dict
    ok = accepted_content(content) and meta.accepted and when.accepted
    try:
        record = ingest.remember(content, at=when.text, metadata=metadata, settings=settings)
    except InvalidMemory as error:
        assert not ok, f"refused valid input: {error}"
        assert "\n" not in str(error) and str(error)
        assert state(settings) == before
        return
    assert ok, f"accepted invalid input ({meta.label}, {when.text!r})"
    assert record.content == content.strip() and canonical(record.metadata) == canonical(meta.expected)
    with closing(sqlite3.connect(settings.inbox_path)) as con:
        row = con.execute("select content, metadata from inbox where id = ? order by seq desc limit 1",
                          [record.id]).fetchone()
    assert row[0] == content.strip() and canonical(json.loads(row[1])) == canonical(meta.expected)


def test_an_undated_line_without_an_id_is_checked_before_its_id_is_derived(settings, tmp_path):
    """Such a line's id derives from the file name and the text: a lone surrogate in the text, or a file name that is
    not UTF-8, used to end the import in a UnicodeEncodeError."""
    path = tmp_path / os.fsdecode(b"caf\xe9-notes.jsonl")
    path.write_text('{"content": "\\ud800 a lone surrogate"}\n{"content": "An undated note"}\n', encoding="utf-8")
    result = cli("import", str(path))
    assert result.exit_code == 0, result.stderr
    assert error_lines(result) == ["skipped line 1: content is not valid Unicode text"]
    assert "1 new memories are in the store." in result.stdout
    again = cli("import", str(path))  # the same file again adds nothing
    assert again.exit_code == 0 and "0 new memories are in the store." in again.stdout


@pytest.mark.parametrize("depth", [64, 65, 1000, 5000])
def test_metadata_nested_deeper_than_64_levels_is_refused_in_one_line(settings, depth):
    before = state(settings)
    result = cli("remember", "--meta", deep_text(depth, "list"), "--", "Deep thoughts")
    if depth <= MAX_METADATA_DEPTH:
        assert result.exit_code == 0, result.stderr
        assert state(settings)["inbox"] == before["inbox"] + 1
    else:
        assert assert_refused_in_one_line(result) == "Error: metadata is nested more than 64 levels deep"
        assert state(settings) == before


def test_python_metadata_the_rules_refuse(settings):
    circular: dict = {"name": "loop"}
    circular["self"] = circular
    deep: dict = {}
    node = deep
    for _ in range(1000):
        node["d"] = {}
        node = node["d"]
    cases = [
        (circular, "metadata is nested more than 64 levels deep"),
        (deep, "metadata is nested more than 64 levels deep"),
        ({"n": 10 ** 5000}, "metadata has a number with more than 4,300 digits"),
        ({"x": float("nan")}, "metadata must not contain NaN or Infinity"),
        ({"x": {1, 2}}, "metadata is not JSON-serializable (Object of type set is not JSON serializable)"),
    ]
    before = state(settings)
    for metadata, message in cases:
        with pytest.raises(InvalidMemory) as refused:
            ingest.remember("A memory with odd metadata", metadata=metadata, settings=settings)
        assert str(refused.value) == message
    assert state(settings) == before


def test_a_memory_that_starts_with_a_dash_needs_the_separator(settings):
    before = state(settings)
    line = assert_refused_in_one_line(cli("remember", "-v is the verbose flag"))
    assert line.startswith("Error: No such option: -v")
    assert state(settings) == before
    assert cli("remember", "--", "-v is the verbose flag").exit_code == 0


# -- codex import --------------------------------------------------------------------------------------------

def jsonl_record(line: Line, ascii_only: bool) -> bytes:
    parts = [f'"id": {json.dumps(line.id, ensure_ascii=ascii_only)}',
             f'"content": {json.dumps(line.content, ensure_ascii=ascii_only)}']
    if line.when.text is not None:
        parts.append(f'"created_at": {json.dumps(line.when.text, ensure_ascii=ascii_only)}')
    if line.meta.in_jsonl is not None:
        parts.append(f'"metadata": {line.meta.in_jsonl}')
    # a lone surrogate written raw is not UTF-8: that line must be refused as such
    return ("{" + ", ".join(parts) + "}").encode("utf-8", "surrogatepass")


garbage = st.binary(max_size=30).filter(lambda b: b"\n" not in b)


def _garbage_is_a_line(raw: bytes, number: int) -> bool:
    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return bool(raw.strip())


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw.decode("utf-8-sig")), dict)
    except (ValueError, RecursionError):
        return False


def check_import(settings, result, specs: list[tuple[int, Line | None]], strict: bool, as_json: bool,
                 before: dict, started: datetime) -> None:
    """specs: (line number, Line or None for a line that is refused whatever it holds)."""
    bad = [number for number, line in specs if line is None or not line.accepted]
    good = [line for _, line in specs if line is not None and line.accepted]
    if bad and (strict or not good):
        assert result.exit_code == 2, result.stderr[:500]
        errors = error_lines(result)
        assert len(errors) == min(len(bad), 20)  # one line per bad line
        assert errors[0].startswith(f"Error: line {bad[0]}: ")
        assert [e.split(":")[0] for e in errors[1:]] == [f"line {n}" for n in bad[1:20]]
        if as_json:
            report = json.loads(result.stdout)
            assert report["refused"] and [r["line"] for r in report["rejected"]] == bad
        assert state(settings) == before  # nothing written
        return
    assert result.exit_code == 0, result.stderr[:500]
    if as_json:
        report = json.loads(result.stdout)
        assert [r["line"] for r in report["rejected"]] == bad
        assert (report["written"], report["stored"]) == (len(good), len(good))
    else:
        skipped = error_lines(result) if bad else []
        assert [s.split(":")[0] for s in skipped] == [f"skipped line {n}" for n in bad]
        assert f"Imported {len(good)} memories" in result.stdout
    assert state(settings)["raw"] == before["raw"] + len(good)
    for line in good:
        assert_stored_exactly(settings, line, started)


@FUZZ
@given(items=st.lists(st.one_of(lines(), lines(), garbage), min_size=1, max_size=5), strict=st.booleans(),
       as_json=st.booleans(), ascii_only=st.booleans())
def test_import_jsonl_stores_exactly_the_valid_lines(settings, tmp_path, items, strict, as_json, ascii_only):
    chunks, specs = [], []
    for number, item in enumerate(items, start=1):
        if isinstance(item, Line):
            chunks.append(jsonl_record(item, ascii_only))
            specs.append((number, item))
        else:
            assume(not _is_json_object(item))  # random bytes that happen to be a memory are not garbage
            chunks.append(item)
            if _garbage_is_a_line(item, number):
                specs.append((number, None))
    path = tmp_path / f"fuzz-{next(_serial)}.jsonl"
    path.write_bytes(b"\n".join(chunks) + b"\n")
    before, started = state(settings), utc_now()
    result = cli("import", str(path), *(["--strict"] if strict else []), *(["--json"] if as_json else []))
    check_import(settings, result, specs, strict, as_json, before, started)


@FUZZ
@given(items=st.lists(lines(surrogates=False), min_size=1, max_size=5), strict=st.booleans(),
       as_json=st.booleans(), bom=st.booleans(), crlf=st.booleans())
def test_import_csv_stores_exactly_the_valid_rows(settings, tmp_path, items, strict, as_json, bom, crlf):
    # Excel's CSV (\r\n, fields quoted when needed), or every field quoted and \n (Python's csv does not quote a
    # lone \r when the line terminator is \n: such a file is broken, not fuzzed)
    dialect = {} if crlf else {"lineterminator": "\n", "quoting": csv.QUOTE_ALL}
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, **dialect)
    writer.writerow(["id", "content", "created_at", "metadata"])
    for line in items:
        writer.writerow([line.id, line.content, line.when.text or "", line.meta.text or ""])
    path = tmp_path / f"fuzz-{next(_serial)}.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))
    # A row is reported by the line it ends on (fields may hold line breaks; "\r" alone is one too).
    numbers, last = [], 1
    for line in items:
        row = io.StringIO(newline="")
        csv.writer(row, **dialect).writerow([line.id, line.content, line.when.text or "", line.meta.text or ""])
        last += len(re.findall(r"\r\n|\r|\n", row.getvalue()))
        numbers.append(last)
    before, started = state(settings), utc_now()
    result = cli("import", str(path), *(["--strict"] if strict else []), *(["--json"] if as_json else []))
    check_import(settings, result, list(zip(numbers, items)), strict, as_json, before, started)


def test_a_line_nested_1000_levels_deep_is_refused_and_the_valid_lines_are_imported(settings, tmp_path):
    """The reported bug: a RecursionError traceback, exit 1, and the valid lines of the file not imported."""
    path = tmp_path / "deep.jsonl"
    path.write_text(
        '{"id": "first", "content": "Before the deep line", "created_at": "2024-01-01T09:00:00Z"}\n'
        '{"id": "deep", "content": "Too deep", "metadata": ' + deep_text(1000, "dict") + "}\n"
        '{"id": "within", "content": "At the limit", "metadata": ' + deep_text(64, "list") + "}\n"
        '{"id": "beyond", "content": "Past the limit", "metadata": ' + deep_text(65, "list") + "}\n"
        '{"id": "last", "content": "After the deep lines", "created_at": "2024-01-01T10:00:00Z"}\n',
        encoding="utf-8",
    )
    before = state(settings)
    strict = cli("import", str(path), "--strict")
    assert strict.exit_code == 2
    assert error_lines(strict) == [
        "Error: line 2: JSON nested more than 64 levels deep (and 1 more bad lines); nothing imported (--strict)",
        "line 4: metadata is nested more than 64 levels deep",
    ]
    assert state(settings) == before
    result = cli("import", str(path))
    assert result.exit_code == 0, result.stderr
    assert error_lines(result) == ["skipped line 2: JSON nested more than 64 levels deep",
                                   "skipped line 4: metadata is nested more than 64 levels deep"]
    assert "Imported 3 memories (jsonl) into the store; 2 lines skipped." in result.stdout
    assert [stored(settings, i) is not None for i in ("first", "deep", "within", "beyond", "last")] == [
        True, False, True, False, True]
    assert json.loads(stored(settings, "within")[2]) == json.loads(deep_text(64, "list"))


UNTERMINATED = b'id,content\nu1,fine\nu2,"never closed\nu3,swallowed\n'
TEXT_AFTER_QUOTE = b'id,content\nu1,fine\nu2,"closed" then text\nu3,after\n'


@pytest.mark.parametrize(
    ("data", "exit_code", "stderr", "kept"),
    [
        (b"", 2, ["Error: edge.csv has no 'content' column in its header row"], {}),
        (b"\xef\xbb\xbf", 2, ["Error: edge.csv has no 'content' column in its header row"], {}),
        (b"id,content\n", 0, [], {}),
        (b'\xef\xbb\xbfid,content\r\nq,"She said ""no, not today"",\r\nthen left"\r\n', 0, [],
         {"q": 'She said "no, not today",\r\nthen left'}),
        (UNTERMINATED, 0,
         ["skipped line 3: not valid CSV (unexpected end of data; the rest of the file is skipped)"], {"u1": "fine"}),
        (TEXT_AFTER_QUOTE, 0,
         ["skipped line 3: not valid CSV (',' expected after '\"'; the rest of the file is skipped)"], {"u1": "fine"}),
        (b'id,content\nu1,fine\n"u2,unterminated on the last line', 0,
         ["skipped line 3: not valid CSV (unexpected end of data; the rest of the file is skipped)"], {"u1": "fine"}),
        (b'id,content,metadata\nbig,large,"{""blob"": ""' + b"y" * 300_000 + b'""}"\n', 0, [], {"big": "large"}),
    ],
    ids=["empty", "bom-only", "header-only", "quotes-newlines-bom", "unterminated-quote", "text-after-quote",
         "unterminated-at-eof", "field-over-128k"],
)
def test_csv_edge_cases(settings, tmp_path, data, exit_code, stderr, kept):
    path = tmp_path / "edge.csv"
    path.write_bytes(data)
    before = state(settings)
    result = cli("import", str(path))
    assert result.exit_code == exit_code
    assert (error_lines(result) if result.stderr else []) == stderr
    if exit_code == 2:
        assert result.stdout == ""
    assert state(settings)["raw"] == before["raw"] + len(kept)
    for memory_id, content in kept.items():
        assert stored(settings, memory_id)[0] == content
    if data == UNTERMINATED:
        # the broken quote did not swallow u3 into u2's content, and --strict refuses the file whole
        assert stored(settings, "u2") is None and stored(settings, "u3") is None
        again = tmp_path / "again.csv"
        again.write_bytes(data.replace(b"u1", b"v1"))
        strict = cli("import", str(again), "--strict")
        assert strict.exit_code == 2 and error_lines(strict) == [
            "Error: line 3: not valid CSV (unexpected end of data; the rest of the file is skipped); "
            "nothing imported (--strict)"]
        assert stored(settings, "v1") is None
    if "big" in kept:
        assert json.loads(stored(settings, "big")[2]) == {"blob": "y" * 300_000}


def test_tricky_memories_are_exported_byte_identical(settings, tmp_path):
    """What went in is what `codex export --format jsonl` gives back, value for value."""
    memories = [
        {"id": "rtl", "content": "\u202eשלום\u200f مرحبا \u2067x\u2069", "metadata": {"dir": "\u200frtl\u200e"}},
        {"id": "combining", "content": "e\u0301\u0308\u20dd a\u0327 \U0001f469\u200d\U0001f52c",
         "metadata": {"k\u0301": ["\u0e47", -0.0, 1, 1.0, True, None, 2 ** 70, 1e-300]}},
        {"id": "separators", "content": "line\u2028para\u2029nel\x85tab\there \ufeffbom",
         "metadata": {"quote": "\"'\\", "markup": "[bold]x[/]", "nl": "a\nb\r\nc"}},
        {"id": "deep64", "content": "At the depth limit", "metadata": json.loads(deep_text(64, "dict"))},
        {"id": "huge", "content": "Huge metadata", "metadata": {"blob": "Δ" * 2_000_000, "n": list(range(5000))}},
        {"id": "longest", "content": "z" * MAX_MEMORY_CHARS, "metadata": {}},
    ]
    path = tmp_path / "tricky.jsonl"
    path.write_text("".join(json.dumps({**m, "created_at": "2024-02-29T23:59:59.999999Z"}, ensure_ascii=False)
                            + "\n" for m in memories), encoding="utf-8")
    assert cli("import", str(path), "--strict").exit_code == 0
    out = tmp_path / "export.jsonl"
    result = cli("export", "--format", "jsonl", "--output", str(out))
    assert result.exit_code == 0, result.stderr
    exported = {row["id"]: row for row in map(json.loads, out.read_text(encoding="utf-8").split("\n")[:-1])}
    for memory in memories:
        row = exported[memory["id"]]
        assert row["content"].encode("utf-8") == memory["content"].encode("utf-8")
        assert canonical(row["metadata"]).encode("utf-8") == canonical(memory["metadata"]).encode("utf-8")
        assert row["created_at"] == "2024-02-29T23:59:59.999999"


# -- codex query ---------------------------------------------------------------------------------------------

@pytest.fixture
def query_store(settings, tmp_path):
    path = tmp_path / "few.jsonl"
    path.write_text(
        '{"content": "Coffee with Priya at Kestrel caf\\u00e9", "created_at": "2024-05-01T09:00:00Z"}\n'
        '{"content": "\\u202eRTL note \\u05e9\\u05dc\\u05d5\\u05dd", "created_at": "2024-05-02T09:00:00Z"}\n'
        '{"content": "Combining e\\u0301 marks", "created_at": "2024-05-03T09:00:00Z"}\n', encoding="utf-8")
    assert ingest.import_path(path, settings=settings).stored == 3
    return settings


def recalls_logged(settings) -> int:
    from codex_dreams.retrieval import log as recall_log

    return recall_log.pending(recall_log.log_path(settings))


query_texts = st.one_of(texts(max_size=30), st.sampled_from([MAX_QUERY_CHARS, MAX_QUERY_CHARS + 1]).map(
    lambda n: "q" * n))


@FUZZ
@given(text=query_texts)
def test_query_answers_or_refuses_in_one_line(query_store, text):
    before = recalls_logged(query_store)
    result = cli("query", "--text", text, "--k", "3", "--json")
    if accepted_query(text):
        assert result.exit_code == 0, result.stderr
        [answer] = json_lines(result.stdout)
        assert answer["text"] == text.strip() and len(answer["results"]) <= 3
    else:
        assert_refused_in_one_line(result)
        assert recalls_logged(query_store) == before  # a refused query is not logged


query_lines = st.one_of(
    st.builds(lambda i, t, a: ("query", {"id": i, "text": t}, a),
              st.one_of(texts(max_size=8), st.integers(-10**30, 10**30), st.booleans(), st.none()),
              query_texts, st.booleans()),
    st.builds(lambda d: ("deep", '{"id": 1, "text": "deep", "x": ' + "[" * d + "]" * d + "}", True),
              st.sampled_from([10, 100_000])),
    st.just(("raw", '{"text": "a number too long", "id": ' + "7" * 5000 + "}", True)),
)


def _query_line_ok(kind, obj) -> bool:
    if kind == "deep":
        return True  # any depth JSON can read is fine here: the query itself is a string
    if kind == "raw":
        return False
    query_id = obj["id"]
    if query_id is None or isinstance(query_id, bool):
        return False
    return (not isinstance(query_id, str) or encodable(query_id)) and accepted_query(obj["text"])


@FUZZ
@given(items=st.lists(query_lines, min_size=1, max_size=4))
def test_query_files_answer_every_query_or_refuse_in_one_line(query_store, tmp_path, items):
    chunks, verdicts = [], []
    for kind, obj, ascii_only in items:
        text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=ascii_only)
        chunks.append(text.encode("utf-8", "surrogatepass"))
        ok = _query_line_ok(kind, obj)
        if kind == "deep" and "[" * 100_000 in obj:
            ok = False  # deeper than Python's JSON reader goes
        if kind == "query" and not ascii_only and not encodable(text):
            ok = False  # not UTF-8: the whole file is refused
        verdicts.append(ok)
    path = tmp_path / f"queries-{next(_serial)}.jsonl"
    path.write_bytes(b"\n".join(chunks) + b"\n")
    before = recalls_logged(query_store)
    result = cli("query", "--file", str(path), "--k", "2", "--json")
    if all(verdicts):
        assert result.exit_code == 0, result.stderr
        answers = json_lines(result.stdout)
        asked = [json.loads(chunk) for chunk in chunks]
        assert [(a["id"], a["text"]) for a in answers] == [(q["id"], q["text"].strip()) for q in asked]
    else:
        line = assert_refused_in_one_line(result)
        raw_invalid = any(kind == "query" and not a and not encodable(json.dumps(o, ensure_ascii=False))
                          for kind, o, a in items)
        if not raw_invalid:
            assert f"line {verdicts.index(False) + 1}:" in line
        assert recalls_logged(query_store) == before
