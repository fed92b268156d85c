"""The offline provider: deterministic heuristics, no server, no torch.

Sentiment is VADER's compound score; topics are YAKE keywords; entities, places, egocentric locations and
goal/task/action come from documented surface cues (see docs/enrichment.md); importance and emotional
salience combine those signals with fixed weights. The same text always gives the same enrichment.
Embeddings are not made here (see `embeddings.py`).
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass

from codex_dreams.enrichment import lexicon
from codex_dreams.enrichment.models import Enrichment

# Part of the cache key for offline rows: bump when a heuristic changes so stored rows are re-enriched.
HEURISTICS_VERSION = "heuristics-v1"

_HONORIFIC_DOTS = "".join(rf"(?<!\b{word}\.)" for word in lexicon.DOTTED_HONORIFICS)
_SENTENCE_SPLIT = re.compile(rf"{_HONORIFIC_DOTS}(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[^\W_][\w'’&\-]*")
_POSSESSIVE = re.compile(r"['’]s$")
_EMOTION = re.compile(r"\b(?:" + "|".join(lexicon.EMOTION_STEMS) + r")\b", re.IGNORECASE)
_IMPORTANCE_CUE = re.compile(r"\b(?:" + "|".join(lexicon.IMPORTANCE_CUES) + r")\b", re.IGNORECASE)
_SHOUTED = re.compile(r"\b[A-Z]{2,}\b")

# ---- egocentric (speaker- or landmark-relative) expressions --------------------------------------------
_NUMBER = r"(?:\d+(?:\.\d+)?|a|an|one|two|three|four|five|six|seven|eight|nine|ten|a few|a couple of|several|half a)"
_UNIT = r"(?:blocks?|miles?|km|kilomet(?:er|re)s?|met(?:er|re)s?|m|feet|foot|ft|yards?|steps?|minutes?|mins?)"
_COMPASS = r"(?:north|south|east|west|north-?east|north-?west|south-?east|south-?west)"
_LANDMARK = r"(?:(?:the|my|our|your|his|her|their|a)\s+)?[\w'’]+(?:\s+[A-Z][\w'’]+)*"
_EGOCENTRIC_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        rf"\b{_NUMBER}\s+{_UNIT}\s+(?:{_COMPASS}|away|ahead|behind|down|up|further|past)"
        rf"(?:\s+(?:of|from)\s+{_LANDMARK})?",
        r"\b(?:to|on)\s+(?:my|your|our|his|her|their|the)\s+(?:left|right)(?:[- ]hand side)?",
        r"\b(?:in front of|behind|beside|next to|across from|opposite|ahead of|left of|right of|"
        r"on top of|underneath|beneath|under|above|below)\s+(?:me|us|him|her|them|"
        r"(?:the|my|our|your|his|her|their|a)\s+[\w'’]+)",
        rf"\b{_COMPASS}\s+of\s+{_LANDMARK}",
        r"\b(?:around the corner|down the (?:street|road|hall|hallway|block|stairs)|"
        r"up the (?:street|road|hill|stairs)|across the (?:street|road|room|hall)|upstairs|downstairs|"
        r"straight ahead|nearby|next door)\b",
    )
]

# ---- goal / task cue phrases -----------------------------------------------------------------------------
_PHRASE = r"(?P<phrase>[^.!?;\n]{2,120}?)(?=[.!?;,\n]|\s+(?:and then|but|because|so that|while|when)\s|$)"
_GOAL_CUES = re.compile(
    r"\b(?:(?:my|our|the|a)\s+(?:main\s+|big\s+|long-term\s+)?goal\s+(?:is|was|for[^.!?;,]*?is)\s+(?:to\s+)?|"
    r"goal\s*:\s*|(?:plan|plans|planned|planning)\s+to\s+|(?:want|wants|wanted)\s+to\s+|"
    r"(?:hope|hopes|hoping)\s+to\s+|(?:aim|aims|aiming)\s+to\s+|(?:intend|intends|intending)\s+to\s+|"
    r"would\s+(?:really\s+)?like\s+to\s+|(?:dream|dreaming)\s+of\s+|(?:trying|try|tries)\s+to\s+)"
    + _PHRASE,
    re.IGNORECASE,
)
_TASK_CUES = re.compile(
    r"\b(?:(?:need|needs|needed)\s+to\s+|(?:have|has|had)\s+to\s+|must\s+|(?:working|work|works)\s+on\s+|"
    r"remember\s+to\s+|don'?t\s+forget\s+to\s+|should\s+|(?:todo|to-do)\s*:\s*|(?:going\s+to|gonna)\s+|"
    r"deadline\s+(?:for|is)\s+|task\s*(?:is|:)\s*(?:to\s+)?)" + _PHRASE,
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(r"\b(?:I|we|We)(?P<contraction>['’](?:m|re|ve|ll|d))?\s+")
_COPULAS = frozenset({"am", "was", "were", "are"})
_HAVE = frozenset({"have", "had", "has"})
_PARTICIPLE_ENDINGS = ("ed", "en", "ne", "wn", "ught", "ept", "ent", "ilt", "ound", "one", "ung", "ade", "aid")


def _auxiliary_follows(word: str) -> bool:
    word = word.lower().strip(".,!?;")
    return (word in lexicon.VERB_PREFIXES or word == "been" or word in lexicon.LEADING_PAST_VERBS
            or word.endswith(_PARTICIPLE_ENDINGS))
_CLAUSE_BREAK = re.compile(r"\s+(?:and|but|because|so|while|when|then|after|before)\s+|[.!?;,\n]")
MAX_PHRASE_WORDS = 8


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int


def split_sentences(text: str) -> list[str]:
    return [sentence.strip() for sentence in _SENTENCE_SPLIT.split(text) if sentence and sentence.strip()]


def _is_capitalised(word: str) -> bool:
    return word[:1].isupper() and word not in lexicon.NON_ENTITY_WORDS


_DANGLING = frozenset({"the", "a", "an", "at", "to", "of", "in", "on", "for", "with", "and", "or", "my", "our", "by"})


def _clip_words(phrase: str, limit: int = MAX_PHRASE_WORDS) -> str:
    words = phrase.split()[:limit]
    # A phrase cut at the word limit should not end on "at the".
    while len(words) > 1 and words[-1].lower() in _DANGLING:
        words.pop()
    return " ".join(words).strip(" ,'\"“”")


@dataclass(frozen=True)
class _Span:
    text: str
    previous_words: tuple[str, ...]  # up to five lowercase words before the span, nearest last
    last_word: str


def _capitalised_spans(sentence: str, corroborated: set[str]) -> list[_Span]:
    """Runs of capitalised words (a name connector such as "of" may join two), with the words before them.

    At the start of a sentence capitalisation proves nothing, so a sentence-initial word is kept only if it is
    an honorific, or appears capitalised mid-sentence elsewhere in the text (`corroborated`), or opens a
    multi-word span and is neither a common sentence opener nor a past-tense verb.
    """
    tokens = [_Token(m.group(), m.start(), m.end()) for m in _WORD.finditer(sentence)]
    spans: list[_Span] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not _is_capitalised(token.text):
            index += 1
            continue
        run = [token]
        cursor = index + 1
        while cursor < len(tokens):
            gap = sentence[run[-1].end:tokens[cursor].start]
            honorific_dot = gap.strip() == "." and run[-1].text in lexicon.DOTTED_HONORIFICS
            if gap.strip() and not honorific_dot:
                break
            candidate = tokens[cursor]
            if _is_capitalised(candidate.text):
                run.append(candidate)
                cursor += 1
            elif (candidate.text in lexicon.NAME_CONNECTORS and cursor + 1 < len(tokens)
                  and _is_capitalised(tokens[cursor + 1].text)
                  and not sentence[candidate.end:tokens[cursor + 1].start].strip()):
                run.extend([candidate, tokens[cursor + 1]])
                cursor += 2
            else:
                break
        words = [t.text for t in run]
        if index == 0 and words[0] not in lexicon.HONORIFICS and words[0] not in corroborated:
            first = words[0].lower()
            opener = first in lexicon.SENTENCE_STARTERS or first in lexicon.LEADING_PAST_VERBS
            if len(words) == 1 or opener or first.endswith(("ed", "ing")):
                run = run[1:]
                while run and run[0].text in lexicon.NAME_CONNECTORS:
                    run = run[1:]
        if run:
            start_token = tokens.index(run[0])
            previous = tuple(t.text.lower() for t in tokens[max(0, start_token - 5):start_token])
            name = sentence[run[0].start:run[-1].end]
            name = _POSSESSIVE.sub("", name)
            spans.append(_Span(name, previous, _POSSESSIVE.sub("", run[-1].text)))
        index = cursor
    return spans


def _corroborated_words(sentences: list[str]) -> set[str]:
    # Capitalised words seen away from a sentence start: evidence that the word is a name.
    words: set[str] = set()
    for sentence in sentences:
        for match in list(_WORD.finditer(sentence))[1:]:
            word = _POSSESSIVE.sub("", match.group())
            if _is_capitalised(word):
                words.add(word)
    return words


def _is_place(span: _Span) -> bool:
    if span.last_word in lexicon.PLACE_CUE_WORDS:
        return True
    if not span.previous_words:
        return False
    preposition = span.previous_words[-1]
    if preposition in lexicon.PLACE_PREPOSITIONS:
        return span.text.split()[0] not in lexicon.HONORIFICS
    if preposition in lexicon.DIRECTIONAL_PREPOSITIONS:
        return any(word in lexicon.MOTION_WORDS for word in span.previous_words[:-1])
    return False


_PLACE_NOUN = re.compile(
    r"\b(?P<prep>in|at|to|from|near|into|inside|outside)\s+(?:(?P<det>the|my|our|your|his|her|their|a|an|this|that)\s+)?"
    r"(?P<noun>" + "|".join(sorted((re.escape(n) for n in lexicon.PLACE_NOUNS), key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)


def extract_entities_and_places(text: str) -> tuple[list[str], list[str]]:
    """(entities, places). Entities are all capitalised spans, places included; places are the spans that
    follow a spatial preposition or end in a place cue word, plus common place nouns after a preposition."""
    sentences = split_sentences(text)
    corroborated = _corroborated_words(sentences)
    entities: list[str] = []
    places: list[str] = []
    for sentence in sentences:
        for span in _capitalised_spans(sentence, corroborated):
            entities.append(span.text)
            if _is_place(span):
                places.append(span.text)
    for match in _PLACE_NOUN.finditer(text):
        # "to work" is mostly an infinitive ("need to work"), so "to" needs a determiner before the noun.
        if match.group("prep").lower() == "to" and not match.group("det"):
            continue
        places.append(match.group("noun").lower())
    return _unique(entities), _unique(places)


def extract_egocentric(text: str) -> list[str]:
    """Relative spatial expressions, longest first when they overlap, lowercased, in text order."""
    found: list[tuple[int, int]] = []
    for pattern in _EGOCENTRIC_PATTERNS:
        for match in pattern.finditer(text):
            found.append((match.start(), match.end()))
    chosen: list[tuple[int, int]] = []
    for start, end in sorted(found, key=lambda span: (-(span[1] - span[0]), span[0])):
        if all(end <= s or start >= e for s, e in chosen):
            chosen.append((start, end))
    return _unique(" ".join(text[s:e].lower().split()) for s, e in sorted(chosen))


def _cue_phrase(pattern: re.Pattern, text: str) -> str | None:
    match = pattern.search(text)
    if not match:
        return None
    phrase = _clip_words(match.group("phrase"))
    return phrase or None


def extract_goal_task_action(text: str) -> tuple[str | None, str | None, str | None]:
    """(goal, task, action) from cue phrases; each is None when the text has no cue for it."""
    goal = _cue_phrase(_GOAL_CUES, text)
    task = _cue_phrase(_TASK_CUES, text)
    return goal, task, _main_action(text)


def _main_action(text: str) -> str | None:
    # The first first-person verb phrase that is an action (not an intention, obligation or state).
    for match in _FIRST_PERSON.finditer(text):
        words = text[match.end():].split()
        # After "I'm" / "I was" only a progressive verb is an action ("I'm cooking"; not "I'm scared").
        progressive = (match.group("contraction") or "")[1:] in ("m", "re")
        while words and words[0].lower().strip(",") in lexicon.VERB_PREFIXES:
            head = words[0].lower().strip(",")
            # "had" is an auxiliary in "I had finished" but the action in "I had lunch with Ana".
            if head in _HAVE and not (len(words) > 1 and _auxiliary_follows(words[1])):
                break
            progressive = progressive or head in _COPULAS
            words = words[1:]
        if not words:
            continue
        verb = words[0].lower().strip(".,!?;")
        if not verb.isalpha() or verb in lexicon.NON_ACTION_VERBS:
            continue
        if progressive and not verb.endswith("ing"):
            continue
        phrase = _CLAUSE_BREAK.split(" ".join(words), maxsplit=1)[0]
        return _clip_words(phrase) or None
    # Notes often drop the subject: "Met Ana for lunch." counts when it opens with a past-tense verb.
    for sentence in split_sentences(text):
        words = sentence.split()
        if words and words[0].lower().strip(".,!?;") in lexicon.LEADING_PAST_VERBS:
            phrase = _CLAUSE_BREAK.split(sentence, maxsplit=1)[0]
            return _clip_words(phrase[0].lower() + phrase[1:]) or None
    return None


def _unique(values) -> list[str]:
    seen: set[str] = set()
    result = []
    for value in values:
        key = value.casefold()
        if value and key not in seen:
            seen.add(key)
            result.append(value)
    return result


@dataclass(frozen=True)
class SalienceSignals:
    sentiment: float  # VADER compound, [-1, 1]
    emotion_words: int
    exclamations: int
    shouted_words: int
    entities: int
    words: int
    has_intent: bool  # a goal or task cue was found
    importance_cues: int


def emotional_salience(s: SalienceSignals) -> float:
    """0.55·|sentiment| + 0.25·min(1, emotion words/2) + 0.12·min(1, '!'/2) + 0.08·min(1, SHOUTED words/2)."""
    value = (0.55 * abs(s.sentiment) + 0.25 * min(1.0, s.emotion_words / 2)
             + 0.12 * min(1.0, s.exclamations / 2) + 0.08 * min(1.0, s.shouted_words / 2))
    return round(min(1.0, max(0.0, value)), 4)


def importance(s: SalienceSignals, salience: float) -> float:
    """0.10 + 0.35·salience + 0.15·min(1, entities/3) + 0.15·length + 0.15·intent + 0.10·min(1, cue words),
    where length = min(1, ln(1+words)/ln(61)) and intent is 1 when a goal or task cue was found."""
    length = min(1.0, math.log1p(s.words) / math.log1p(60))
    value = (0.10 + 0.35 * salience + 0.15 * min(1.0, s.entities / 3) + 0.15 * length
             + 0.15 * (1.0 if s.has_intent else 0.0) + 0.10 * min(1.0, float(s.importance_cues)))
    return round(min(1.0, max(0.0, value)), 4)


class OfflineEnricher:
    """Thread-safe: VADER and YAKE objects are kept per thread (fallbacks run in a worker pool)."""

    name = "offline"

    def __init__(self, *, max_topics: int = 5) -> None:
        self.max_topics = max_topics
        self._local = threading.local()

    def _analyzers(self):
        if not hasattr(self._local, "vader"):
            import yake
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self._local.vader = SentimentIntensityAnalyzer()
            self._local.yake = yake.KeywordExtractor(lan="en", n=2, top=self.max_topics + 5, dedup_lim=0.9)
        return self._local.vader, self._local.yake

    def topics(self, text: str, entities: list[str]) -> list[str]:
        _, extractor = self._analyzers()
        keywords = [" ".join(k.lower().split()) for k, _score in extractor.extract_keywords(text)]
        name_words = {word.casefold() for entity in entities for word in entity.split()}
        chosen: list[str] = []
        for keyword in keywords:
            # A topic says what the memory is about: names are already entities (so a keyword made of or
            # touching a name word is skipped), and a word inside a chosen phrase adds nothing.
            if any(word in name_words for word in keyword.split()) or any(keyword in c.split() for c in chosen):
                continue
            chosen.append(keyword)
        if not chosen:
            chosen = keywords
        return chosen[: self.max_topics]

    def enrich(self, text: str) -> Enrichment:
        vader, _ = self._analyzers()
        sentiment = round(float(vader.polarity_scores(text)["compound"]), 4)
        entities, places = extract_entities_and_places(text)
        goal, task, action = extract_goal_task_action(text)
        signals = SalienceSignals(
            sentiment=sentiment,
            emotion_words=len(_EMOTION.findall(text)),
            exclamations=text.count("!"),
            shouted_words=sum(1 for w in _SHOUTED.findall(text) if w not in ("I", "OK")),
            entities=len(entities),
            words=len(text.split()),
            has_intent=goal is not None or task is not None,
            importance_cues=len(_IMPORTANCE_CUE.findall(text)),
        )
        salience = emotional_salience(signals)
        return Enrichment(
            entities=entities,
            topics=self.topics(text, entities),
            sentiment=sentiment,
            emotional_salience=salience,
            importance=importance(signals, salience),
            goal=goal,
            task=task,
            action=action,
            locations=places,
            egocentric_locations=extract_egocentric(text),
        )
