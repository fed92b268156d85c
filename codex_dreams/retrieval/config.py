"""Recall settings: the fusion weights (environment variables) and the fixed shape of the search.

The weights are read from `CODEX_RECALL_W_DENSE`, `CODEX_RECALL_W_LEXICAL`, `CODEX_RECALL_W_ASSOCIATIVE` and
`CODEX_RECALL_W_STRENGTH` (or a `.env` in the working directory). Each is >= 0 and they need not sum to 1: the
fused score is divided by their sum, so it stays in [0, 1]. A bad value raises `SettingsError` naming the
variable, like every other setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from codex_dreams.settings import SettingsError

SIGNALS = ("dense", "lexical", "associative", "context", "strength")


class RecallWeights(BaseSettings):
    """How much each normalised signal counts in the fused score."""

    model_config = SettingsConfigDict(env_prefix="CODEX_RECALL_W_", env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore", frozen=True)

    # docs/recall.md, "How the defaults were chosen": dense, lexical and associative as before (dense keeps enough
    # weight that a paraphrase beats an incidental one-word match); context and strength as every fold of a
    # leave-one-conversation-out selection on LoCoMo chose them (the query-independent strength prior costs points).
    dense: float = Field(default=0.3, ge=0.0, le=100.0)
    lexical: float = Field(default=0.35, ge=0.0, le=100.0)
    associative: float = Field(default=0.25, ge=0.0, le=100.0)
    context: float = Field(default=0.35, ge=0.0, le=100.0)
    strength: float = Field(default=0.0, ge=0.0, le=100.0)
    # Not a fusion weight: what a REM-sleep (creative) link carries in associative spreading, relative to the
    # hebbian, temporal and semantic links. Creative links are remote associations made in sleep (for insights),
    # not evidence that two memories belong together: every leave-one-out fold on LoCoMo chose 0.
    creative: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _not_all_zero(self):
        if self.dense + self.lexical + self.associative + self.context + self.strength <= 0:
            raise ValueError("at least one recall weight must be positive")
        return self

    @property
    def total(self) -> float:
        return self.dense + self.lexical + self.associative + self.context + self.strength

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in (*SIGNALS, "creative")}


def load_weights(**overrides) -> RecallWeights:
    """The weights from the environment (overrides win); SettingsError with one sentence on a bad value."""
    try:
        return RecallWeights(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        loc = first.get("loc") or ()
        name = f"CODEX_RECALL_W_{str(loc[0]).upper()}" if loc else "CODEX_RECALL_W_*"
        message = first.get("msg", "invalid value").removeprefix("Value error, ")
        shown = f" (got {first['input']!r})" if loc and "input" in first else ""
        raise SettingsError(f"Invalid setting {name}: {message}{shown}.") from None


@dataclass(frozen=True)
class SearchShape:
    """Fixed parameters of one recall (documented in docs/recall.md; not environment settings)."""

    candidates: int = 100        # top-N per retrieval signal that enter fusion (at least 4 * k)
    seeds: int = 5               # best preliminary hits that spread activation
    hops: int = 2                # spreading activation depth
    hop_decay: float = 0.8       # activation kept per hop (x link strength)
    fan_out: int = 32            # strongest links followed per node
    frontier: int = 20           # hop-1 nodes that spread to hop 2
    context_seeds: int = 20      # best hits whose episode neighbours join the candidates
    context_window: int = 1      # neighbours this many memories away (in event time, same episode) lift a memory
    bm25_k1: float = 1.2         # the fts extension's match_bm25 defaults
    bm25_b: float = 0.75
    max_k: int = 1000


DEFAULT_SHAPE = SearchShape()
