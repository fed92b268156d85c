"""Consolidation cycles on a synthetic short-term memory (codex_dreams.stages.cycles, no Dagster, no dbt).

Expected numbers are worked out by hand in the comments from the documented rules (docs/stages.md):
  c0 = initial_consolidation (0.5) * encoding;  replay: c <- c + 0.5 * enc * (1 + salience) * (1 - c)
  new link: w0 = (1 - 0.9^evidence) * sqrt(enc_a * enc_b); Hebbian: w * 1.1; forgetting: w * 0.9
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from codex_dreams.stages import cycles
from synthetic_stm import (
    Mem,
    Pair,
    add,
    add_link,
    cycle,
    hippocampal,
    link_rows,
    links,
    minutes,
    new_store,
    params,
    snapshot,
    unit,
)


def two_episodes() -> duckdb.DuckDBPyConnection:
    """E1 (a run, salient): r1, r2 together in one window, r3 later; E2 (coffee, dull): c1, c2 in one window."""
    con = new_store()
    add(con, [
        Mem("r1", "E1", minutes(0), encoding=1.0, salience=0.6),
        Mem("r2", "E1", minutes(0.2), encoding=1.0, salience=0.6),
        Mem("r3", "E1", minutes(5), encoding=0.64, salience=0.0),
        Mem("c1", "E2", minutes(60), encoding=1.0, salience=0.0),
        Mem("c2", "E2", minutes(60.2), encoding=0.25, salience=0.0),
    ], [Pair("r1", "r2"), Pair("r1", "r3", window=0), Pair("c1", "c2")], episode_salience={"E1": 0.8, "E2": 0.2})
    return con


def consolidation_strengths(con) -> dict[str, tuple]:
    return {m: (c, n, at) for m, c, n, at in con.execute(
        "select memory_id, consolidation_strength, replay_count, consolidated_at from consolidation.memory_consolidation"
    ).fetchall()}


def test_first_cycle_replays_creates_links_and_transfers():
    con = two_episodes()
    result = cycles.apply_hippocampal_cycle(con, params(), hippocampal(2))  # as_of 11:00, both episodes replayed
    assert result.applied and result.cycle.cycle_key == "hippocampal:2026-03-02T11"
    assert result.counts["new_memories"] == 5 and result.counts["replayed_episodes"] == 2

    state = consolidation_strengths(con)
    # r1: c0 = 0.5, replay 0.5 + 0.5*1.0*1.6*0.5 = 0.9 -> transferred; r3: 0.32 + 0.5*0.64*1.0*0.68 = 0.5376
    assert state["r1"][0] == pytest.approx(0.9) and state["r1"][2] == datetime(2026, 3, 2, 11)
    assert state["r3"][0] == pytest.approx(0.5376) and state["r3"][2] is None
    # c1: 0.5 + 0.5*0.5 = 0.75 -> transferred; c2: 0.125 + 0.5*0.25*0.875 = 0.234375
    assert state["c1"][0] == pytest.approx(0.75) and state["c1"][2] is not None
    assert state["c2"][0] == pytest.approx(0.234375) and state["c2"][2] is None
    assert result.counts["transferred"] == 3

    rows = link_rows(con)
    # evidence r1-r2 = 2 STM co-activations + 1 replay = 3: w0 = 1 - 0.9^3 = 0.271, same window -> hebbian
    assert rows[("r1", "r2")][0] == pytest.approx(0.271) and rows[("r1", "r2")][1] == "hebbian"
    # r1-r3: 1 + 1 = 2: (1 - 0.81) * sqrt(0.64) = 0.152, different windows of one episode -> temporal
    assert rows[("r1", "r3")][0] == pytest.approx(0.152) and rows[("r1", "r3")][1] == "temporal"
    # c1-c2: 0.271 * sqrt(0.25) = 0.1355
    assert rows[("c1", "c2")][0] == pytest.approx(0.1355)


def test_hebbian_growth_for_replayed_pairs_and_forgetting_for_the_rest():
    con = two_episodes()
    cycles.apply_hippocampal_cycle(con, params(), hippocampal(2))
    # one replay slot: E1 (salience 0.8) outranks E2 (0.2); E2's link is not reactivated
    result = cycles.apply_hippocampal_cycle(con, params(hippocampal_replay_episodes=1), hippocampal(3))
    strengths = links(con)
    assert strengths[("r1", "r2")] == pytest.approx(0.271 * 1.1)  # Hebbian: w * (1 + 0.1)
    assert strengths[("r1", "r3")] == pytest.approx(0.152 * 1.1)
    assert strengths[("c1", "c2")] == pytest.approx(0.1355 * 0.9)  # forgetting (c2 is not in LTM: hippocampal rate)
    assert result.counts["strengthened"] == 2 and result.counts["weakened"] == 1
    # r3 replayed again: 0.5376 + 0.5*0.64*(1 - 0.5376) = 0.685568 >= 0.6 -> moved to long-term memory now
    r3 = consolidation_strengths(con)["r3"]
    assert r3[0] == pytest.approx(0.685568) and r3[1] == 2 and r3[2] == datetime(2026, 3, 2, 12)


def test_hebbian_strength_saturates_at_one():
    con = two_episodes()
    cycles.apply_hippocampal_cycle(con, params(), hippocampal(2))
    for hour in range(3, 8):  # 0.271 * 1.5^4 > 1
        cycles.apply_hippocampal_cycle(con, params(hippocampal_replay_episodes=1, hebbian_learning_rate=0.5),
                                       hippocampal(hour))
    assert links(con)[("r1", "r2")] == 1.0


def test_links_between_long_term_memories_fade_at_the_cortical_rate():
    con = two_episodes()
    cycles.apply_hippocampal_cycle(con, params(), hippocampal(2))  # r1, r2, c1 transferred; r3, c2 not
    cycles.apply_hippocampal_cycle(con, params(hippocampal_replay_episodes=0), hippocampal(3))  # no replay
    strengths = links(con)
    assert strengths[("r1", "r2")] == pytest.approx(0.271 * 0.995)  # both in long-term memory
    assert strengths[("r1", "r3")] == pytest.approx(0.152 * 0.9)
    assert strengths[("c1", "c2")] == pytest.approx(0.1355 * 0.9)


def test_links_below_the_threshold_are_pruned():
    con = two_episodes()
    cycles.apply_hippocampal_cycle(con, params(), hippocampal(2))
    result = cycles.apply_hippocampal_cycle(
        con, params(hippocampal_replay_episodes=1, gradual_forgetting_rate=0.05), hippocampal(3))
    # c1-c2: 0.1355 * 0.05 = 0.006775 < 0.01 -> pruned; E1's links were reactivated
    assert set(links(con)) == {("r1", "r2"), ("r1", "r3")}
    assert result.counts["pruned"] == 1
    assert con.execute("select count(*) from consolidation.associations where strength < 0.01").fetchone()[0] == 0


def test_a_pruned_pair_is_not_recreated_without_new_activity():
    con = two_episodes()
    cycles.apply_hippocampal_cycle(con, params(), hippocampal(2))
    cycles.apply_hippocampal_cycle(con, params(hippocampal_replay_episodes=1, gradual_forgetting_rate=0.05),
                                   hippocampal(3))
    cycles.apply_hippocampal_cycle(con, params(hippocampal_replay_episodes=1), hippocampal(4))
    assert ("c1", "c2") not in links(con)  # its co-activation was consumed; E2 was not replayed again


def test_new_memories_form_links_in_later_cycles():
    con = two_episodes()
    cycles.apply_hippocampal_cycle(con, params(), hippocampal(2))
    add(con, [Mem("r4", "E3", minutes(190), encoding=1.0), Mem("r5", "E3", minutes(190.1), encoding=1.0)],
        [Pair("r4", "r5")])
    result = cycles.apply_hippocampal_cycle(con, params(), hippocampal(4))  # as_of 13:00 sees 12:10
    assert result.counts["new_memories"] == 2
    assert ("r4", "r5") in links(con)


def test_old_episodes_are_no_longer_replayed():
    con = two_episodes()
    cycles.apply_hippocampal_cycle(con, params(), hippocampal(2))
    # four days later E1's priority is 0.8 * 0.88 * exp(-97.9 h / 24 h) ~ 0.012, E2's ~ 0.002 (< 0.01)
    result = cycles.apply_hippocampal_cycle(con, params(), hippocampal(2 + 4 * 24))
    assert result.counts["replayed_episodes"] == 1
    assert consolidation_strengths(con)["c1"][1] == 1 and consolidation_strengths(con)["r1"][1] == 2


def test_a_cycle_does_not_see_memories_after_its_as_of():
    con = two_episodes()
    result = cycles.apply_hippocampal_cycle(con, params(), hippocampal(1))  # as_of 10:00: E2 is at 10:00, unseen
    assert result.counts["memories_seen"] == 3
    assert set(links(con)) == {("r1", "r2"), ("r1", "r3")}


def test_rerunning_a_cycle_key_changes_nothing():
    con = two_episodes()
    cycles.apply_hippocampal_cycle(con, params(), hippocampal(2))
    before = snapshot(con)
    again = cycles.apply_hippocampal_cycle(con, params(), hippocampal(2))
    assert not again.applied and again.status == "skipped: already applied"
    assert snapshot(con) == before
    # the same for every cycle type
    for kind, at in (("deep_sleep", 3), ("rem_sleep", 3), ("homeostasis", 3)):
        first = cycles.apply_cycle(con, params(), cycle(kind, at))
        after_first = snapshot(con)
        second = cycles.apply_cycle(con, params(), cycle(kind, at))
        assert first.applied and not second.applied
        assert snapshot(con) == after_first


def test_a_crash_mid_cycle_leaves_the_state_unchanged_and_the_key_unapplied():
    con = two_episodes()
    cycles.apply_hippocampal_cycle(con, params(), hippocampal(2))
    before = snapshot(con)
    # A bad threshold only reaches the transfer, the cycle's last update: replay, Hebbian updates, forgetting
    # and pruning have already run inside the transaction when it fails.
    broken = params(hippocampal_replay_episodes=1, consolidation_threshold="not-a-number")
    with pytest.raises(duckdb.Error):
        cycles.apply_hippocampal_cycle(con, broken, hippocampal(3))
    assert snapshot(con) == before
    assert con.execute("select count(*) from consolidation.cycle_ledger where cycle_key = ?",
                       [hippocampal(3).cycle_key]).fetchone()[0] == 0
    # the re-run applies the whole cycle exactly once
    assert cycles.apply_hippocampal_cycle(con, params(hippocampal_replay_episodes=1), hippocampal(3)).applied
    assert links(con)[("r1", "r2")] == pytest.approx(0.271 * 1.1)
    assert not cycles.apply_hippocampal_cycle(con, params(hippocampal_replay_episodes=1), hippocampal(3)).applied
    assert links(con)[("r1", "r2")] == pytest.approx(0.271 * 1.1)


def test_the_ledger_refuses_a_key_of_another_cycle_type():
    con = two_episodes()
    bogus = cycles.Cycle("hippocampal", "rem_sleep:2026-03-02T10:30", datetime(2026, 3, 2, 11))
    before = snapshot(con)
    with pytest.raises(duckdb.ConstraintException):
        cycles.run_in_ledger(con, bogus, {}, lambda c: {"noop": 0})
    assert snapshot(con) == before


# --- homeostasis -----------------------------------------------------------------------------------------


def with_links(strengths: list[float]) -> duckdb.DuckDBPyConnection:
    con = new_store()
    for i, s in enumerate(strengths):
        add_link(con, f"m{i:03d}", f"m{i + 1:03d}", s)
    return con


def mean_strength(con) -> float:
    return con.execute("select avg(strength) from consolidation.associations").fetchone()[0]


def test_homeostasis_brings_the_mean_to_the_target():
    con = with_links([0.4, 0.5, 0.6])  # mean 0.5
    result = cycles.apply_homeostasis_cycle(con, params(homeostasis_target_mean=0.3), cycle("homeostasis", 0))
    assert result.counts["scale_factor"] == pytest.approx(0.6)
    assert sorted(links(con).values()) == pytest.approx([0.24, 0.30, 0.36])
    assert mean_strength(con) == pytest.approx(0.3)


def test_homeostasis_reins_in_runaway_potentiation_within_its_weekly_cap():
    con = with_links([0.85, 0.9, 0.95])  # mean 0.9: runaway
    p = params(homeostasis_target_mean=0.3, homeostasis_max_scale=2.0)
    cycles.apply_homeostasis_cycle(con, p, cycles.parse_cycle_key("homeostasis:2026-W10"))
    assert mean_strength(con) == pytest.approx(0.45)  # at most halved in one week
    cycles.apply_homeostasis_cycle(con, p, cycles.parse_cycle_key("homeostasis:2026-W11"))
    assert mean_strength(con) == pytest.approx(0.3)


def test_homeostasis_prunes_what_scaling_pushes_below_the_threshold():
    con = with_links([0.015, 0.9, 0.9, 0.9, 0.9, 0.9])
    result = cycles.apply_homeostasis_cycle(con, params(homeostasis_target_mean=0.2), cycle("homeostasis", 0))
    assert result.counts["pruned"] == 1  # 0.015 * 0.5 < 0.01
    assert min(links(con).values()) >= 0.01


# --- REM and deep sleep ----------------------------------------------------------------------------------


def rem_scene() -> duckdb.DuckDBPyConnection:
    con = new_store()
    add(con, [
        Mem("a", "E1", minutes(0), topics=["dog"], embedding=unit(0)),
        Mem("b", "E1", minutes(1), embedding=unit(5)),
        Mem("e", "E1", minutes(2), embedding=unit(0, toward=2, cosine=0.6)),  # like a, same episode
        Mem("c", "E2", minutes(60), topics=["dog"], embedding=unit(6)),
        Mem("d", "E3", minutes(120), topics=["park", "dog"], embedding=unit(0, toward=1, cosine=0.6)),
        Mem("x", "E4", minutes(180), embedding=unit(3)),
        Mem("y", "E5", minutes(240), embedding=unit(3, toward=4, cosine=0.95)),  # near-duplicate of x
    ])
    add_link(con, "a", "b", 0.5)  # within E1
    add_link(con, "b", "c", 0.4)  # across E1 / E2
    return con


def test_rem_links_memories_of_different_episodes_only():
    con = rem_scene()
    before = links(con)
    result = cycles.apply_rem_cycle(con, params(), cycle("rem_sleep", 6))
    creative = {pair: row for pair, row in link_rows(con).items() if row[1] == "creative"}
    # a-d: cosine 0.6 in the band [0.45, 0.8] -> 0.8 * 0.6; a-c share neighbour b -> 0.8 * 0.5 * 0.4
    assert creative[("a", "d")][0] == pytest.approx(0.48)
    assert creative[("a", "c")][0] == pytest.approx(0.16)
    assert creative[("a", "d")][2] == "dog" and creative[("a", "c")][2] == "dog"  # named by the shared topic
    assert set(creative) == {("a", "d"), ("a", "c")}  # not a-e (same episode), not x-y (too similar)
    episode = dict(con.execute("select memory_id, episode_id from short_term_memory.stm_memories").fetchall())
    assert all(episode[a] != episode[b] for a, b in creative)
    assert result.counts["created"] == 2
    assert all(links(con)[pair] == strength for pair, strength in before.items())  # REM adds, never changes


def test_rem_creates_at_most_the_configured_number_of_links_strongest_first():
    con = rem_scene()
    cycles.apply_rem_cycle(con, params(rem_max_links_per_cycle=1), cycle("rem_sleep", 6))
    assert [pair for pair, row in link_rows(con).items() if row[1] == "creative"] == [("a", "d")]


def test_deep_sleep_links_near_duplicates_semantically():
    con = rem_scene()
    result = cycles.apply_deep_sleep_cycle(con, params(), cycle("deep_sleep", 6))
    assert link_rows(con)[("x", "y")][:2] == (pytest.approx(0.95), "semantic")
    assert result.counts["created_semantic"] == 1


def test_embeddings_kept_between_cycles_follow_every_change_of_the_enrichment(tmp_path):
    """The vectors deep sleep, REM and the LTM clusters share within a process are re-read where a row changed:
    a re-enriched memory, a new one, a removed enrichment, another preferred model, many replacements (the kept
    matrix is compacted); a second store is not mixed in. Each read gives the stored vectors, at unit length."""
    con = new_store(str(tmp_path / "store.duckdb"))
    add(con, [Mem("a", "E1", minutes(0), embedding=unit(0)), Mem("b", "E1", minutes(1), embedding=unit(1)),
              Mem("c", "E2", minutes(2), embedding=unit(2))])
    everyone = "select memory_id, episode_id from short_term_memory.stm_memories"

    def vectors(connection=con, model=None):
        ids, _, matrix = cycles.memory_embeddings(connection, model, everyone)
        return {memory_id: pytest.approx([float(x) for x in row], abs=1e-6) for memory_id, row in zip(ids, matrix)}

    assert vectors() == {"a": unit(0), "b": unit(1), "c": unit(2)}
    # re-enriched (new content, later enriched_at), a new memory (stored at length 2), b's enrichment gone
    con.execute("""update enriched.memory_enrichment set embedding = ?, content_hash = 'h2',
                   enriched_at = enriched_at + interval 1 minute where memory_id = 'a'""", [unit(0, 3, 0.6)])
    add(con, [Mem("d", "E2", minutes(3), embedding=[0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0])])
    con.execute("delete from enriched.memory_enrichment where memory_id = 'b'")
    expected = {"a": unit(0, 3, 0.6), "c": unit(2), "d": unit(3)}
    assert vectors() == expected
    # another model's row for c, preferred when named (the latest row otherwise)
    con.execute("""insert into enriched.memory_enrichment (memory_id, content_hash, provider, model, embedding,
                   embedding_dim, enriched_at) values ('c', 'h', 'test', 'other', ?, 8, '2000-01-01')""", [unit(5)])
    assert vectors(model="other") == {**expected, "c": unit(5)}
    assert vectors() == expected
    # many replacements: old rows pile up in the kept matrix until it is compacted
    for turn in range(8):
        memory_id, vector = "ad"[turn % 2], unit(turn % 8, (turn + 1) % 8, 0.8)
        con.execute("""update enriched.memory_enrichment set embedding = ?, enriched_at = enriched_at + interval 1 second
                       where memory_id = ?""", [vector, memory_id])
        expected[memory_id] = vector
        assert vectors() == expected
    # a second store with the same ids is never served from the first one's vectors, nor the other way
    other = new_store(str(tmp_path / "other.duckdb"))
    add(other, [Mem("a", "E1", minutes(0), embedding=unit(7))])
    assert vectors(other) == {"a": unit(7)}
    assert vectors() == expected


# --- cycle keys --------------------------------------------------------------------------------------------


def test_cycle_keys_name_event_time_buckets():
    moment = datetime(2026, 11, 25, 14, 41)
    assert cycles.cycle_for("hippocampal", moment).cycle_key == "hippocampal:2026-11-25T14"
    assert cycles.cycle_for("deep_sleep", moment).as_of == datetime(2026, 11, 25, 14)
    assert cycles.cycle_for("rem_sleep", moment).cycle_key == "rem_sleep:2026-11-25T13:30"
    assert cycles.cycle_for("homeostasis", moment).cycle_key == "homeostasis:2026-W48"
    assert cycles.parse_cycle_key("rem_sleep:2026-11-25T13:30").as_of == datetime(2026, 11, 25, 13, 30)
    with pytest.raises(ValueError, match="grid"):
        cycles.parse_cycle_key("rem_sleep:2026-11-25T14:00")
    with pytest.raises(ValueError, match="form"):
        cycles.parse_cycle_key("hippocampal:yesterday")


def test_the_default_key_is_the_tick_after_the_latest_memory():
    latest = datetime(2026, 11, 25, 13, 42)
    assert cycles.resolve_cycle("hippocampal", {}, latest).cycle_key == "hippocampal:2026-11-25T14"
    assert cycles.resolve_cycle("rem_sleep", {}, latest).cycle_key == "rem_sleep:2026-11-25T15:00"
    assert cycles.resolve_cycle("hippocampal", {}, None) is None


def test_keys_from_the_rhythm_tags():
    tags = {cycles.CYCLE_KEY_TAG: "hippocampal_consolidation_schedule@2026-11-25T14:00+0000"}
    assert cycles.resolve_cycle("hippocampal", tags, None).cycle_key == "hippocampal:2026-11-25T14"
    local = {cycles.CYCLE_KEY_TAG: "deep_sleep_schedule@2026-11-25T02:00+0100"}  # a Berlin 2 AM
    assert cycles.resolve_cycle("deep_sleep", local, None).cycle_key == "deep_sleep:2026-11-25T01"
    own = {cycles.CYCLE_KEY_TAG: "hippocampal:2026-11-25T14"}
    assert cycles.resolve_cycle("rem_sleep", own, None).cycle_key == "rem_sleep:2026-11-25T13:30"
    sensor = {cycles.CYCLE_KEY_TAG: "consolidation_backlog_sensor@8812"}
    triggered = cycles.resolve_cycle("hippocampal", sensor, datetime(2026, 11, 25, 13, 42))
    assert triggered.cycle_key == "hippocampal:consolidation_backlog_sensor@8812"
    assert triggered.as_of == datetime(2026, 11, 25, 14)
    assert cycles.resolve_cycle("homeostasis", {cycles.AS_OF_TAG: "2026-11-29T03:00:00Z"}, None).cycle_key == \
        "homeostasis:2026-W48"


# --- properties ----------------------------------------------------------------------------------------------

CYCLE_SEQUENCES = st.lists(st.sampled_from(cycles.CYCLE_TYPES), min_size=1, max_size=6)


@st.composite
def random_store(draw):
    """A few episodes of memories with random strengths, co-activations, embeddings and existing links."""
    n = draw(st.integers(min_value=2, max_value=10))
    episodes = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    memories = [
        Mem(f"m{i}", f"E{episodes[i]}", minutes(i * 7), encoding=draw(st.floats(0, 1)), salience=draw(st.floats(0, 1)),
            topics=draw(st.lists(st.sampled_from(["dog", "run", "work"]), max_size=2)),
            embedding=unit(draw(st.integers(0, 3)), toward=4, cosine=draw(st.floats(0.3, 1.0))))
        for i in range(n)
    ]
    pairs = [Pair(f"m{i}", f"m{j}", window=draw(st.integers(0, 2)), episode=1)
             for i in range(n) for j in range(i + 1, n) if draw(st.booleans())]
    existing = [(f"m{i}", f"m{j}", draw(st.floats(0.01, 1.0)))
                for i in range(n) for j in range(i + 1, n) if draw(st.integers(0, 3)) == 0]
    return memories, pairs, existing


def build(memories, pairs, existing) -> duckdb.DuckDBPyConnection:
    con = new_store()
    add(con, memories, pairs)
    for a, b, s in existing:
        add_link(con, a, b, s)
    return con


PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(store=random_store(), sequence=CYCLE_SEQUENCES, eta=st.floats(0, 1), forgetting=st.floats(0.3, 1.0),
       target=st.floats(0.05, 1.0), creativity=st.floats(0.1, 1.0))
def test_strengths_stay_in_unit_interval_and_above_the_threshold_after_any_cycles(
        store, sequence, eta, forgetting, target, creativity):
    con = build(*store)
    p = params(hebbian_learning_rate=eta, gradual_forgetting_rate=forgetting, homeostasis_target_mean=target,
               rem_creativity_factor=creativity)
    for hour, kind in enumerate(sequence, start=4):
        cycles.apply_cycle(con, p, cycle(kind, hour * 2))
        low, high, nan = con.execute(
            "select min(strength), max(strength), count(*) filter (where isnan(strength)) from consolidation.associations"
        ).fetchone()
        if low is not None:
            assert 0.01 <= low and high <= 1.0 and nan == 0
        c_low, c_high = con.execute(
            "select min(consolidation_strength), max(consolidation_strength) from consolidation.memory_consolidation"
        ).fetchone()
        if c_low is not None:
            assert 0.0 <= c_low and c_high <= 1.0


@PROPERTY_SETTINGS
@given(strengths=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=40), target=st.floats(0.05, 1.0),
       cap=st.floats(1.0, 5.0))
def test_homeostasis_preserves_the_ranking_of_links(strengths, target, cap):
    con = with_links(strengths)
    before = links(con)
    cycles.apply_homeostasis_cycle(con, params(homeostasis_target_mean=target, homeostasis_max_scale=cap),
                                   cycle("homeostasis", 0))
    after = links(con)
    survivors = sorted(after, key=lambda pair: before[pair])
    for weaker, stronger in zip(survivors, survivors[1:]):
        assert after[weaker] <= after[stronger] + 1e-12
    pruned = set(before) - set(after)
    assert all(before[p] <= before[q] for p in pruned for q in after)  # only the weakest are pruned


@PROPERTY_SETTINGS
@given(strengths=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=8), eta=st.floats(0.0, 1.0))
def test_hebbian_update_is_monotone(strengths, eta):
    """Reactivated links (one replayed episode, every pair co-activated) never weaken, and keep their order."""
    con = new_store()
    n = len(strengths) + 1
    add(con, [Mem(f"m{i}", "E1", minutes(i)) for i in range(n)],
        [Pair(f"m{i}", f"m{i + 1}") for i in range(n - 1)])
    for i, s in enumerate(strengths):
        add_link(con, f"m{i}", f"m{i + 1}", s)
    before = links(con)
    cycles.apply_hippocampal_cycle(con, params(hebbian_learning_rate=eta), hippocampal(3))
    after = links(con)
    assert set(after) == set(before)
    for pair in before:
        assert before[pair] - 1e-12 <= after[pair] <= 1.0
    ordered = sorted(before, key=before.get)
    assert all(after[p] <= after[q] + 1e-12 for p, q in zip(ordered, ordered[1:]))
    # multiplicative, not additive: every link below the ceiling gains the same factor (their ratios are kept),
    # at most the learning rate (e.g. eta 0.1: 0.2 -> 0.22 and 0.4 -> 0.44), none without learning
    gains = [after[pair] / before[pair] for pair in before if after[pair] < 1.0]
    if gains:
        assert max(gains) - min(gains) < 1e-9
        assert 1.0 - 1e-12 <= gains[0] <= 1.0 + eta + 1e-9
        if eta == 0:
            assert gains[0] == pytest.approx(1.0)
        elif eta >= 0.01:
            assert gains[0] > 1.0


@PROPERTY_SETTINGS
@given(strengths=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=12),
       rate=st.floats(0.3, 1.0), period=st.sampled_from([0.5, 1.0, 24.0]),
       times=st.lists(st.tuples(st.sampled_from(["hippocampal", "deep_sleep"]), st.integers(1, 240)),
                      min_size=1, max_size=12))
def test_forgetting_is_invariant_to_how_often_cycles_ran(strengths, rate, period, times):
    """Forgetting runs on event time (DESIGN principle 6): links that are not reactivated end with the same
    strengths, and the same links pruned, whether cycles ran at many random times (two of a kind in one hour,
    hippocampal and deep sleep in the same hour, long gaps) or once at the last of those times."""
    p = params(gradual_forgetting_rate=rate, forgetting_period_hours=period, hippocampal_replay_episodes=0,
               deep_sleep_replay_episodes=0)
    often, once = with_links(strengths), with_links(strengths)
    ordered = sorted(times, key=lambda item: item[1])
    for kind, hour in ordered:
        cycles.apply_cycle(often, p, cycle(kind, hour))
    last_kind, last_hour = ordered[-1]
    cycles.apply_cycle(once, p, cycle(last_kind, last_hour))
    ran_often, ran_once = links(often), links(once)
    assert set(ran_often) == set(ran_once)
    for pair, strength in ran_once.items():
        assert ran_often[pair] == pytest.approx(strength, rel=1e-9)


def test_forgetting_follows_event_time_not_the_number_of_cycles():
    con = with_links([0.8])  # last set at T0 = 09:00
    p = params(gradual_forgetting_rate=0.9, forgetting_period_hours=1, hippocampal_replay_episodes=0)
    cycles.apply_hippocampal_cycle(con, p, hippocampal(3))  # as_of 12:00: 3 hours later
    assert list(links(con).values()) == pytest.approx([0.8 * 0.9 ** 3])  # 0.5832
    cycles.apply_cycle(con, p, cycle("deep_sleep", 3))  # the same event time again: nothing more is forgotten
    assert list(links(con).values()) == pytest.approx([0.5832])



@pytest.mark.parametrize("rebuild_min", [0, 10**9])
def test_pruning_most_links_rebuilds_the_table_with_the_same_result(rebuild_min, monkeypatch):
    """Pruning more than a fifth of the links copies the survivors into a new table (deleting row by row from the
    primary-key index takes minutes at 1M links); the result, and the table's key, are those of deleting."""
    monkeypatch.setattr(cycles, "PRUNE_REBUILD_MIN", rebuild_min)
    con = with_links([0.012, 0.5, 0.011, 0.9, 0.0105, 0.02])  # last set at T0
    p = params(gradual_forgetting_rate=0.9, forgetting_period_hours=1, hippocampal_replay_episodes=0)
    result = cycles.apply_hippocampal_cycle(con, p, hippocampal(2))  # as_of T0 + 2 h: x 0.81
    # 0.012*0.81 = 0.00972, 0.011*0.81, 0.0105*0.81 < 0.01 are pruned; 0.02*0.81 = 0.0162 stays
    assert result.counts["pruned"] == 3
    assert sorted(links(con).values()) == pytest.approx([0.0162, 0.405, 0.729])
    with pytest.raises(duckdb.ConstraintException):  # still keyed by the pair
        add_link(con, "m001", "m002", 0.3)
