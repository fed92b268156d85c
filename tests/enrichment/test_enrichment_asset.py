"""The Dagster asset: its spec, and a real materialization against a temporary store."""

from __future__ import annotations

import dagster as dg
from enrichment_store_helpers import SAMPLE_TEXTS, enrichment_rows, insert_memories

from codex_dreams.enrichment.asset import memory_enrichment
from codex_dreams.resources import build_resources


def test_asset_spec():
    spec = memory_enrichment.specs_by_key[dg.AssetKey(["memory_enrichment"])]
    assert spec.group_name == "working_memory"
    assert [dep.asset_key for dep in spec.deps] == [dg.AssetKey("raw_memories")]
    assert spec.kinds == {"python", "duckdb"}
    assert memory_enrichment.op.pool == "duckdb_writer"
    assert spec.description and not spec.owners


def test_materialize_reports_counts_per_provider(make_settings, minilm):
    settings = make_settings()  # CODEX_HOME from the fixture; the asset reads the same environment
    insert_memories(settings, SAMPLE_TEXTS[:5])

    resources = build_resources(settings)
    result = dg.materialize([memory_enrichment], resources=resources)
    assert result.success
    metadata = result.asset_materializations_for_node("memory_enrichment")[0].metadata
    assert metadata["rows_offline"].value == 5
    assert metadata["fallbacks"].value == 0
    assert metadata["embedding_model"].value == "all-MiniLM-L6-v2-onnx-int8"
    assert metadata["embedding_dim"].value == 384
    assert metadata["model_key"].value == "offline|heuristics-v1|all-MiniLM-L6-v2-onnx-int8"
    assert "mean_latency_ms" in metadata
    assert len(enrichment_rows(settings)) == 5

    again = dg.materialize([memory_enrichment], resources=resources)
    assert again.asset_materializations_for_node("memory_enrichment")[0].metadata["enriched"].value == 0
