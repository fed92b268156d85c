"""Recall over a scripted store with real MiniLM embeddings: each signal finds what it should, fusion and
explanations say why, the weights come from the environment, and nothing breaks on a thin store."""

from __future__ import annotations

import pytest
from recall_store import BILLS, CORPUS, FERRY, KITTEN, TOMATO, ZOLTAN, publish, write_store

from codex_dreams.retrieval.config import SIGNALS, RecallWeights, load_weights
from codex_dreams.retrieval.engine import InvalidQuery, Recaller
from codex_dreams.retrieval.lexical import tokenize


def _stems(engine, text: str) -> set[str]:
    tokens = tokenize(text)
    cursor = engine.snapshot().cursor()
    rows = cursor.execute(
        "select stem(unnest($t::varchar[]), 'porter') as s except select sw from fts_main_memories.stopwords",
        {"t": tokens}).fetchall()
    return {r[0] for r in rows}


def test_a_paraphrase_with_no_shared_word_finds_its_memory_by_meaning(engine):
    query = "brought home a new feline companion"
    assert not _stems(engine, query) & _stems(engine, KITTEN.text), "the query must share no indexed word"
    response = engine.recall(query, 5, explain=True)
    top = response[0]
    assert top.memory_id == KITTEN.id
    assert top.signals["lexical"] == 0.0 and top.signals["dense"] > 0.4
    assert top.explanation["brought_by"] == ["dense"]
    assert top.explanation["dense"]["rank"] == 1
    # a memory sharing the words "new" and "home" is found lexically, but ranks below the meaning match
    home = next(r for r in response if r.memory_id == "home")
    assert home.signals["lexical"] > 0 and home.rank > top.rank


def test_an_exact_rare_name_finds_its_memory_lexically(engine):
    response = engine.recall("Kovacsevic", 3, explain=True)
    top = response[0]
    assert top.memory_id == ZOLTAN.id
    assert "lexical" in top.explanation["brought_by"]
    assert top.explanation["lexical"]["rank"] == 1 and top.explanation["lexical"]["bm25"] > 0
    assert all(r.signals["lexical"] == 0 for r in response[1:])  # nobody else has the name


def test_a_memory_linked_to_the_top_hit_is_recalled_through_the_association(engine, recall_store):
    query = "ferry tickets to Hydra"
    response = engine.recall(query, 5, explain=True)
    assert response[0].memory_id == FERRY.id
    bills = next(r for r in response if r.memory_id == BILLS.id)
    assert bills.explanation["brought_by"] == ["associative"] or "associative" in bills.explanation["brought_by"]
    assert bills.signals["associative"] > 0.3
    first = bills.explanation["links"][0]
    assert first["seed"] == FERRY.id
    assert first["path"] == [{"from": FERRY.id, "to": BILLS.id, "link_type": "hebbian", "strength": 0.9}]
    assert f"associative via {FERRY.id} (hebbian 0.90)" in bills.explanation["summary"]
    assert bills.rank > response[0].rank  # a linked memory ranks below the memory that brought it

    # without the associative signal the linked memory is not recalled: the link alone brought it
    plain = Recaller(recall_store, weights=RecallWeights(associative=0))
    assert BILLS.id not in plain.recall(query, 5).memory_ids
    plain.close()


def test_two_hops_of_spreading_activation_are_explained_as_a_path(engine):
    response = engine.recall("ferry tickets to Hydra", 5, explain=True)
    tomato = next(r for r in response if r.memory_id == TOMATO.id)
    path = tomato.explanation["links"][0]["path"]
    assert [(step["from"], step["to"], step["link_type"]) for step in path] == [
        (FERRY.id, BILLS.id, "hebbian"), (BILLS.id, TOMATO.id, "temporal")]
    bills = next(r for r in response if r.memory_id == BILLS.id)
    assert tomato.signals["associative"] < bills.signals["associative"]  # decays per hop


def test_scores_are_the_weighted_sum_of_signals_best_first(engine, recall_store):
    query = "music practice at home"
    response = engine.recall(query, 10, explain=True)
    assert len(response) == 10
    weights = engine.weights
    for result in response:
        assert all(0.0 <= result.signals[name] <= 1.0 for name in SIGNALS)
        assert 0.0 < result.score <= 1.0  # a weighted mean of signals in [0, 1]
        contributions = result.explanation["contributions"]
        # the explanation accounts for the whole score; a weighted signal contributes exactly when present
        assert result.score == pytest.approx(sum(contributions.values()), abs=1e-5)
        for name in SIGNALS:
            if getattr(weights, name) > 0:
                assert (contributions[name] > 0) == (result.signals[name] > 0), (result.memory_id, name)
            else:
                assert contributions[name] == 0
    scores = [r.score for r in response]
    assert scores == sorted(scores, reverse=True)
    assert [r.rank for r in response] == list(range(1, 11))
    assert len(set(response.memory_ids)) == 10
    # the fusion follows the weights: with one signal weighted, the ranking is that signal's and each score is
    # the signal itself (weight / total weight = 1)
    for alone in ("dense", "lexical"):
        only = {name: 1.0 if name == alone else 0.0 for name in SIGNALS}
        recaller = Recaller(recall_store, weights=load_weights(**only))
        try:
            ranked = recaller.recall(query, 10, explain=True)
        finally:
            recaller.close()
        values = [r.signals[alone] for r in ranked]
        assert values[0] > 0 and values == sorted(values, reverse=True)
        assert [r.score for r in ranked] == pytest.approx(values, abs=1e-6)


def test_results_carry_the_stored_memory(engine):
    top = engine.recall("Flight LH1234 to Zurich", 1)[0]
    assert top.memory_id == "flight"
    assert top.content.startswith("Flight LH1234 to Zurich")
    assert top.metadata == {"kind": "travel"}
    assert top.created_at.isoformat() == "2025-03-05T09:00:00"


def test_k_and_text_are_validated(engine):
    for bad_k in (0, -1, 1001, 2.5, True, "3"):
        with pytest.raises(InvalidQuery):
            engine.recall("anything", bad_k)
    for bad_text in ("", "   ", None, "x" * 2001, "a\x00b"):
        with pytest.raises(InvalidQuery):
            engine.recall(bad_text, 3)
    assert len(engine.recall("anything at all", 1000)) == len(CORPUS)  # k larger than the store


def test_weights_come_from_the_environment(monkeypatch, recall_store):
    from codex_dreams.settings import SettingsError

    monkeypatch.setenv("CODEX_RECALL_W_LEXICAL", "0")
    monkeypatch.setenv("CODEX_RECALL_W_DENSE", "2")
    weights = load_weights()
    assert (weights.dense, weights.lexical, weights.associative, weights.strength) == (2.0, 0.0, 0.25, 0.0)
    response = Recaller(recall_store).recall("Kovacsevic", 3, explain=True)
    assert all(r.explanation["contributions"]["lexical"] == 0 for r in response)

    monkeypatch.setenv("CODEX_RECALL_W_STRENGTH", "-1")
    with pytest.raises(SettingsError, match="CODEX_RECALL_W_STRENGTH"):
        load_weights()
    monkeypatch.setenv("CODEX_RECALL_W_STRENGTH", "lots")
    with pytest.raises(SettingsError, match="CODEX_RECALL_W_STRENGTH"):
        load_weights()
    for name in ("DENSE", "LEXICAL", "ASSOCIATIVE", "CONTEXT", "STRENGTH"):
        monkeypatch.setenv(f"CODEX_RECALL_W_{name}", "0")
    with pytest.raises(SettingsError, match="at least one recall weight must be positive"):
        load_weights()


def test_retrieval_strength_and_practice_raise_a_memory(settings, corpus_vectors):
    """Two equally relevant memories: the consolidated, often recalled one ranks first."""
    write_store(settings, CORPUS, corpus_vectors, [], ltm={"piano": 0.95, "guitar": 0.05},
                accesses={"piano": 6})
    info = publish(settings)
    assert info.manifest["strength"]["ltm_columns"] == ["retrieval_strength", "strength", "stability", "category",
                                                         "cluster_id"]
    engine = Recaller(settings, weights=RecallWeights(dense=0, lexical=0, associative=0, strength=1))
    response = engine.recall("music", 2)
    assert response.memory_ids[0] == "piano"
    assert response[0].signals["strength"] > response[1].signals["strength"]


def test_a_store_without_embeddings_or_links_still_answers_lexically(settings):
    write_store(settings, CORPUS, None, [])
    info = publish(settings)
    assert info.manifest["embedding"]["embedded"] == 0 and info.manifest["graph"]["links"] == 0
    response = Recaller(settings).recall("Kovacsevic conference", 3, explain=True)
    assert response[0].memory_id == ZOLTAN.id
    assert response[0].signals["dense"] == 0.0
    assert any("dense recall is off" in w for w in response.warnings)


def test_an_empty_store_answers_with_nothing(settings):
    from codex_dreams.store import open_store

    with open_store(settings):
        pass
    publish(settings)
    response = Recaller(settings).recall("anything", 5)
    assert response.results == [] and response.snapshot


def test_a_snapshot_from_another_embedding_model_turns_dense_off_with_a_warning(settings, corpus_vectors):
    write_store(settings, CORPUS, corpus_vectors, [])
    publish(settings)
    engine = Recaller(settings)
    engine._embedding_model = "some-other-model"  # as if EMBEDDING_MODEL had changed since the snapshot
    response = engine.recall("Kovacsevic", 2)
    assert response[0].memory_id == ZOLTAN.id
    assert response[0].signals["dense"] == 0.0
    assert any("some-other-model" in w for w in response.warnings)


def test_episode_context_lifts_a_neighbour_of_a_strong_match_in_its_own_episode_only(settings):
    """The turn after a strong match shares no word with the query, yet it is found through its episode; a
    memory just as close in time but in another episode gets no lift."""
    from recall_store import M

    memories = [
        M("ferry", "Booked the ferry to Hydra for Saturday morning.", 1.0),
        M("towel", "Packed sunscreen and the blue beach towel.", 1.0001),
        M("budget", "Reviewed the quarterly budget spreadsheet.", 1.0002),
        M("garden", "Watered the tomatoes in the garden.", 5.0),
    ]
    write_store(settings, memories, None, [], episodes={"ferry": "trip", "towel": "trip", "budget": "work",
                                                         "garden": "home"})
    publish(settings)
    engine = Recaller(settings, weights=load_weights(context=0.25))
    response = engine.recall("ferry to Hydra", 4, explain=True)
    by_id = {r.memory_id: r for r in response}
    assert response[0].memory_id == "ferry"
    towel = by_id["towel"]
    assert towel.signals["lexical"] == 0 and towel.signals["context"] > 0
    assert "context" in towel.explanation["brought_by"] and towel.explanation["context"]["from"] == "ferry"
    # "budget" follows "towel" in time too, but "towel" scored nothing itself, and "budget" is in another episode
    assert "budget" not in by_id or by_id["budget"].signals["context"] == 0
    assert towel.rank < by_id.get("budget", towel).rank or "budget" not in by_id

    off = Recaller(settings, weights=load_weights(context=0)).recall("ferry to Hydra", 4)
    assert all(r.signals["context"] == 0 for r in off)
    assert "towel" not in [r.memory_id for r in off if r.score > 0]



def test_a_creative_link_carries_no_recall_activation_unless_asked(recall_store):
    """REM links are remote associations made in sleep, not evidence: by default spreading ignores them (every
    leave-one-out fold on LoCoMo chose so); CODEX_RECALL_W_CREATIVE=1 lets them carry like any other link."""
    query = "mushroom risotto dinner with friends"
    default = Recaller(recall_store).recall(query, 10, explain=True)
    assert default[0].memory_id == "dinner"
    python = [r for r in default if r.memory_id == "python"]
    assert not python or python[0].signals["associative"] == 0

    linked = Recaller(recall_store, weights=load_weights(creative=1.0)).recall(query, 10, explain=True)
    python = next(r for r in linked if r.memory_id == "python")
    assert python.signals["associative"] > 0
    assert python.explanation["links"][0]["path"][0]["link_type"] == "creative"
