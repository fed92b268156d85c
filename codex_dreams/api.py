"""The Python API: what the `codex` command does, as functions.

Nothing here imports Dagster or dbt, and nothing opens the memory store on the read path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codex_dreams.retrieval.config import RecallWeights
    from codex_dreams.retrieval.engine import RecallResponse
    from codex_dreams.settings import Settings


def recall(text: str, k: int = 10, *, explain: bool = False, log: bool = True,
           settings: "Settings | None" = None, weights: "RecallWeights | None" = None) -> "RecallResponse":
    """The k memories that best answer `text`: dense + lexical + associative recall, weighted by strength.

    Answers from the snapshot the pipeline publishes (never waits on a run). Returns a `RecallResponse`:
    iterate it for `RecalledMemory` items (memory_id, content, created_at, metadata, score, signals,
    explanation); `.as_dict(explain=...)` is one line of `codex query --json`. Every answer is logged for the
    testing effect unless `log=False`.

    Raises `InvalidQuery` (empty text, k outside 1..1000), `SnapshotUnavailable` (no snapshot yet and the store
    cannot be read now) or `SettingsError` (a bad CODEX_RECALL_W_* value).
    """
    from codex_dreams.retrieval.engine import recaller_for
    from codex_dreams.settings import get_settings

    engine = recaller_for(settings or get_settings(), weights)
    return engine.recall(text, k, explain=explain, log=log)


def _settings(settings: "Settings | None") -> "Settings":
    from codex_dreams.settings import get_settings

    return settings or get_settings()


def remember(content: str, *, at=None, metadata: dict | None = None, settings: "Settings | None" = None,
             source: str = "api"):
    """Record one memory (durable on return); returns its `MemoryRecord`. Raises `InvalidMemory` on bad input."""
    from codex_dreams.sources.ingest import remember as remember_memory

    return remember_memory(content, at=at, metadata=metadata, settings=_settings(settings), source=source)


def import_file(path, *, fmt: str = "auto", strict: bool = False, settings: "Settings | None" = None):
    """Import a jsonl / csv / LoCoMo file; returns an `ImportReport` (bad lines listed in `.rejected`)."""
    from codex_dreams.sources.ingest import import_path

    return import_path(path, fmt=fmt, strict=strict, settings=_settings(settings))


def consolidate(cycle: str = "all", *, settings: "Settings | None" = None) -> dict:
    """Run a rhythm's job now (`working`, `short_term`, `hippocampal`, `deep_sleep`, `rem_sleep`,
    `homeostasis` or `all`); returns the run summary (status, steps, failures)."""
    from codex_dreams.commands.consolidate import JOBS_BY_CYCLE, run_consolidation
    from codex_dreams.errors import InputError

    if cycle not in JOBS_BY_CYCLE:
        raise InputError(f"unknown cycle {cycle!r}; choose one of {', '.join(JOBS_BY_CYCLE)}")
    return run_consolidation(_settings(settings), JOBS_BY_CYCLE[cycle])


def insights(days: int = 14, *, settings: "Settings | None" = None) -> dict:
    """Compute and store insights about the `days` before the newest memory."""
    from codex_dreams.commands.insights import generate_insights

    return generate_insights(_settings(settings), days=days)


def export(output, *, fmt: str = "json", stage: str = "raw", force: bool = False,
           settings: "Settings | None" = None):
    """Write a stage's table to `output`; returns an `ExportResult`."""
    from pathlib import Path

    from codex_dreams.commands.export import export_stage
    from codex_dreams.store import open_store

    with open_store(_settings(settings)) as con:
        return export_stage(con, stage, fmt, Path(output), force=force)


def health(*, verbose: bool = True, settings: "Settings | None" = None) -> dict:
    """The `codex health` report: status healthy / degraded / unhealthy and the checks."""
    from codex_dreams.commands.health import run_health

    return run_health(_settings(settings), verbose=verbose)


def metrics(period: str = "24h", *, settings: "Settings | None" = None) -> dict:
    """The `codex metrics` report over `period` (e.g. 24h, 7d)."""
    from codex_dreams.commands.metrics import collect_metrics

    return collect_metrics(_settings(settings), period)
