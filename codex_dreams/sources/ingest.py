"""The write path shared by `codex remember`, `codex import` and the Python API.

Memories go to PostgreSQL when POSTGRES_DB_URL is set (the pipeline syncs them), else to the sensory-register
inbox, which the pipeline drains into raw.memories. After an import the inbox is drained at once when the
store is free, so the memories are visible immediately; if a run holds the store they wait for the next run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
    stored: int | None = None  # new rows in raw.memories after the drain, None if the store was busy
    refused: bool = False

    def as_dict(self) -> dict:
        return {
            "path": self.path, "format": self.format, "destination": self.destination,
            "accepted": self.accepted, "written": self.written, "stored": self.stored,
            "refused": self.refused,
            "rejected": [{"line": line, "error": error} for line, error in self.rejected],
        }


class ImportRefused(ValueError):
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
    report.written = write(records, settings)
    if drain and report.written:
        report.stored = drain_if_free(settings)
    return report


__all__ = ["ImportRefused", "ImportReport", "InvalidMemory", "drain_if_free", "import_path", "remember"]
