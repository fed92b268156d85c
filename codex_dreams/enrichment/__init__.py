"""Enrichment providers: offline (default), Ollama and OpenAI-compatible; cache; resilience.

Public entry points (the Dagster asset lives in `codex_dreams.enrichment.asset`, imported by definitions):
- `enrich_pending(settings, *, log=None, batch_size=256, resilience=None) -> EnrichmentStats`
- `embed_texts(texts, settings) -> np.ndarray` (unit float32 [n, d], the active key's embedding model)
- `enrich_texts(texts, settings) -> list[EnrichedText]`
- `active_model_key(settings) -> str`, `active_embedding_model(settings) -> str`
- `current_enrichment_sql(model_key)`, `current_enrichment_view_sql(model_key)`
"""

from codex_dreams.enrichment.cache import (
    active_embedding_model,
    active_model_key,
    current_enrichment_sql,
    current_enrichment_view_sql,
)
from codex_dreams.enrichment.models import EnrichedText, Enrichment, InvalidOutputError, enrichment_json_schema
from codex_dreams.enrichment.pipeline import (
    EmbeddingUnavailable,
    EnrichmentStats,
    embed_texts,
    enrich_pending,
    enrich_texts,
)
from codex_dreams.enrichment.resilience import CircuitBreaker, ResilienceOptions

__all__ = [
    "CircuitBreaker",
    "EmbeddingUnavailable",
    "EnrichedText",
    "Enrichment",
    "EnrichmentStats",
    "InvalidOutputError",
    "ResilienceOptions",
    "active_embedding_model",
    "active_model_key",
    "current_enrichment_sql",
    "current_enrichment_view_sql",
    "embed_texts",
    "enrich_pending",
    "enrich_texts",
    "enrichment_json_schema",
]
