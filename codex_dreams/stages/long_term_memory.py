"""Python assets and checks of the long_term_memory group (the dbt models live in dbt_project/models/long_term_memory/).

- `ltm_clusters` ("cortical columns"): Louvain community detection on the association graph among long-term
  memories (networkx, fixed seed, nodes and edges in sorted order: deterministic); a long-term memory without
  links joins the column of its most similar member when the cosine reaches `cluster_join_similarity`, else it
  is a column of its own. Writes long_term_memory.memory_clusters (replaced in one transaction), which the dbt
  model ltm_memories reads.
- `ltm_report`: after the dbt models, a readable report of long-term memory (categories, retrieval-strength
  histogram, the forgetting curve, the largest columns and concepts). Writes nothing.
"""


from typing import Any, Mapping

import dagster as dg
import duckdb
import networkx as nx
import numpy as np
import pyarrow as pa
from dagster_duckdb import DuckDBResource

from codex_dreams.pools import DUCKDB_WRITER_POOL, STAGE_OWNERS
from codex_dreams.params import biological_params
from codex_dreams.stages import cycles, reporting
from codex_dreams.stages.checks import StoreCheck, stage_checks
from codex_dreams.stages.consolidation import STATE_TABLE_KEYS, run_params, store_connection

GROUP = "long_term_memory"
CLUSTERS_TABLE = "long_term_memory.memory_clusters"
LTM_CLUSTERS = dg.AssetKey([GROUP, "ltm_clusters"])
LTM_MODELS = [dg.AssetKey([GROUP, name]) for name in ("ltm_memories", "ltm_concepts", "ltm_concept_edges",
                                                       "ltm_columns")]
LOUVAIN_SEED = 42

_LTM_MEMBERS_SQL = f"""
    select mc.memory_id, coalesce(mc.episode_id, mc.memory_id) as episode_id
    from {cycles.MEMORY_CONSOLIDATION} as mc
    join raw.memories as m on m.id = mc.memory_id
    where mc.consolidated_at is not null and m.deleted_at is null
"""


def compute_clusters(con: duckdb.DuckDBPyConnection, params: Mapping) -> dict:
    """Recompute long_term_memory.memory_clusters; returns counts. Deterministic for a given state."""
    members = [row[0] for row in con.execute(_LTM_MEMBERS_SQL + " order by 1").fetchall()]
    edges = con.execute(f"""
        with ltm as ({_LTM_MEMBERS_SQL})
        select a.memory_a, a.memory_b, a.strength from {cycles.ASSOCIATIONS} as a
        semi join ltm as la on la.memory_id = a.memory_a
        semi join ltm as lb on lb.memory_id = a.memory_b
        order by 1, 2
    """).fetchall()
    graph = nx.Graph()
    graph.add_nodes_from(members)
    graph.add_weighted_edges_from(edges, weight="weight")
    communities = nx.community.louvain_communities(
        graph, weight="weight", resolution=float(params.get("cluster_resolution", 1.0)), seed=LOUVAIN_SEED)
    linked = [sorted(c) for c in communities if len(c) > 1 or graph.degree(next(iter(c))) > 0]
    isolated = sorted(m for c in communities if len(c) == 1 and graph.degree(next(iter(c))) == 0 for m in c)

    assignment: dict[str, int] = {}
    method: dict[str, str] = {}
    for index, community in enumerate(linked):
        for memory_id in community:
            assignment[memory_id], method[memory_id] = index, "louvain"

    # unlinked long-term memories join the column of their most similar linked member, if similar enough
    joined = 0
    if isolated and linked:
        ids, _, matrix = cycles.memory_embeddings(con, params.get("enrichment_model"), _LTM_MEMBERS_SQL)
        row = {memory_id: i for i, memory_id in enumerate(ids)}
        anchors = [m for m in sorted(assignment) if m in row]
        if anchors and matrix.size:
            anchor_matrix = matrix[[row[m] for m in anchors]]
            threshold = float(params.get("cluster_join_similarity", 0.5))
            for memory_id in isolated:
                if memory_id not in row:
                    continue
                sims = anchor_matrix @ matrix[row[memory_id]]
                best = int(np.argmax(sims))
                if sims[best] >= threshold:
                    assignment[memory_id] = assignment[anchors[best]]
                    method[memory_id] = "embedding"
                    joined += 1
    groups: dict[int, list[str]] = {}
    for memory_id, index in assignment.items():
        groups.setdefault(index, []).append(memory_id)
    columns = [sorted(group) for group in groups.values()]
    columns += [[m] for m in isolated if m not in assignment]
    for group in columns:
        for memory_id in group:
            method.setdefault(memory_id, "singleton")
    columns.sort(key=lambda group: (-len(group), group[0]))  # 1 = largest; ties by smallest member id

    ids, cluster_ids, keys, sizes, methods = [], [], [], [], []
    for number, group in enumerate(columns, start=1):
        for memory_id in group:
            ids.append(memory_id)
            cluster_ids.append(number)
            keys.append(group[0])
            sizes.append(len(group))
            methods.append(method[memory_id])
    table = pa.table({"memory_id": pa.array(ids, pa.string()), "cluster_id": pa.array(cluster_ids, pa.int32()),
                      "cluster_key": pa.array(keys, pa.string()), "cluster_size": pa.array(sizes, pa.int32()),
                      "method": pa.array(methods, pa.string())})
    con.execute("begin transaction")
    try:
        con.execute(f"delete from {CLUSTERS_TABLE}")
        con.register("_ltm_clusters", table)
        con.execute(f"""
            insert into {CLUSTERS_TABLE} (memory_id, cluster_id, cluster_key, cluster_size, method, label, computed_at)
            select memory_id, cluster_id, cluster_key, cluster_size, method, null, now() at time zone 'UTC'
            from _ltm_clusters
        """)
        con.unregister("_ltm_clusters")
        _label_clusters(con)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return {
        "long_term_memories": len(members),
        "links_among_them": len(edges),
        "columns": len(columns),
        "columns_of_two_or_more": sum(1 for group in columns if len(group) > 1),
        "joined_by_embedding": joined,
        "singletons": sum(1 for group in columns if len(group) == 1),
        "largest_column": max((len(group) for group in columns), default=0),
    }


def _label_clusters(con: duckdb.DuckDBPyConnection) -> None:
    """label = the three most frequent topics/entities among a column's members (ties alphabetical)."""
    if not cycles._table_exists(con, cycles.STM_MEMORIES):
        return
    con.execute(f"""
        update {CLUSTERS_TABLE} as c set label = l.label
        from (
            with terms as (
                select c.cluster_id, lower(trim(t.term)) as term
                from {CLUSTERS_TABLE} as c
                join (select memory_id, unnest(coalesce(topics, []::varchar[]) || coalesce(entities, []::varchar[]))
                      as term from {cycles.STM_MEMORIES}) as t on t.memory_id = c.memory_id
                where trim(t.term) <> ''
            ),
            ranked as (
                select cluster_id, term, count(*) as n from terms group by 1, 2
                qualify row_number() over (partition by cluster_id order by count(*) desc, term) <= 3
            )
            select cluster_id, string_agg(term, ', ' order by n desc, term) as label from ranked group by 1
        ) as l
        where c.cluster_id = l.cluster_id
    """)


@dg.asset(
    key=LTM_CLUSTERS,
    group_name=GROUP,
    kinds={"python", "duckdb", "networkx"},
    owners=STAGE_OWNERS,
    pool=DUCKDB_WRITER_POOL,
    deps=STATE_TABLE_KEYS,
    description=(
        "Cortical columns: Louvain communities (networkx, fixed seed) of the association graph among long-term "
        "memories; unlinked long-term memories join the column of their most similar member (cosine >= "
        "cluster_join_similarity) or stand alone. Writes long_term_memory.memory_clusters, labelled by the "
        "members' most frequent topics."
    ),
)
def ltm_clusters(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    params = run_params()
    started = reporting.utc_now()
    with store_connection(duckdb) as con:
        counts = compute_clusters(con, params)
        top = con.execute(f"""
            select cluster_id, cluster_size, any_value(method), any_value(label)
            from {CLUSTERS_TABLE} group by 1, 2 order by 1 limit 10
        """).fetchall()
        reporting.record_stage_run(con, stage=GROUP, asset="ltm_clusters", run_id=context.run_id,
                                   started_at=started, finished_at=reporting.utc_now(),
                                   rows=counts["long_term_memories"])
    context.log.info(f"cortical columns: {counts}")
    metadata: dict[str, Any] = {name: dg.MetadataValue.int(value) for name, value in counts.items()}
    metadata["dagster/row_count"] = dg.MetadataValue.int(counts["long_term_memories"])
    metadata["largest_columns"] = dg.MetadataValue.md(
        reporting.table_md(["column", "memories", "method", "label"], top))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    key=[GROUP, "ltm_report"],
    group_name=GROUP,
    kinds={"python", "duckdb"},
    owners=STAGE_OWNERS,
    pool=DUCKDB_WRITER_POOL,
    deps=LTM_MODELS,
    description=(
        "A readable report of long-term memory after the dbt models: memories per category (fresh, "
        "consolidating, stable, ancient), the retrieval-strength histogram, the forgetting curve, the largest "
        "cortical columns and the most frequent concepts. Writes nothing."
    ),
)
def ltm_report(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    params = biological_params()
    with store_connection(duckdb) as con:
        total, mean_retrieval, reference = con.execute(
            "select count(*), avg(retrieval_strength), max(reference_time) from long_term_memory.ltm_memories"
        ).fetchone()
        categories = con.execute("""
            select category, count(*), avg(stability), avg(retrieval_strength), avg(age_days)
            from long_term_memory.ltm_memories group by 1
            order by case category when 'fresh' then 1 when 'consolidating' then 2 when 'stable' then 3 else 4 end
        """).fetchall()
        columns = con.execute("""
            select cluster_id, label, memories, mean_retrieval_strength from long_term_memory.ltm_columns
            order by cluster_id limit 10
        """).fetchall()
        concepts = con.execute("""
            select concept, kind, frequency, first_seen_at, last_seen_at from long_term_memory.ltm_concepts
            order by frequency desc, concept limit 15
        """).fetchall()
        concept_count, edge_count = con.execute(
            "select (select count(*) from long_term_memory.ltm_concepts), "
            "(select count(*) from long_term_memory.ltm_concept_edges)").fetchone()
        histogram = reporting.histogram_md(con, "select retrieval_strength from long_term_memory.ltm_memories",
                                           what="memories")
    context.log.info(f"long-term memory: {total} memories, {concept_count} concepts, {edge_count} concept edges")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(int(total)),
        "long_term_memories": dg.MetadataValue.int(int(total)),
        "mean_retrieval_strength": dg.MetadataValue.float(float(mean_retrieval or 0.0)),
        "reference_time": str(reference),
        "concepts": dg.MetadataValue.int(int(concept_count)),
        "concept_edges": dg.MetadataValue.int(int(edge_count)),
        "categories": dg.MetadataValue.md(reporting.table_md(
            ["category", "memories", "mean stability", "mean retrieval strength", "mean age (days)"], categories)),
        "retrieval_strength_histogram": dg.MetadataValue.md(histogram),
        "forgetting_curve": dg.MetadataValue.md(reporting.retention_curve_md(params)),
        "largest_columns": dg.MetadataValue.md(reporting.table_md(
            ["column", "label", "memories", "mean retrieval strength"], columns)),
        "top_concepts": dg.MetadataValue.md(reporting.table_md(
            ["concept", "kind", "memories", "first seen", "last seen"], concepts)),
    })


def every_long_term_memory_in_one_column(con: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    missing, extra = con.execute(f"""
        with ltm as ({_LTM_MEMBERS_SQL})
        select (select count(*) from ltm anti join {CLUSTERS_TABLE} as c using (memory_id)),
               (select count(*) from {CLUSTERS_TABLE} as c anti join ltm using (memory_id))
    """).fetchone()
    return dg.AssetCheckResult(
        passed=missing == 0 and extra == 0,
        description=f"{missing} long-term memories without a column, {extra} clustered memories not in LTM",
        metadata={"without_column": int(missing), "not_in_ltm": int(extra)},
    )


# reporting.STAGE_RUNS belongs to the monitoring group, which has no Python stage module of its own
assets: list = [ltm_clusters, ltm_report, reporting.STAGE_RUNS]
asset_checks: list = [stage_checks("long_term_memory_checks", [
    StoreCheck(dg.AssetCheckSpec(
        "every_long_term_memory_in_one_column", asset=LTM_CLUSTERS,
        description="Each live long-term memory belongs to exactly one cortical column."),
        every_long_term_memory_in_one_column),
])]
