"""One memory record and the rules every ingested memory obeys.

Times are stored as naive UTC. An input time with an offset is converted to UTC; a time without an offset is
taken as UTC. A memory's id is derived from its time and content unless the source gives one, so importing
the same file twice adds nothing the second time.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from codex_dreams.errors import InputError
from codex_dreams.settings import MAX_MEMORY_CHARS

_ID_NAMESPACE = uuid.UUID("4d2f8a0e-6f0b-4b4e-9a53-0c0de0d2ea4a")
_ID_NAMESPACE_BYTES = _ID_NAMESPACE.bytes
# A JSON "\u0000" escape that is not itself an escaped backslash followed by "u0000".
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class InvalidMemory(InputError):
    """A memory that breaks an ingestion rule; the message says which."""


@dataclass(frozen=True)
class MemoryRecord:
    id: str
    content: str
    created_at: datetime  # naive UTC
    updated_at: datetime  # naive UTC
    metadata: dict = field(default_factory=dict)
    source: str = "cli"
    # The metadata as JSON text, computed once by make_record (None: computed on demand).
    metadata_text: str | None = field(default=None, repr=False, compare=False)

    @property
    def metadata_json(self) -> str:
        if self.metadata_text is not None:
            return self.metadata_text
        return metadata_to_json(self.metadata)


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def parse_time(value, what: str = "date") -> datetime:
    """An ISO 8601 string (or datetime) as naive UTC; InvalidMemory if it cannot be read."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            raise InvalidMemory(f"{what} {value!r} is not an ISO 8601 date-time (e.g. 2026-11-25T09:30:00Z)") from None
    else:
        raise InvalidMemory(f"{what} {value!r} is not an ISO 8601 date-time (e.g. 2026-11-25T09:30:00Z)")
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise InvalidMemory(f"{what} {value!r} is out of range") from None
    return moment


# A memory may be dated in the far past (a family note from 1900, year 1 even: every stage handles it) and a
# little ahead (a planned event), but not years ahead: "9999-12-31" is a placeholder, not a time, and as the
# newest event time it would make every other memory look ancient.
MAX_FUTURE = timedelta(days=366)


def _not_far_future(moment: datetime, what: str, now: datetime) -> datetime:
    if moment > now + MAX_FUTURE:
        raise InvalidMemory(f"{what} {moment.isoformat()} is more than a year in the future; give the time the "
                            "memory happened")
    return moment


def json_error_text(error: json.JSONDecodeError) -> str:
    """'Expecting value at column 7': json's message (some end in a dangling 'at') with the column."""
    message = error.msg
    return f"{message} column {error.colno}" if message.endswith(" at") else f"{message} at column {error.colno}"


def _reject_nan(constant: str):
    raise ValueError(f"{constant} is not allowed")


# Metadata is a small description of a memory, not a document: 64 levels is far more than any real use needs,
# and a bound keeps every later reader (json, DuckDB's json functions, dbt models, the export) away from their
# recursion limits. Without it, metadata nested ~1,000 levels deep crashed the import with a RecursionError.
MAX_METADATA_DEPTH = 64


class JsonTooDeep(ValueError):
    """JSON text nested too deeply to decode (Python's recursion limit); a bad line, not a crash."""

    def __init__(self) -> None:
        super().__init__(f"nested more than {MAX_METADATA_DEPTH} levels deep")


def nested_deeper_than(value, limit: int = MAX_METADATA_DEPTH) -> bool:
    """Whether dicts and lists in `value` nest more than `limit` levels (the value itself is level 1).

    Iterative, so any depth is measured without recursion; a container reached again is walked again only when
    reached deeper than before, so shared and even circular references end (a cycle is infinitely deep)."""
    deepest: dict[int, int] = {}
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if deepest.get(id(item), 0) >= depth:
            continue
        deepest[id(item)] = depth
        for child in (item.values() if isinstance(item, dict) else item):
            if isinstance(child, (dict, list, tuple)):
                stack.append((child, depth + 1))
    return False


# Built once: json.loads/json.dumps with options build a new decoder/encoder on every call (a hot spot in bulk
# imports).
_STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_nan)
_METADATA_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, allow_nan=False)


def loads_strict(text: str):
    """json.loads that refuses NaN/Infinity (not JSON; PostgreSQL's jsonb rejects them), and raises JsonTooDeep
    (a ValueError) for text nested too deeply to decode instead of a RecursionError."""
    try:
        return _STRICT_DECODER.decode(text)
    except RecursionError:
        raise JsonTooDeep() from None
    except ValueError as error:
        if not isinstance(error, json.JSONDecodeError) and str(error).startswith("Exceeds the limit"):
            # int('1' * 5000): Python's message advises sys.set_int_max_str_digits(), which no user can act on
            raise ValueError(f"a number has more than {sys.get_int_max_str_digits():,} digits") from None
        raise


def metadata_to_json(metadata: dict) -> str:
    """The metadata as JSON text that DuckDB and PostgreSQL both accept; InvalidMemory otherwise."""
    if not metadata:
        return "{}"
    try:
        text = _METADATA_ENCODER.encode(metadata)
    except RecursionError:  # a dict built in Python, not checked by parse_metadata
        raise InvalidMemory(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep") from None
    except ValueError as error:
        if str(error).startswith("Exceeds the limit"):
            raise InvalidMemory(f"metadata has a number with more than {sys.get_int_max_str_digits():,} digits") \
                from None
        if "Circular reference" in str(error):
            raise InvalidMemory("metadata must not refer to itself") from None
        raise InvalidMemory("metadata must not contain NaN or Infinity") from None
    except TypeError as error:
        raise InvalidMemory(f"metadata is not JSON-serializable ({error})") from None
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise InvalidMemory("metadata must not contain NUL characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidMemory("metadata is not valid Unicode text") from None
    return text


def parse_metadata(value) -> dict:
    """A JSON object (dict or JSON text); InvalidMemory for anything else."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = loads_strict(value)
        except json.JSONDecodeError as error:
            raise InvalidMemory(f"metadata is not valid JSON ({json_error_text(error)})") from None
        except JsonTooDeep as error:
            raise InvalidMemory(f"metadata is {error}") from None
        except ValueError as error:  # NaN / Infinity, a number too long to read
            raise InvalidMemory(f"metadata is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise InvalidMemory(f"metadata must be a JSON object, not {type(value).__name__}")
    if value and nested_deeper_than(value):
        raise InvalidMemory(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
    return value


def memory_id_for(content: str, created_at: datetime) -> str:
    """uuid5(namespace, created_at + content) as text (hand-rolled: uuid.uuid5 is the import's hot spot)."""
    digest = bytearray(
        # surrogatepass: the same bytes as utf-8 for any valid text; text with a lone surrogate (refused by
        # make_record, but an importer derives an id first) or a file name that is not UTF-8 still gets an id
        hashlib.sha1(_ID_NAMESPACE_BYTES + f"{created_at.isoformat()}\x1f{content}".encode("utf-8", "surrogatepass"))
        .digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]


def make_record(content, *, at=None, metadata=None, source: str = "cli", memory_id=None,
                updated_at=None) -> MemoryRecord:
    """Validate raw input into a MemoryRecord, or raise InvalidMemory saying what is wrong."""
    if not isinstance(content, str):
        raise InvalidMemory("content must be text")
    text = content.strip()
    if not text:
        raise InvalidMemory("content is empty")
    if len(text) > MAX_MEMORY_CHARS:
        raise InvalidMemory(
            f"content is {len(text):,} characters; the limit is {MAX_MEMORY_CHARS:,} per memory"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, e.g. from "\ud800" in JSON
            raise InvalidMemory("content is not valid Unicode text") from None
    if "\x00" in text:  # PostgreSQL text cannot hold it, and no memory needs it
        raise InvalidMemory("content must not contain NUL characters")
    now = utc_now()
    created = _not_far_future(parse_time(at, "created_at"), "created_at", now) if at not in (None, "") else now
    updated = _not_far_future(parse_time(updated_at, "updated_at"), "updated_at", now) \
        if updated_at not in (None, "") else created
    meta = parse_metadata(metadata)
    meta_text = metadata_to_json(meta)
    if memory_id not in (None, ""):
        if isinstance(memory_id, bool) or not isinstance(memory_id, (str, int)):
            raise InvalidMemory("id must be text or an integer")
        memory_id = str(memory_id).strip()
        if not memory_id or len(memory_id) > 200:
            raise InvalidMemory("id must be 1 to 200 characters")
        if "\x00" in memory_id:
            raise InvalidMemory("id must not contain NUL characters")
        if not memory_id.isascii():
            try:
                memory_id.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: no database or file can store it
                raise InvalidMemory("id is not valid Unicode text") from None
    return MemoryRecord(
        id=memory_id or memory_id_for(text, created),
        content=text,
        created_at=created,
        updated_at=updated,
        metadata=meta,
        source=source,
        metadata_text=meta_text,
    )
