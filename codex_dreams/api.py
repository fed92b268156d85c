"""The Python API: what the `codex` command does, as functions.

Nothing here imports Dagster or dbt, and nothing opens the memory store on the read path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codex_dreams.recall.config import RecallWeights
    from codex_dreams.recall.engine import RecallResponse
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
    from codex_dreams.recall.engine import recaller_for
    from codex_dreams.settings import get_settings

    engine = recaller_for(settings or get_settings(), weights)
    return engine.recall(text, k, explain=explain, log=log)
