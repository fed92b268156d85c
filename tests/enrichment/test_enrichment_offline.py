"""The offline provider's heuristics on clear cases (no server, no model)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from codex_dreams.enrichment.models import Enrichment
from codex_dreams.enrichment.offline import OfflineEnricher, extract_egocentric, extract_entities_and_places

enricher = OfflineEnricher()


@pytest.mark.parametrize("text", [
    "I love this city, what a wonderful and happy weekend!",
    "Got the job offer today, I am thrilled and so grateful.",
])
def test_clearly_positive_text_has_positive_sentiment(text):
    assert enricher.enrich(text).sentiment > 0.5


@pytest.mark.parametrize("text", [
    "Terrible news, the surgery failed and I am devastated.",
    "I hate this awful commute, it ruined my whole day.",
])
def test_clearly_negative_text_has_negative_sentiment(text):
    assert enricher.enrich(text).sentiment < -0.5


def test_emotional_text_is_more_salient_than_a_neutral_one():
    emotional = enricher.enrich("I was terrified and cried all night after the accident!!")
    neutral = enricher.enrich("The meeting moved to room 4 on the second floor.")
    assert emotional.emotional_salience > neutral.emotional_salience + 0.3
    assert emotional.importance > neutral.importance


def test_exclamation_and_emotion_words_raise_salience():
    calm = enricher.enrich("We finished the kitchen renovation.")
    excited = enricher.enrich("We finished the kitchen renovation! So excited!!")
    assert excited.emotional_salience > calm.emotional_salience


def test_commitments_with_people_are_more_important_than_chatter():
    commitment = enricher.enrich("I promised Ana I would pay the rent before the deadline on Friday.")
    chatter = enricher.enrich("It was cloudy.")
    assert commitment.importance > chatter.importance + 0.2


def test_topics_are_non_empty_keywords():
    result = enricher.enrich("Spent the afternoon debugging the payment service with the platform team.")
    assert result.topics
    assert all(topic == topic.lower() for topic in result.topics)
    assert any("payment" in topic or "service" in topic or "debugging" in topic for topic in result.topics)


def test_entities_include_capitalised_names_but_not_sentence_openers():
    result = enricher.enrich("Yesterday I had lunch with Priya Raman. Then Marcus joined us.")
    assert "Priya Raman" in result.entities
    assert "Marcus" in result.entities
    assert "Yesterday" not in result.entities and "Then" not in result.entities


def test_honorific_marks_a_name_even_at_sentence_start():
    entities, _ = extract_entities_and_places("Dr. Chen said my knee is healing well.")
    assert entities == ["Dr. Chen"]


def test_places_include_a_city_after_in():
    result = enricher.enrich("Had dinner with Sarah in Lisbon last night.")
    assert "Lisbon" in result.locations
    assert "Sarah" not in result.locations


def test_to_introduces_a_place_only_after_motion():
    _, places = extract_entities_and_places("We flew to Berlin and then I talked to Sarah about it.")
    assert places == ["Berlin"]


def test_place_cue_words_and_common_place_nouns():
    _, places = extract_entities_and_places("Met Ana outside Union Station. Later I worked at home.")
    assert "Union Station" in places
    assert "home" in places


def test_egocentric_expressions_are_kept_separately():
    text = "The bakery is two blocks north of the station, to my left, and the shed is behind the house."
    result = enricher.enrich(text)
    assert result.egocentric_locations == ["two blocks north of the station", "to my left", "behind the house"]
    assert extract_egocentric("Nothing relative here.") == []


def test_goal_task_and_action_from_cue_phrases():
    result = enricher.enrich("I booked a table at Nopa. I need to buy flowers. My goal is to make Ana happy.")
    assert result.action == "booked a table at Nopa"
    assert result.task == "buy flowers"
    assert result.goal == "make Ana happy"


def test_working_on_is_a_task_and_states_are_not_actions():
    result = enricher.enrich("I'm so tired. I'm working on the migration plan.")
    assert result.task == "the migration plan"
    assert result.action == "working on the migration plan"


def test_no_cues_give_nulls():
    result = enricher.enrich("The sky was grey over the harbour.")
    assert (result.goal, result.task, result.action) == (None, None, None)


def test_same_text_same_enrichment():
    text = "Walked to the market in Porto with Grandma; she bought figs and was delighted!"
    assert enricher.enrich(text) == OfflineEnricher().enrich(text)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_any_text_gives_a_valid_bounded_enrichment(text):
    result = enricher.enrich(text)
    # Round-trips through the same validation an LLM answer must pass.
    assert Enrichment.model_validate(result.model_dump()) == result
    assert -1 <= result.sentiment <= 1
    assert 0 <= result.emotional_salience <= 1
    assert 0 <= result.importance <= 1
