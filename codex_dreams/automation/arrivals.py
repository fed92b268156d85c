"""A cheap marker of "new memories arrived", read without opening the DuckDB store.

The inbox's AUTOINCREMENT high-water mark grows with every accepted memory; with PostgreSQL configured, the
source's (count, max(updated_at)) changes on every insert, update or delete.
"""

from __future__ import annotations

from codex_dreams.settings import Settings
from codex_dreams.sources import inbox


def arrival_marker(settings: Settings) -> str:
    marker = f"inbox:{inbox.high_water_mark(settings.inbox_path)}"
    if settings.postgres_db_url:
        marker += f"|pg:{_postgres_marker(settings.postgres_db_url.get_secret_value())}"
    return marker


def _postgres_marker(url: str) -> str:
    from codex_dreams.sources.postgres import SourceUnavailable, connect_postgres

    with connect_postgres(url) as conn:
        try:
            count, newest = conn.execute(
                "select count(*), max(updated_at) from public.memories"
            ).fetchone()
        except Exception as error:  # the table may not exist yet
            raise SourceUnavailable(f"cannot read public.memories: {type(error).__name__}") from None
    return f"{count}@{newest.isoformat() if newest else '-'}"
