"""Dagster assets of recall (group long_term_memory): apply the testing effect, publish the recall snapshot.

- `long_term_memory/access_log` drains the recall log (SQLite, written by every `codex query`) into
  long_term_memory.access_log, where retrieval strength and consolidation read it. Its key is the one the dbt
  source `long_term_memory.access_log` gets by default, so `ltm_memories` runs after it.
- `recall_snapshot` reads the store after the stages have run and publishes the read-only snapshot that
  `codex query` answers from (`codex_dreams.retrieval.snapshot`), so recall never waits on the pipeline.

Both write or read the DuckDB file, so both run in the `duckdb_writer` pool. Nothing here opens the store at
import time.
"""


import dagster as dg
from dagster_duckdb import DuckDBResource

from codex_dreams.pools import DUCKDB_WRITER_POOL, STAGE_OWNERS

GROUP = "long_term_memory"
ACCESS_LOG = dg.AssetKey([GROUP, "access_log"])
RECALL_SNAPSHOT = dg.AssetKey("recall_snapshot")
# What the snapshot reads. Keys that are not (yet) defined in the code location are external assets to
# Dagster: they order nothing, but break nothing either.
SNAPSHOT_DEPS = [
    dg.AssetKey("raw_memories"),
    dg.AssetKey("memory_enrichment"),
    dg.AssetKey([GROUP, "ltm_memories"]),
    dg.AssetKey(["consolidation", "associations"]),
    ACCESS_LOG,
]


@dg.asset(
    key=ACCESS_LOG,
    group_name=GROUP,
    kinds={"python", "duckdb", "sqlite"},
    owners=STAGE_OWNERS,
    pool=DUCKDB_WRITER_POOL,
    description=(
        "long_term_memory.access_log (memory_id, accessed_at, query_id): one row per memory returned by a recall. "
        "Drains the recall log that `codex query` writes beside the store ($CODEX_HOME/recall_log.sqlite) - the "
        "testing effect is applied by the pipeline, never by the read itself. Idempotent per (query_id, memory_id)."
    ),
)
def access_log(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    from codex_dreams.retrieval import log as recall_log
    from codex_dreams.settings import get_settings

    path = recall_log.log_path(get_settings())
    with duckdb.get_connection() as con:
        gained = recall_log.drain(con, path)
        total, memories = con.execute(
            f"select count(*), count(distinct memory_id) from {recall_log.ACCESS_LOG}").fetchone()
    context.log.info(f"access log: {gained} recalls applied; {total} in total over {memories} memories")
    return dg.MaterializeResult(metadata={
        "drained": dg.MetadataValue.int(gained),
        "dagster/row_count": dg.MetadataValue.int(int(total)),
        "memories_recalled": dg.MetadataValue.int(int(memories)),
    })


@dg.asset(
    key=RECALL_SNAPSHOT,
    group_name=GROUP,
    kinds={"python", "duckdb", "numpy"},
    owners=STAGE_OWNERS,
    pool=DUCKDB_WRITER_POOL,
    deps=SNAPSHOT_DEPS,
    description=(
        "The read-only snapshot `codex query` answers from, published after each run into "
        "$CODEX_HOME/recall/<version>/: memories with a BM25 (fts) index in a small DuckDB file, unit embeddings "
        "as a memory-mapped numpy matrix, the association graph as CSR arrays and the retrieval-strength prior. "
        "Published atomically (CURRENT pointer, os.replace); the last 2 versions are kept."
    ),
)
def recall_snapshot(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    from codex_dreams.retrieval.snapshot import build_snapshot
    from codex_dreams.settings import get_settings

    with duckdb.get_connection() as con:
        info = build_snapshot(con, get_settings(), log=context.log.info)
    manifest = info.manifest
    return dg.MaterializeResult(metadata={
        "version": dg.MetadataValue.text(info.version),
        "path": dg.MetadataValue.path(str(info.path)),
        "dagster/row_count": dg.MetadataValue.int(manifest["memories"]),
        "embedded": dg.MetadataValue.int(manifest["embedding"]["embedded"]),
        "embedding_model": dg.MetadataValue.text(str(manifest["embedding"]["model"])),
        "links": dg.MetadataValue.int(manifest["graph"]["links"]),
        "lexical_terms": dg.MetadataValue.int(manifest["lexical"]["terms"]),
        "build_seconds": dg.MetadataValue.float(manifest["build_seconds"]),
    })


assets = [access_log, recall_snapshot]
