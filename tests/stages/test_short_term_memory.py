"""Short-term memory through real Dagster, dbt and DuckDB: episodes, structure, spatial and emotional context,
decay, co-activation, incremental runs equal to a full build, and invariants over random streams."""

import math
import subprocess
from collections import Counter, defaultdict

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from scenario import (
    Memory, at, insert_memories, isolated_stage_env, mark_deleted, materialize_stages, query, stream_script,
    topic_vector, write_memories,
)

pytestmark = pytest.mark.slow


def _episodes_by_memory(settings) -> dict:
    return dict(query(settings, "select memory_id, episode_id from short_term_memory.stm_memories"))


def _episode(settings, first_memory_id: str) -> dict:
    cursor_rows = query(settings, "select * from short_term_memory.stm_episodes where first_memory_id = ?",
                        [first_memory_id])
    columns = [row[0] for row in query(
        settings, "select column_name from information_schema.columns where table_schema = 'short_term_memory' "
                  "and table_name = 'stm_episodes' order by ordinal_position")]
    assert len(cursor_rows) == 1, first_memory_id
    return dict(zip(columns, cursor_rows[0]))


def test_episodes_split_at_time_gaps_and_topic_shifts(stream_store):
    settings, _ = stream_store
    episodes = _episodes_by_memory(settings)
    groups = defaultdict(set)
    for memory_id, episode_id in episodes.items():
        groups[episode_id].add(memory_id)
    assert len(groups) == 3
    assert episodes["b00"] == episodes["f7"] == episodes["u1"]  # 10-minute pauses stay in one episode
    assert groups[episodes["e1"]] == {"e1", "e2", "e3"}  # 40-minute pause before e1
    assert groups[episodes["k1"]] == {"k1", "k2"}  # topic shift one minute after e3
    assert len(groups[episodes["b00"]]) == 10 + 4 + 2 + 7  # burst, held, displaced, flood ("gone" is deleted)
    reasons = {first: _episode(settings, first)["boundary_reason"] for first in ("b00", "e1", "k1")}
    assert reasons == {"b00": "start", "e1": "time_gap", "k1": "topic_shift"}


def test_goal_tasks_actions_spatial_and_mood_per_episode(stream_store):
    settings, _ = stream_store
    atlas = _episode(settings, "e1")
    assert atlas["goal"] == "ship Atlas"  # two of three memories name it
    assert atlas["tasks"] == ["write checklist", "review dedup"]  # distinct, in order of first appearance
    assert atlas["actions"] == ["drafted the list", "opened the PR"]
    assert atlas["places"] == ["Kestrel café"]
    assert "two blocks north of the office" in atlas["egocentric"]
    assert {"to my left", "behind the desk"} <= set(atlas["egocentric"])
    assert atlas["mood"] == "excited" and atlas["mean_sentiment"] == pytest.approx(0.6)
    assert atlas["memory_count"] == 3

    knee = _episode(settings, "k1")
    assert knee["mood"] == "sad" and knee["places"] == ["Laurelhurst Park"] and knee["egocentric"] == []
    assert knee["goal"] is None and knee["tasks"] == []

    spatial = {row[0]: row[1:] for row in query(
        settings, "select memory_id, places, egocentric, reference_frame from short_term_memory.stm_spatial_memory")}
    assert spatial["e1"][2] == "both"
    assert spatial["e2"][0] == [] and spatial["e2"][2] == "egocentric"
    assert spatial["k1"] == (["Laurelhurst Park"], [], "allocentric")
    assert "b00" not in spatial

    emotional = query(settings, "select mood, peak_memory_id from short_term_memory.stm_emotional_context "
                                "where episode_id = ?", [atlas["episode_id"]])
    assert emotional == [("excited", "e2")]


def test_coactivation_counts_windows_held_together(stream_store):
    settings, _ = stream_store
    pairs = {(a, b): (w, e, n) for a, b, w, e, n in query(
        settings, "select memory_a, memory_b, window_coactivations, episode_coactivations, coactivation_count "
                  "from short_term_memory.stm_coactivation")}
    assert pairs[("c1", "c2")] == (2, 1, 3)  # together in their window and held together into the next
    assert pairs[("d1", "d2")] == (1, 1, 2)  # displaced by seven new items after one window
    assert pairs[("c1", "c3")][0] == 1  # c1 held into c3's window
    assert ("b00", "e1") not in pairs and ("e3", "k1") not in pairs  # different episodes, far apart
    assert all(a < b for a, b in pairs)


def test_decay_is_monotone_in_event_time_age(stream_store):
    settings, _ = stream_store
    rows = query(settings, "select memory_id, age_hours, encoding_strength, strength, reference_time "
                           "from short_term_memory.stm_memories order by age_hours")
    assert {row[4] for row in rows} == {at(hours=1, minutes=4)}  # "now" is the latest memory, not the clock
    latest = rows[0]
    assert latest[0] == "k2" and latest[1] == 0 and latest[3] == latest[2]
    retention = [(age, strength / encoding) for _, age, encoding, strength, _ in rows]
    for (age_1, kept_1), (age_2, kept_2) in zip(retention, retention[1:]):
        assert kept_2 <= kept_1 if age_2 > age_1 else kept_2 == pytest.approx(kept_1)
    assert all(0 < kept < 1 for age, kept in retention if age > 0)


# --- incremental == full refresh --------------------------------------------------------------------------

STAGE_TABLES = [
    "working_memory.wm_memory_features", "working_memory.wm_attention", "working_memory.wm_buffer", "working_memory.wm_current_window",
    "short_term_memory.stm_memories", "short_term_memory.stm_episodes", "short_term_memory.stm_spatial_memory",
    "short_term_memory.stm_emotional_context", "short_term_memory.stm_coactivation_events",
    "short_term_memory.stm_coactivation",
]
LATE = Memory("late", "a note written later about the release, dated back", at(minutes=10, seconds=35),
              importance=0.95, emotional_salience=0.9)
SPLIT = at(minutes=20, seconds=33)


def _snapshot(settings) -> dict:
    # a lookback fingerprint also hashes when each memory was enriched, which differs between the two stores
    return {table: query(settings, f"select * exclude (lookback_fingerprint) from {table} order by all"
                         if table == "working_memory.wm_memory_features" else f"select * from {table} order by all")
            for table in STAGE_TABLES}


def test_incremental_runs_equal_a_full_build(tmp_path_factory):
    script = stream_script()
    first = [m for m in script if m.created_at <= SPLIT]
    for memory in first:
        if memory.id == "gone":
            memory.deleted_at = None  # deleted at the source only later
    second = [m for m in stream_script() if m.created_at > SPLIT] + [LATE]

    with isolated_stage_env(tmp_path_factory.mktemp("incremental") / "codex_home") as (inc_settings, inc_res):
        pass
    write_memories(inc_settings, first)
    materialize_stages(inc_res, "working_memory", "short_term_memory")
    count_before = query(inc_settings, "select count(*) from working_memory.wm_attention")[0][0]
    write_memories(inc_settings, second)
    mark_deleted(inc_settings, ["gone"], at(days=1))
    from codex_dreams.store import open_store

    with open_store(inc_settings) as con:  # re-enrichment of an old memory changes its window
        con.execute("update enriched.memory_enrichment set importance = 0.05, enriched_at = ? "
                    "where memory_id = 'c1'", [at(days=2)])
    materialize_stages(inc_res, "working_memory", "short_term_memory")
    incremental = _snapshot(inc_settings)

    with isolated_stage_env(tmp_path_factory.mktemp("full") / "codex_home") as (full_settings, full_res):
        pass
    final = [m for m in stream_script()] + [LATE]
    for memory in final:
        if memory.id == "c1":
            memory.importance = 0.05
    write_memories(full_settings, final)
    materialize_stages(full_res, "working_memory", "short_term_memory")
    full = _snapshot(full_settings)

    assert count_before == len(first)
    for table in STAGE_TABLES:
        assert incremental[table] == full[table], table
    assert len(full["short_term_memory.stm_memories"]) == len(final) - 1  # all but the deleted one

    # a re-run with nothing new changes nothing (idempotent) and re-processes nothing: a row planted in an
    # unchanged window survives it (a full rebuild would have replaced it)
    planted = {"working_memory.wm_attention", "working_memory.wm_memory_features"}
    with open_store(inc_settings) as con:  # columns no later model reads
        con.execute("update working_memory.wm_attention set recency = 0.125 where memory_id = 'b00'")
        con.execute("update working_memory.wm_memory_features set memory_source = 'planted' where memory_id = 'b00'")
    materialize_stages(inc_res, "working_memory", "short_term_memory")
    assert query(inc_settings, "select recency from working_memory.wm_attention where memory_id = 'b00'") == [
        (0.125,)]
    assert query(inc_settings, "select memory_source from working_memory.wm_memory_features "
                               "where memory_id = 'b00'") == [("planted",)]
    after = _snapshot(inc_settings)
    assert {t: rows for t, rows in after.items() if t not in planted} == {
        t: rows for t, rows in incremental.items() if t not in planted}


# --- invariants over random streams (the compiled models run directly in DuckDB) --------------------------

MODEL_ORDER = [
    ("working_memory", "wm_memory_features", "table"), ("working_memory", "wm_attention", "table"),
    ("working_memory", "wm_buffer", "table"), ("working_memory", "wm_current_window", "view"),
    ("short_term_memory", "stm_memories", "table"), ("short_term_memory", "stm_spatial_memory", "table"),
    ("short_term_memory", "stm_emotional_context", "table"), ("short_term_memory", "stm_episodes", "table"),
    ("short_term_memory", "stm_coactivation_events", "table"), ("short_term_memory", "stm_coactivation", "table"),
]


@pytest.fixture(scope="module")
def compiled_models(tmp_path_factory):
    """The models compiled once (full-build form) against a catalog named `hyp`, keyed by model name."""
    import os

    from codex_dreams.dbt import dbt_executable
    from codex_dreams.params import DBT_PROJECT_DIR, biological_params

    work = tmp_path_factory.mktemp("compiled")
    env = {**os.environ, "DUCKDB_PATH": str(work / "hyp.duckdb"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    result = subprocess.run(
        [dbt_executable(), "compile", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(work / "target"), "--log-path", str(work / "logs"), "--quiet",
         "--select", "working_memory short_term_memory"],
        env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    compiled = work / "target" / "compiled" / "codex_dreams" / "models"
    return {name: (schema, kind, (compiled / schema / f"{name}.sql").read_text())
            for schema, name, kind in MODEL_ORDER}, biological_params()


def _run_models(con, compiled) -> None:
    for schema, name, kind in MODEL_ORDER:
        _, _, sql = compiled[name]
        con.execute(f"create schema if not exists {schema}")
        con.execute(f"create {kind} {schema}.{name} as {sql}")


memory_strategy = st.tuples(
    st.integers(min_value=0, max_value=3 * 3600),  # seconds after BASE_TIME: dense windows and long gaps
    st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=1),
    st.floats(min_value=-1, max_value=1),
    st.one_of(st.none(), st.tuples(st.integers(0, 3), st.integers(0, 7), st.floats(0, 1))),  # embedding
    st.booleans(),  # enriched
    st.integers(min_value=0, max_value=9),  # 0 = deleted at its source
)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(memory_strategy, min_size=1, max_size=60))
def test_invariants_hold_for_random_streams(compiled_models, specs):
    from codex_dreams.store import bootstrap

    compiled, params = compiled_models
    capacity = params["working_memory_capacity"]
    memories = []
    for i, (offset, importance, salience, sentiment, vector, enriched, alive) in enumerate(specs):
        embedding = None if vector is None else topic_vector(vector[0], dim=8, toward=vector[1], mix=vector[2])
        memories.append(Memory(f"m{i:03d}", f"memory {i}", at(offset), importance=importance,
                               emotional_salience=salience, sentiment=sentiment, embedding=embedding,
                               enriched=enriched, deleted_at=None if alive else at(days=9)))
    con = duckdb.connect()
    try:
        con.execute("attach ':memory:' as hyp")
        con.execute("use hyp")
        bootstrap(con)
        insert_memories(con, memories)
        _run_models(con, compiled)
        active = {m.id for m in memories if m.deleted_at is None}

        stm = con.execute("select memory_id, encoding_strength, strength from short_term_memory.stm_memories").fetchall()
        assert sorted(row[0] for row in stm) == sorted(active)  # nothing lost, nothing deleted kept
        assert all(0 <= enc <= 1 and 0 <= s <= enc + 1e-12 for _, enc, s in stm)

        per_window = con.execute(
            "select count(*), count(*) filter (where attended), "
            "max(encoding_strength) filter (where not attended), min(encoding_strength) filter (where attended), "
            "list(slot order by slot) filter (where attended) from working_memory.wm_attention group by window_start"
        ).fetchall()
        for members, attended, weakest_unattended_max, attended_min, slots in per_window:
            assert attended == min(members, capacity)
            assert slots == list(range(1, attended + 1))
            if weakest_unattended_max is not None:
                assert weakest_unattended_max < attended_min

        buffer_sizes = con.execute("select count(*) from working_memory.wm_buffer group by window_start").fetchall()
        assert all(n <= capacity for (n,) in buffer_sizes)

        episodes = con.execute("select sum(memory_count), count(*) from short_term_memory.stm_episodes").fetchone()
        assert (episodes[0] or 0) == len(active)

        events = Counter(row[0] for row in con.execute(
            "select context_type from short_term_memory.stm_coactivation_events").fetchall())
        top = params["coactivation_top_salient"]
        assert events["episode"] <= len(active) * params["coactivation_max_lag"] + episodes[1] * top * (top - 1) // 2
        assert events["window"] <= len(buffer_sizes) * capacity * (capacity - 1) // 2
        bad_pairs = con.execute(
            "select count(*) from short_term_memory.stm_coactivation where memory_a >= memory_b "
            "or coactivation_count <> window_coactivations + episode_coactivations").fetchone()[0]
        assert bad_pairs == 0
    finally:
        con.close()
