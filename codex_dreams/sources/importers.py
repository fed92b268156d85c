"""Reading memory files: JSON Lines, CSV and LoCoMo conversations.

Each reader yields `ParsedLine(line, record, error)`: a record, or the reason that line was refused, so the
caller can keep the valid lines (default) or refuse the whole file (`--strict`).

- jsonl: one object per line: `content` (or `text`), optional `created_at` (or `at`/`timestamp`),
  `updated_at`, `metadata` (object), `id`.
- csv: a header row with `content` and optional `created_at`, `updated_at`, `metadata` (JSON text), `id`.
- locomo: the LoCoMo benchmark JSON: one memory per dialogue turn; `created_at` is the session's date plus
  `LOCOMO_TURN_SECONDS` per turn; metadata keeps sample_id, session, dia_id and speaker.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

from codex_dreams.errors import InputError
from codex_dreams.sources.records import (
    InvalidMemory,
    JsonTooDeep,
    MemoryRecord,
    json_error_text,
    loads_strict,
    make_record,
    memory_id_for,
)

FORMATS = ("auto", "jsonl", "csv", "locomo")
# Turns of a conversation are a few seconds apart; 10 s puts about three turns in one attention window.
LOCOMO_TURN_SECONDS = 10


class ImportFormatError(InputError):
    """The file as a whole cannot be read in the requested format."""


@dataclass(frozen=True)
class ParsedLine:
    line: int
    record: MemoryRecord | None = None
    error: str | None = None


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix == ".json":
        with path.open("rb") as handle:
            head = handle.read(4096).lstrip()
        if head.startswith(b"["):
            return "locomo"
        return "jsonl"
    raise ImportFormatError(
        f"cannot tell the format of {path.name} from its extension; pass --format jsonl, csv or locomo"
    )


def _record_from_mapping(obj, source: str, path: Path) -> MemoryRecord:
    if not isinstance(obj, dict):
        raise InvalidMemory("expected a JSON object")
    content = obj.get("content", obj.get("text"))
    if content is None:
        raise InvalidMemory("missing 'content'")
    at = obj.get("created_at", obj.get("at", obj.get("timestamp")))
    memory_id = obj.get("id")
    if at in (None, "") and memory_id in (None, "") and isinstance(content, str):
        # An undated line takes the import time; its id comes from the file and text instead, so
        # importing the same file again does not duplicate it.
        memory_id = memory_id_for(f"{path.resolve()}\x1f{content.strip()}", datetime(1970, 1, 1))
    return make_record(content, at=at, metadata=obj.get("metadata"), source=source,
                       memory_id=memory_id, updated_at=obj.get("updated_at"))


def read_jsonl(path: Path) -> Iterator[ParsedLine]:
    # Bytes, decoded per line: one line that is not UTF-8 is reported like any other bad line.
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield ParsedLine(number, error="not valid UTF-8 text")
                continue
            try:
                obj = loads_strict(line)
            except json.JSONDecodeError as error:
                yield ParsedLine(number, error=f"not valid JSON ({json_error_text(error)})")
                continue
            except JsonTooDeep as error:
                yield ParsedLine(number, error=f"JSON {error}")
                continue
            except ValueError as error:  # NaN / Infinity, a number too long to read
                yield ParsedLine(number, error=f"not valid JSON ({error})")
                continue
            try:
                yield ParsedLine(number, record=_record_from_mapping(obj, "import:jsonl", path))
            except InvalidMemory as error:
                yield ParsedLine(number, error=str(error))


# csv's default limit, 128 KiB per field, refused a memory whose metadata JSON is larger, and a JSON Lines file
# takes it. No field can be larger than the file, which is read a row at a time.
_CSV_FIELD_LIMIT = 2**31 - 1


def read_csv(path: Path) -> Iterator[ParsedLine]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        # strict: a quote that is never closed is an error, not a field that silently swallows every later line
        # into one memory (nor is text after a closing quote, as in `"a"b`).
        reader = csv.DictReader(handle, dialect=dialect, strict=True)
        rows = iter(reader)
        try:
            fieldnames = reader.fieldnames
        except UnicodeDecodeError:
            raise ImportFormatError(f"{path.name} is not UTF-8 text") from None
        except csv.Error as error:
            raise ImportFormatError(f"{path.name} is not a readable CSV file ({error})") from None
        if not fieldnames or "content" not in fieldnames:
            raise ImportFormatError(f"{path.name} has no 'content' column in its header row")
        while True:
            row_start = reader.line_num + 1  # csv does not count the lines of a row it refuses
            try:
                row = next(rows)
            except StopIteration:
                return
            except UnicodeDecodeError:
                # The decoder fails on a block, not a row: everything from here on is unreadable.
                yield ParsedLine(reader.line_num + 1, error="not valid UTF-8 text (the rest of the file is skipped)")
                return
            except csv.Error as error:
                yield ParsedLine(row_start, error=f"not valid CSV ({error}; the rest of the file is skipped)")
                return
            number = reader.line_num
            if None in row:
                yield ParsedLine(number, error="more fields than the header names")
                continue
            try:
                yield ParsedLine(number, record=_record_from_mapping(row, "import:csv", path))
            except InvalidMemory as error:
                yield ParsedLine(number, error=str(error))


_LOCOMO_DATE = re.compile(r"^\s*(\d{1,2}:\d{2}\s*[ap]m)\s+on\s+(\d{1,2}\s+\w+,?\s+\d{4})\s*$", re.IGNORECASE)


def parse_locomo_date(text: str) -> datetime:
    """'1:56 pm on 8 May, 2023' -> datetime(2023, 5, 8, 13, 56)."""
    match = _LOCOMO_DATE.match(text) if isinstance(text, str) else None
    if match:
        clock, day = match.groups()
        try:
            return datetime.strptime(f"{clock.replace(' ', '').upper()} {day.replace(',', '')}",
                                     "%I:%M%p %d %B %Y")
        except ValueError:  # e.g. '13:56 pm' or '8 Mayo'
            pass
    raise InvalidMemory(f"session date {text!r} is not like '1:56 pm on 8 May, 2023'")


def read_locomo(path: Path) -> Iterator[ParsedLine]:
    """One memory per dialogue turn. `line` counts turns in file order (1-based); errors name the turn."""
    try:
        samples = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise ImportFormatError(f"{path.name} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ImportFormatError(f"{path.name} is not valid JSON (line {error.lineno}: {json_error_text(error)})") from None
    except RecursionError:
        raise ImportFormatError(f"{path.name} is not a LoCoMo file (its JSON is nested too deeply to read)") from None
    except ValueError as error:  # e.g. a number with more digits than Python reads
        raise ImportFormatError(f"{path.name} is not valid JSON ({error})") from None
    if not isinstance(samples, list):
        raise ImportFormatError(f"{path.name} is not a LoCoMo file (expected a JSON list of conversations)")
    number = 0
    for sample in samples:
        conversation = sample.get("conversation") if isinstance(sample, dict) else None
        if not isinstance(conversation, dict):
            number += 1
            yield ParsedLine(number, error="item has no 'conversation' object")
            continue
        sample_id = sample.get("sample_id")
        sessions = sorted(
            (key for key, value in conversation.items()
             if re.fullmatch(r"session_\d+", key) and isinstance(value, list)),
            key=lambda key: int(key.split("_")[1]),
        )
        for session_key in sessions:
            session_no = int(session_key.split("_")[1])
            date_key = f"{session_key}_date_time"
            start, session_error = None, None
            if not conversation.get(date_key):
                session_error = f"{sample_id} {session_key} has no {date_key}, so its turns have no time"
            else:
                try:
                    start = parse_locomo_date(conversation[date_key])
                except InvalidMemory as error:
                    session_error = f"{sample_id} {date_key}: {error}"
            for turn_index, turn in enumerate(conversation[session_key]):
                number += 1
                if session_error:
                    yield ParsedLine(number, error=session_error)
                    continue
                if not isinstance(turn, dict):
                    yield ParsedLine(number, error="turn is not an object")
                    continue
                text = turn.get("text", "")
                if turn.get("blip_caption") and isinstance(text, str):
                    text = f"{text} [shares an image: {turn['blip_caption']}]".strip()
                metadata = {"sample_id": sample_id, "session": session_no, "dia_id": turn.get("dia_id"),
                            "speaker": turn.get("speaker")}
                try:
                    record = make_record(
                        text, at=start + timedelta(seconds=LOCOMO_TURN_SECONDS * turn_index),
                        metadata=metadata, source="import:locomo",
                    )
                    yield ParsedLine(number, record=record)
                except InvalidMemory as error:
                    yield ParsedLine(number, error=f"{sample_id} {turn.get('dia_id')}: {error}")


READERS = {"jsonl": read_jsonl, "csv": read_csv, "locomo": read_locomo}


def read_file(path: Path, fmt: str = "auto") -> tuple[str, Iterator[ParsedLine]]:
    if fmt not in FORMATS:
        raise ImportFormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise ImportFormatError(f"{path} does not exist")
    if not path.is_file():
        raise ImportFormatError(f"{path} is not a file")
    resolved = detect_format(path) if fmt == "auto" else fmt
    return resolved, READERS[resolved](path)
