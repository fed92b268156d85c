"""Long-term memory through the real pipeline: scripted memories at chosen times, the dbt models of working and
short-term memory, the cycle assets with chosen keys (run tags, as the schedules set them), then the
long-term memory and monitoring models.

The same memories go through two stores:
- windowed: three chunks (day 0, day 20, day 40), each followed by working/short-term memory and that chunk's
  cycles, as live processing would;
- bulk: all memories at once, one working/short-term memory run, then the same cycle keys in the same order.
"Same long-term state" means: identical association pairs, types, labels and counters with strengths equal to
1e-9, identical memory_consolidation rows, identical ledger rows (apart from wall-clock times, durations and
run ids), identical ltm_memories categories, stability and retrieval strength, and identical cluster
membership. It holds because every cycle sees only memories created before its as_of and the chunks end at
event boundaries (pauses far longer than an episode gap), so no episode, window or co-activation spans two
chunks; the short-term memory's own decayed `strength` (measured from the latest memory) is not an input to
consolidation.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

import dagster as dg
import pytest

from codex_dreams.stages import cycles
from codex_dreams.stages.consolidation import CYCLE_ASSET_KEYS
from codex_dreams.jobs import REFRESH_AFTER_CYCLE
from scenario import Memory, at, query, stage_assets, topic_vector, write_memories

pytestmark = pytest.mark.slow


def _memories() -> dict[str, list[Memory]]:
    def run(mid, text, when, mix_axis, mix, **kw):
        return Memory(mid, text, when, embedding=topic_vector(1, toward=mix_axis, mix=mix), **kw)

    day0 = [  # a salient morning run (one episode), then coffee two hours later (another)
        run("r1", "Easy four miles around Laurelhurst Park before work.", at(0), 10, 0.0,
            importance=0.8, emotional_salience=0.7, sentiment=0.6, topics=["running", "park"]),
        run("r2", "Fog on the pond, and a heron standing on the far bank.", at(20), 10, 0.15,
            importance=0.6, emotional_salience=0.6, sentiment=0.5, topics=["park", "heron"]),
        run("r3", "Right knee twinged on the downhill stretch near the pond.", at(50), 11, 0.2,
            importance=0.7, emotional_salience=0.5, sentiment=-0.3, topics=["running", "knee"]),
        run("r4", "Stretched by the fountain afterwards, calves tight.", at(minutes=3), 12, 0.2,
            importance=0.5, emotional_salience=0.4, topics=["running", "stretching"]),
        Memory("c1", "Cortado at Kestrel cafe on the way in.", at(hours=2), importance=0.5, emotional_salience=0.1,
               topics=["coffee"], embedding=topic_vector(2)),
        Memory("c2", "The barista remembered my order for the first time.", at(hours=2, seconds=15),
               importance=0.5, emotional_salience=0.2, topics=["coffee", "barista"],
               embedding=topic_vector(2, toward=13, mix=0.2)),
        Memory("c3", "Kestrel is two blocks north of the office.", at(hours=2, minutes=2), importance=0.4,
               emotional_salience=0.0, topics=["coffee", "office"], embedding=topic_vector(2, toward=14, mix=0.2)),
    ]
    day20 = [  # a work episode
        Memory("a1", "Atlas cutover is scheduled for Wednesday.", at(days=20), importance=0.9, emotional_salience=0.5,
               topics=["atlas", "cutover"], embedding=topic_vector(3)),
        Memory("a2", "Elena wants a go/no-go checklist by Friday.", at(days=20, seconds=20), importance=0.8,
               emotional_salience=0.4, topics=["atlas", "checklist"], entities=["Elena"],
               embedding=topic_vector(3, toward=15, mix=0.2)),
        Memory("a3", "Drafted the checklist with Priya.", at(days=20, minutes=4), importance=0.7,
               emotional_salience=0.3, topics=["checklist"], entities=["Priya"],
               embedding=topic_vector(3, toward=16, mix=0.2)),
    ]
    day40 = [  # the knee again (like the run: cosine 0.6, a REM candidate), then the dog
        Memory("k1", "Physio says the knee needs two weeks of rest.", at(days=40), importance=0.7,
               emotional_salience=0.6, sentiment=-0.4, topics=["knee", "physio"],
               embedding=topic_vector(1, toward=4, mix=0.59)),
        Memory("k2", "Booked the next physio session for Thursday.", at(days=40, seconds=30), importance=0.6,
               emotional_salience=0.3, topics=["physio"], embedding=topic_vector(4, toward=1, mix=0.2)),
        Memory("d1", "Biscuit refused to get out of bed this morning.", at(days=40, hours=1), importance=0.5,
               emotional_salience=0.5, sentiment=0.4, topics=["dog"], entities=["Biscuit"],
               embedding=topic_vector(5)),
        Memory("d2", "Walked Biscuit around the block in the rain.", at(days=40, hours=1, seconds=20),
               importance=0.5, emotional_salience=0.4, topics=["dog", "rain"], entities=["Biscuit"],
               embedding=topic_vector(5, toward=17, mix=0.2)),
    ]
    return {"day0": day0, "day20": day20, "day40": day40}


# The cycles after each chunk, in order (the keys a schedule would have tagged).
PLAN = {
    "day0": ["hippocampal:2025-01-06T12", "rem_sleep:2025-01-06T13:30", "deep_sleep:2025-01-06T13",
             "hippocampal:2025-01-06T14"],
    "day20": ["hippocampal:2025-01-26T10", "deep_sleep:2025-01-26T11"],
    "day40": ["hippocampal:2025-02-15T11", "deep_sleep:2025-02-15T12", "rem_sleep:2025-02-15T12:00",
              "homeostasis:2025-W07"],
}
RECALLS = [("r1", "2025-02-10 08:00:00"), ("r1", "2025-02-11 08:00:00"), ("r1", "2025-02-12 08:00:00"),
           ("a1", "2025-02-01 08:00:00"), ("a1", "2025-02-03 08:00:00"), ("a1", "2025-02-05 08:00:00")]
# dbt data tests of working/short-term memory run in their own test modules; here they only cost time.
STM = dg.AssetSelection.groups("working_memory", "short_term_memory").without_checks()


@lru_cache(maxsize=1)
def _assets():
    return stage_assets()


def materialize(resources, selection, *, tags=None, run_config=None, raise_on_error=True):
    return dg.materialize(_assets(), resources=resources, selection=selection, tags=tags, run_config=run_config,
                          raise_on_error=raise_on_error)


def run_cycle(resources, key: str, **kwargs):
    cycle_type = key.split(":", 1)[0]
    return materialize(resources, dg.AssetSelection.assets(CYCLE_ASSET_KEYS[cycle_type]),
                       tags={cycles.CYCLE_KEY_TAG: key}, **kwargs)


def record_recalls(settings):
    from codex_dreams.store import open_store

    with open_store(settings) as con:
        con.executemany("insert into long_term_memory.access_log values (?, ?, 'test-query')", RECALLS)


def new_store(tmp_path_factory, name: str):
    from codex_dreams.resources import build_resources
    from codex_dreams.settings import load_settings

    home = tmp_path_factory.mktemp(name) / "codex_home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CODEX_HOME", str(home))
        for variable in ("DUCKDB_PATH", "DAGSTER_HOME"):
            patch.delenv(variable, raising=False)
        patch.setenv("POSTGRES_DB_URL", "")
        settings = load_settings()
    return settings, build_resources(settings)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(windowed, bulk): each (settings, resources), processed as the module docstring says."""
    chunks = _memories()
    windowed = new_store(tmp_path_factory, "windowed")
    bulk = new_store(tmp_path_factory, "bulk")
    try:
        for chunk, keys in PLAN.items():
            write_memories(windowed[0], chunks[chunk])
            materialize(windowed[1], STM)
            for key in keys:
                run_cycle(windowed[1], key)
        write_memories(bulk[0], [m for chunk in chunks.values() for m in chunk])
        materialize(bulk[1], STM)
        for keys in PLAN.values():
            for key in keys:
                run_cycle(bulk[1], key)
        for settings, resources in (windowed, bulk):
            record_recalls(settings)
            materialize(resources, REFRESH_AFTER_CYCLE.without_checks())  # test_full_cycle runs the checks
    finally:
        os.environ.pop("DUCKDB_PATH", None)
    return windowed, bulk


def rows(settings, sql, params=None):
    return query(settings, sql, params)


def state(settings) -> dict:
    """The long-term state compared between the two stores (see the module docstring)."""
    links = {(a, b): (round(s, 9), t, label, co, re, since, ck, uk) for a, b, s, t, label, co, re, since, ck, uk in rows(
        settings, "select memory_a, memory_b, strength, link_type, label, coactivations, reactivations, "
                  "cycles_since_reactivation, created_cycle_key, updated_cycle_key from consolidation.associations")}
    consolidation = {r[0]: tuple(round(v, 9) if isinstance(v, float) else v for v in r[1:]) for r in rows(
        settings, "select * from consolidation.memory_consolidation")}
    ledger = {}
    for cycle_type, key, as_of, counts in rows(
            settings, "select cycle_type, cycle_key, as_of, counts from consolidation.cycle_ledger"):
        counts = json.loads(counts)
        counts.pop("duration_ms")
        ledger[key] = (cycle_type, as_of, {k: round(v, 9) if isinstance(v, float) else v for k, v in counts.items()})
    ltm = {m: (c, round(s, 9), round(st, 9), round(rs, 9)) for m, c, s, st, rs in rows(
        settings, "select memory_id, category, strength, stability, retrieval_strength from long_term_memory.ltm_memories")}
    columns: dict[int, set] = {}
    for memory_id, cluster_id in rows(settings, "select memory_id, cluster_id from long_term_memory.memory_clusters"):
        columns.setdefault(cluster_id, set()).add(memory_id)
    concepts = set(rows(settings, "select concept, kind, frequency from long_term_memory.ltm_concepts"))
    return {"links": links, "consolidation": consolidation, "ledger": ledger, "ltm": ltm,
            "columns": {frozenset(members) for members in columns.values()}, "concepts": concepts}


def test_bulk_import_gives_the_same_long_term_state_as_processing_in_windows(stores):
    windowed, bulk = stores
    a, b = state(windowed[0]), state(bulk[0])
    assert a["links"] and a["ltm"]  # something to compare
    for part in a:
        assert a[part] == b[part], part


def test_categories_follow_age_and_stability(stores):
    settings = stores[1][0]
    category = dict(rows(settings, "select memory_id, category from long_term_memory.ltm_memories"))
    assert category["r1"] == "ancient"  # 40 days old, 3 replays + 3 recalls (x2): stability 1 - e^-1.8 = 0.83
    assert category["c1"] == "consolidating"  # 40 days old, 3 replays only: stability 1 - e^-0.6 = 0.45
    assert category["a1"] == "stable"  # 20 days old, 2 replays + 3 recalls: 1 - e^-1.6 = 0.80
    assert category["k1"] == "fresh" and category["d1"] == "fresh"  # under a day old
    reference = rows(settings, "select distinct reference_time from long_term_memory.ltm_memories")
    assert [r[0].isoformat() for r in reference] == ["2025-02-15T12:00:00"]  # the last deep sleep's as_of
    strengths = dict(rows(settings, "select memory_id, retrieval_strength from long_term_memory.ltm_memories"))
    assert all(0 <= value <= 1 for value in strengths.values())
    assert strengths["r1"] > strengths["c1"]  # recalled and stable beats neither


def test_episodes_become_cortical_columns(stores):
    settings = stores[1][0]
    column = dict(rows(settings, "select memory_id, cluster_id from long_term_memory.ltm_memories"))
    assert len({column[m] for m in ("r1", "r2", "r3", "r4") if m in column}) == 1
    assert column["r1"] != column["c1"] and column["c1"] != column["a1"]
    summary = rows(settings, "select memories, label from long_term_memory.ltm_columns where cluster_id = ?",
                   [column["r1"]])
    assert summary[0][0] >= 3 and "running" in summary[0][1]


def test_rem_linked_the_knee_to_the_run_across_forty_days(stores):
    settings = stores[1][0]
    creative = rows(settings, "select memory_a, memory_b, strength, label from consolidation.associations "
                              "where link_type = 'creative'")
    pairs = {(a, b) for a, b, _, _ in creative}
    assert ("k1", "r1") in pairs or ("k1", "r2") in pairs
    episode = dict(rows(settings, "select memory_id, episode_id from short_term_memory.stm_memories"))
    assert all(episode[a] != episode[b] for a, b, _, _ in creative)
    assert all(0.8 * 0.45 - 1e-9 <= s for _, _, s, _ in creative)  # homeostasis may have scaled them since


def test_semantic_network(stores):
    settings = stores[1][0]
    concepts = dict(rows(settings, "select concept, frequency from long_term_memory.ltm_concepts"))
    assert concepts["running"] >= 2 and concepts["biscuit"] >= 1
    edges = rows(settings, "select concept_a, concept_b, weight from long_term_memory.ltm_concept_edges")
    assert all(a < b and 0 < w <= 1 for a, b, w in edges)
    assert any({a, b} == {"park", "running"} for a, b, _ in edges)
    embedded = rows(settings, "select count(*), count(*) filter (where in_long_term_memory), min(embedding_dim), "
                              "max(embedding_dim) from long_term_memory.ltm_memory_embeddings")[0]
    assert embedded[0] == 14 and embedded[1] == len(rows(settings, "select 1 from long_term_memory.ltm_memories"))
    assert embedded[2] == embedded[3] == 384


def test_monitoring_views(stores):
    settings = stores[1][0]
    stats = rows(settings, "select cycle_type, strengthened, weakened, pruned, created, transferred "
                           "from monitoring.consolidation_stats order by timestamp")
    assert len(stats) == sum(len(keys) for keys in PLAN.values())
    assert sum(row[5] for row in stats) == len(rows(settings, "select 1 from long_term_memory.ltm_memories"))
    health = dict(rows(settings, "select check_name, alert_level from monitoring.memory_health"))
    assert health["links_below_pruning_threshold"] == "OK" and health["strengths_outside_unit_interval"] == "OK"
    assert set(health.values()) <= {"OK", "WARNING", "CRITICAL"}
    dashboard = {(stage, measure): items for stage, measure, items in rows(
        settings, "select stage, measure, items from monitoring.memory_dashboard")}
    assert dashboard[("raw", "active memories")] == 14
    assert dashboard[("consolidation", "links (mean link strength)")] > 0
    runners = {r[0] for r in rows(settings, "select distinct runner from monitoring.memory_pipeline_metrics")}
    assert runners == {"dagster", "dbt"}
    timed = rows(settings, "select stage, min(processing_time_ms) from monitoring.memory_pipeline_metrics group by 1")
    assert {stage for stage, _ in timed} >= {"working_memory", "short_term_memory", "consolidation",
                                             "long_term_memory"}
    assert all(ms >= 0 for _, ms in timed)
    # dbt models report their rows after the build (tables counted by the on-run-end hook; views not)
    latest_rows = dict(rows(settings, "select asset, arg_max(rows, finished_at) from monitoring.memory_pipeline_metrics "
                                      "where runner = 'dbt' group by 1"))
    for schema, model in (("short_term_memory", "stm_memories"), ("long_term_memory", "ltm_memories")):
        assert latest_rows[model] == len(rows(settings, f"select 1 from {schema}.{model}")) > 0
    assert latest_rows["memory_dashboard"] is None


STATE_SQL = ["select * from consolidation.associations", "select * from consolidation.memory_consolidation",
             "select cycle_type, cycle_key, as_of, counts, started_at, finished_at from consolidation.cycle_ledger"]


def full_state(settings):
    return [sorted(rows(settings, sql), key=repr) for sql in STATE_SQL]


def test_rerunning_a_cycle_with_the_same_key_changes_nothing(stores):
    settings, resources = stores[1]
    before = full_state(settings)
    result = run_cycle(resources, "hippocampal:2025-02-15T11")
    metadata = result.asset_materializations_for_node("consolidation__hippocampal_consolidation")[0].metadata
    assert metadata["status"].value == "skipped: already applied"
    assert full_state(settings) == before


def test_a_crash_mid_cycle_leaves_the_state_unchanged(stores):
    settings, resources = stores[1]
    before = full_state(settings)
    key = "hippocampal:2025-02-15T13"
    bad = {"ops": {"consolidation__hippocampal_consolidation": {
        "config": {"param_overrides": {"consolidation_threshold": "not-a-number"}}}}}
    result = run_cycle(resources, key, run_config=bad, raise_on_error=False)
    assert not result.success
    assert full_state(settings) == before
    assert rows(settings, "select count(*) from consolidation.cycle_ledger where cycle_key = ?", [key]) == [(0,)]
    # the retry applies once
    assert run_cycle(resources, key).success
    assert rows(settings, "select count(*) from consolidation.cycle_ledger where cycle_key = ?", [key]) == [(1,)]
    assert full_state(settings) != before
