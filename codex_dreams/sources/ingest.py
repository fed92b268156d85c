"""The write path shared by `codex remember`, `codex import` and the Python API.

Memories go to PostgreSQL when POSTGRES_DB_URL is set (the pipeline syncs them), else to the embedded store.
`remember` writes the sensory-register inbox (one durable SQLite commit; it never needs the DuckDB file), which
the pipeline drains into raw.memories. An import goes straight into raw.memories, in one transaction, when the
store is free (draining anything waiting in the inbox first), and into the inbox when a run holds the store;
either way it is durable when `import_path` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from codex_dreams.errors import InputError
from codex_dreams.settings import Settings, get_settings
from codex_dreams.sources import inbox, postgres
from codex_dreams.sources.importers import ImportFormatError, read_file
from codex_dreams.sources.records import InvalidMemory, MemoryRecord, make_record
from codex_dreams.store import StoreBusyError, open_store


@dataclass
class ImportReport:
    path: str
    format: str
    destination: str
    accepted: int = 0
    written: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    stored: int | None = None  # new rows in raw.memories after the import, None if the store was busy
    refused: bool = False
    via_inbox: bool = False  # written to the inbox (the store was busy, or drain=False)

    def as_dict(self) -> dict:
        return {
            "path": self.path, "format": self.format, "destination": self.destination,
            "accepted": self.accepted, "written": self.written, "stored": self.stored,
            "refused": self.refused, "via_inbox": self.via_inbox,
            "rejected": [{"line": line, "error": error} for line, error in self.rejected],
        }


class ImportRefused(InputError):
    """Nothing was written: --strict and at least one bad line, or no line of the file was valid."""

    def __init__(self, report: ImportReport, reason: str = "--strict"):
        self.report = report
        first_line, first_error = report.rejected[0]
        more = f" (and {len(report.rejected) - 1} more bad lines)" if len(report.rejected) > 1 else ""
        super().__init__(f"line {first_line}: {first_error}{more}; nothing imported ({reason})")


def destination(settings: Settings) -> str:
    return "postgres" if settings.postgres_db_url else "embedded"


def write(records: list[MemoryRecord], settings: Settings) -> int:
    if not records:
        return 0
    if settings.postgres_db_url:
        return postgres.write_records(settings.postgres_db_url.get_secret_value(), records)
    return inbox.append(settings.inbox_path, records)


def drain_if_free(settings: Settings) -> int | None:
    """Move the inbox into raw.memories now if no run holds the store; None if it is busy."""
    if settings.postgres_db_url:
        return None
    try:
        with open_store(settings, wait_seconds=0.5) as con:
            return inbox.drain_inbox(con, settings.inbox_path)
    except StoreBusyError:
        return None


def store_now(records: list[MemoryRecord], settings: Settings) -> int | None:
    """Write records straight into raw.memories in one transaction if no run holds the store (after draining the
    inbox, so earlier arrivals go first); returns how many were new, or None if the store is busy."""
    try:
        with open_store(settings, wait_seconds=0.5) as con:
            gained = inbox.drain_inbox(con, settings.inbox_path)
            ids = [r.id for r in records]
            batch = inbox.records_batch(records)
            return gained + inbox.insert_batch(con, batch, dedupe=len(set(ids)) < len(ids))
    except StoreBusyError:
        return None


def remember(content: str, *, at=None, metadata=None, settings: Settings | None = None,
             source: str = "cli") -> MemoryRecord:
    """Validate and durably record one memory; raises InvalidMemory on bad input (nothing written)."""
    settings = settings or get_settings()
    record = make_record(content, at=at, metadata=metadata, source=source)
    write([record], settings)
    return record


def import_path(path: Path | str, *, fmt: str = "auto", strict: bool = False,
                settings: Settings | None = None, progress: Callable[[int], None] | None = None,
                drain: bool = True) -> ImportReport:
    """Import a file; bad lines are reported and skipped, or with strict=True the whole file is refused."""
    settings = settings or get_settings()
    path = Path(path)
    resolved, lines = read_file(path, fmt)
    report = ImportReport(path=str(path), format=resolved, destination=destination(settings))
    records: list[MemoryRecord] = []
    try:
        for parsed in lines:
            if parsed.record is not None:
                records.append(parsed.record)
            else:
                report.rejected.append((parsed.line, parsed.error or "invalid"))
            if progress is not None:
                progress(1)
    except OSError as error:  # e.g. permission denied: the readers open the file lazily
        raise ImportFormatError(f"cannot read {path}: {error.strerror or error}") from None
    report.accepted = len(records)
    if report.rejected and (strict or not records):
        report.refused = True
        raise ImportRefused(report, "--strict" if strict else "no valid lines")
    if not records:  # an empty file (or blank lines only): nothing written, and nothing waits for a busy store
        report.stored = 0 if report.destination == "embedded" else None
        return report
    if drain and records and not settings.postgres_db_url:
        stored = store_now(records, settings)
        if stored is not None:
            report.written, report.stored = len(records), stored
            return report
    report.written = write(records, settings)
    report.via_inbox = report.destination == "embedded" and report.written > 0
    if drain and report.via_inbox:
        report.stored = drain_if_free(settings)  # the store may have become free meanwhile
    return report


__all__ = ["ImportRefused", "ImportReport", "InvalidMemory", "drain_if_free", "import_path", "remember",
           "store_now"]
