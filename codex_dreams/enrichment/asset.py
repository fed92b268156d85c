"""The Dagster asset that keeps `enriched.memory_enrichment` current for the configured provider, and its check
that too many memories did not silently fall back to the offline heuristics."""

import dagster as dg

from codex_dreams.enrichment.pipeline import MAX_FALLBACK_SHARE, enrich_pending
from codex_dreams.resources import StoreResource

ASSET_NAME = "memory_enrichment"
FALLBACK_CHECK = "llm_fallback_share"
# A run tagged with this ("true") also re-asks the LLM for memories whose fields fell back
# (`codex consolidate --type working --reenrich-fallbacks`).
REENRICH_FALLBACKS_TAG = "codex/reenrich_fallbacks"


@dg.asset(
    name=ASSET_NAME,
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
    check_specs=[dg.AssetCheckSpec(
        FALLBACK_CHECK, asset=ASSET_NAME,
        description=f"At most {MAX_FALLBACK_SHARE:.0%} of the memories (in the run, and among the stored rows of "
                    "the model key) fell back from the configured LLM to the offline heuristics, and at most as "
                    "many were left without an embedding in the run.",
    )],
)
def memory_enrichment(context: dg.AssetExecutionContext, duckdb: StoreResource) -> dg.MaterializeResult:
    # Settings are read at run time so the code location loads without touching the environment or the store.
    from codex_dreams.settings import get_settings

    settings = get_settings()
    if settings.llm_provider != "offline":
        duckdb.release()  # provider calls may take minutes: the store stays free meanwhile (reopened per batch)
    reenrich = context.run.tags.get(REENRICH_FALLBACKS_TAG, "").lower() == "true"
    stats = enrich_pending(settings, log=context.log, reenrich_fallbacks=reenrich)
    alert = stats.fallback_alert()
    if alert:
        context.log.warning(f"enrichment: {alert}")
    check = dg.AssetCheckResult(
        check_name=FALLBACK_CHECK, passed=alert is None, severity=dg.AssetCheckSeverity.WARN,
        description=alert or f"{stats.fallbacks} of {stats.enriched} memories fell back in this run",
        metadata={"fallback_share": round(stats.fallback_share, 4),
                  "stored_fallback_share": round(stats.stored_fallback_share, 4),
                  "max_fallback_share": MAX_FALLBACK_SHARE},
    )
    return dg.MaterializeResult(metadata=stats.as_metadata(), check_results=[check])
