"""One memory record and the rules every ingested memory obeys.

Times are stored as naive UTC. An input time with an offset is converted to UTC; a time without an offset is
taken as UTC. A memory's id is derived from its time and content unless the source gives one, so importing
the same file twice adds nothing the second time.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from codex_dreams.settings import MAX_MEMORY_CHARS

_ID_NAMESPACE = uuid.UUID("4d2f8a0e-6f0b-4b4e-9a53-0c0de0d2ea4a")


class InvalidMemory(ValueError):
    """A memory that breaks an ingestion rule; the message says which."""


@dataclass(frozen=True)
class MemoryRecord:
    id: str
    content: str
    created_at: datetime  # naive UTC
    updated_at: datetime  # naive UTC
    metadata: dict = field(default_factory=dict)
    source: str = "cli"

    @property
    def metadata_json(self) -> str:
        return json.dumps(self.metadata, ensure_ascii=False, sort_keys=True)


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
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def parse_metadata(value) -> dict:
    """A JSON object (dict or JSON text); InvalidMemory for anything else."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise InvalidMemory(f"metadata is not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise InvalidMemory(f"metadata must be a JSON object, not {type(value).__name__}")
    return value


def memory_id_for(content: str, created_at: datetime) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{created_at.isoformat()}\x1f{content}"))


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
    created = parse_time(at, "created_at") if at not in (None, "") else utc_now()
    updated = parse_time(updated_at, "updated_at") if updated_at not in (None, "") else created
    meta = parse_metadata(metadata)
    if memory_id not in (None, ""):
        memory_id = str(memory_id).strip()
        if not memory_id or len(memory_id) > 200:
            raise InvalidMemory("id must be 1 to 200 characters")
    return MemoryRecord(
        id=memory_id or memory_id_for(text, created),
        content=text,
        created_at=created,
        updated_at=updated,
        metadata=meta,
        source=source,
    )
