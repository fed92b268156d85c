"""The testing effect: recalls are logged beside the store; the pipeline's assets drain them into
long_term_memory.access_log and publish a snapshot in which the recalled memories are stronger."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import duckdb
import pytest

from codex_dreams.retrieval import log as recall_log
from codex_dreams.retrieval.asset import ACCESS_LOG, RECALL_SNAPSHOT, SNAPSHOT_DEPS, access_log, recall_snapshot
from codex_dreams.retrieval.engine import Recaller
from codex_dreams.retrieval.snapshot import current_snapshot_path, current_version


def _access_rows(settings) -> list[tuple]:
    con = duckdb.connect(str(settings.database_path), read_only=True)
    try:
        return con.execute("select memory_id, accessed_at, query_id from long_term_memory.access_log "
                           "order by query_id, memory_id").fetchall()
    finally:
        con.close()


def test_every_recall_is_logged_with_its_ranks(engine, recall_store):
    first = engine.recall("ferry tickets to Hydra", 3)
    second = engine.recall("Kovacsevic", 2)
    engine.recall("not logged", 2, log=False)
    rows = recall_log.read(recall_log.log_path(recall_store))
    assert [(r[1], r[3], r[4]) for r in rows] == (
        [(first.query_id, m.memory_id, m.rank) for m in first] + [(second.query_id, m.memory_id, m.rank) for m in second])
    assert all(r[5] == pytest.approx(m.score) for r, m in zip(rows, [*first, *second]))


def test_the_pipeline_drains_the_log_into_the_access_log_and_strengthens_what_was_recalled(engine, recall_store,
                                                                                           resources):
    from recall_store import publish

    before = engine.recall("ferry tickets to Hydra", 2, log=False)
    strength_before = {m.memory_id: m.signals["strength"] for m in before}
    answers = [engine.recall("ferry tickets to Hydra", 2) for _ in range(3)]
    path = recall_log.log_path(recall_store)
    assert recall_log.pending(path) == 6
    assert _access_rows(recall_store) == []  # a recall never writes the store itself

    result = dg.materialize([access_log, recall_snapshot], resources=resources)
    assert result.success
    rows = _access_rows(recall_store)
    assert sorted((memory_id, query_id) for memory_id, _, query_id in rows) == sorted(
        (m.memory_id, a.query_id) for a in answers for m in a)
    assert recall_log.pending(path) == 0
    drained = result.asset_materializations_for_node("long_term_memory__access_log")[0].metadata
    assert drained["drained"].value == 6

    # the new snapshot (published by the same run) has the practice in its strength prior
    after = Recaller(recall_store).recall("ferry tickets to Hydra", 2, log=False)
    assert after.snapshot == current_version(recall_store) != before.snapshot
    for m in after:
        assert m.signals["strength"] > strength_before[m.memory_id]

    # idempotent: a crash after the DuckDB commit but before the SQLite delete re-drains nothing twice
    recall_log.append(path, [(answers[0].query_id, datetime.now(timezone.utc).replace(tzinfo=None),
                              [(m.memory_id, m.score) for m in answers[0]])])
    from codex_dreams.store import open_store

    with open_store(recall_store) as con:
        assert recall_log.drain(con, path) == 0
    assert len(_access_rows(recall_store)) == 6
    publish(recall_store)


def test_the_snapshot_asset_publishes_and_reports(settings, resources, corpus_vectors):
    from recall_store import CORPUS, LINKS, write_store

    write_store(settings, CORPUS, corpus_vectors, LINKS)
    result = dg.materialize([recall_snapshot], resources=resources)
    assert result.success
    metadata = result.asset_materializations_for_node("recall_snapshot")[0].metadata
    assert metadata["dagster/row_count"].value == len(CORPUS)
    assert metadata["links"].value == 3 and metadata["embedded"].value == len(CORPUS)
    assert metadata["version"].value == current_version(settings)
    assert current_snapshot_path(settings).exists()


def test_the_assets_join_the_code_location_without_key_clashes():
    from codex_dreams.definitions import defs

    mine = {ACCESS_LOG, RECALL_SNAPSHOT}
    existing = [a for a in defs.assets if not (set(getattr(a, "keys", ())) & mine)]  # already wired or not
    combined = dg.Definitions(assets=[*existing, access_log, recall_snapshot], resources=defs.resources)
    graph = combined.resolve_asset_graph()
    assert {ACCESS_LOG, RECALL_SNAPSHOT} <= set(graph.get_all_asset_keys())
    spec = next(s for s in combined.resolve_all_asset_specs() if s.key == RECALL_SNAPSHOT)
    assert spec.group_name == "long_term_memory"
    assert set(spec.kinds) == {"python", "duckdb", "numpy"}
    assert {dep.asset_key for dep in spec.deps} == set(SNAPSHOT_DEPS)
    for assets_def in (access_log, recall_snapshot):
        assert assets_def.op.pool == "duckdb_writer"
