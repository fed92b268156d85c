"""The Dagster asset that keeps `enriched.memory_enrichment` current for the configured provider."""

import dagster as dg

from codex_dreams.enrichment.pipeline import enrich_pending
from codex_dreams.resources import StoreResource


@dg.asset(
    name="memory_enrichment",
    group_name="working_memory",
    deps=[dg.AssetKey("raw_memories")],
    pool="duckdb_writer",
    kinds={"python", "duckdb"},
    description=(
        "Entities, topics, sentiment, emotional salience, importance, goal/task/action, places and an embedding "
        "per memory, for the configured provider (CODEX_LLM_PROVIDER: offline, ollama or openai). Only memories "
        "whose content or model key changed are enriched; remote failures fall back to the offline heuristics. "
        "Writes enriched.memory_enrichment and refreshes the view enriched.current_enrichment."
    ),
)
def memory_enrichment(context: dg.AssetExecutionContext, duckdb: StoreResource) -> dg.MaterializeResult:
    # Settings are read at run time so the code location loads without touching the environment or the store.
    from codex_dreams.settings import get_settings

    settings = get_settings()
    if settings.llm_provider != "offline":
        duckdb.release()  # provider calls may take minutes: the store stays free meanwhile (reopened per batch)
    stats = enrich_pending(settings, log=context.log)
    return dg.MaterializeResult(metadata=stats.as_metadata())
