"""Working memory on a scripted stream, through real Dagster, dbt and DuckDB (one materialization, shared)."""

import dagster as dg
import pytest

from scenario import BURST_IMPORTANCE, at, query

pytestmark = pytest.mark.slow


def _attention(settings) -> dict:
    rows = query(settings, "select memory_id, window_start, attended, slot, encoding_strength, importance, "
                           "emotional_salience, novelty, sentiment, priority from working_memory.wm_attention")
    keys = ("window_start", "attended", "slot", "encoding_strength", "importance", "emotional_salience",
            "novelty", "sentiment", "priority")
    return {row[0]: dict(zip(keys, row[1:])) for row in rows}


def test_burst_attends_the_seven_most_important_in_slot_order(stream_store):
    settings, _ = stream_store
    attention = _attention(settings)
    burst = {mid: attention[mid] for mid in BURST_IMPORTANCE}
    assert {row["window_start"] for row in burst.values()} == {at(0)}

    attended = sorted((row["slot"], mid) for mid, row in burst.items() if row["attended"])
    by_importance = sorted(BURST_IMPORTANCE, key=BURST_IMPORTANCE.get, reverse=True)
    assert [slot for slot, _ in attended] == [1, 2, 3, 4, 5, 6, 7]
    assert [mid for _, mid in attended] == by_importance[:7]
    assert {mid for mid, row in burst.items() if not row["attended"]} == set(by_importance[7:])
    assert all(row["slot"] is None for row in burst.values() if not row["attended"])


def test_unattended_memories_pass_on_weaker_but_not_lost(stream_store):
    settings, _ = stream_store
    attention = _attention(settings)
    burst = [attention[mid] for mid in BURST_IMPORTANCE]
    weakest_attended = min(row["encoding_strength"] for row in burst if row["attended"])
    strongest_unattended = max(row["encoding_strength"] for row in burst if not row["attended"])
    assert 0 < strongest_unattended < weakest_attended <= 1
    in_stm = {row[0] for row in query(settings, "select memory_id from short_term_memory.stm_memories")}
    assert set(BURST_IMPORTANCE) <= in_stm


def test_unenriched_memory_flows_with_neutral_defaults(stream_store):
    settings, _ = stream_store
    u1 = _attention(settings)["u1"]
    assert (u1["importance"], u1["emotional_salience"], u1["sentiment"], u1["novelty"]) == (0.5, 0.0, 0.0, 1.0)
    assert u1["attended"] and 0 <= u1["encoding_strength"] <= 1


def test_deleted_memory_is_excluded_everywhere(stream_store):
    settings, _ = stream_store
    for table, column in [("working_memory.wm_attention", "memory_id"), ("working_memory.wm_buffer", "memory_id"),
                          ("short_term_memory.stm_memories", "memory_id"),
                          ("short_term_memory.stm_coactivation", "memory_a"),
                          ("short_term_memory.stm_coactivation", "memory_b")]:
        assert query(settings, f"select count(*) from {table} where {column} = 'gone'") == [(0,)], table
    # ... and still in the permanent record
    assert query(settings, "select count(*) from raw.memories where id = 'gone'") == [(1,)]


def test_novelty_drops_for_a_memory_like_the_ones_before(stream_store):
    settings, _ = stream_store
    attention = _attention(settings)
    # e2 leans on e1's topic (cosine ~0.95): far less novel than e1, which follows memories without embeddings
    assert attention["e1"]["novelty"] == 1.0
    assert attention["e2"]["novelty"] < 0.1
    # k1 turns to an orthogonal topic: fully novel again
    assert attention["k1"]["novelty"] == 1.0


def test_buffer_holds_items_one_window_unless_displaced(stream_store):
    settings, _ = stream_store
    buffer = query(settings, "select window_start, memory_id, arrived from working_memory.wm_buffer")
    windows: dict = {}
    for window_start, memory_id, arrived in buffer:
        windows.setdefault(window_start, {})[memory_id] = arrived
    assert windows[at(minutes=10, seconds=30)] == {"c3": True, "u1": True, "c1": False, "c2": False}
    flood = windows[at(minutes=20, seconds=30)]
    assert set(flood) == {f"f{k}" for k in range(1, 8)}  # seven arrivals displace d1 and d2
    assert max(len(members) for members in windows.values()) <= 7


def test_current_window_is_the_latest_buffer(stream_store):
    settings, _ = stream_store
    rows = query(settings, "select slot, memory_id, arrived_in_window from working_memory.wm_current_window")
    # k1 arrived a minute earlier (two windows back): no longer held
    assert rows == [(1, "k2", True)]


def test_checks_pass_and_report(stream_store):
    _, result = stream_store
    evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    mine = {name for key, name in evaluations if key.startswith(("working_memory/", "short_term_memory/"))}
    assert {"wm_attention_within_capacity", "wm_encoding_strength_bounds", "stm_nothing_lost",
            "stm_coactivation_bounded"} <= mine
    failed = [f"{key}:{name}" for (key, name), e in evaluations.items() if not e.passed]
    assert failed == []
    capacity = evaluations[("working_memory/wm_attention", "wm_attention_within_capacity")]
    assert capacity.metadata["windows_over_capacity"] == dg.IntMetadataValue(0)
    assert "| memories in window | windows |" in capacity.metadata["memories_per_window"].value
