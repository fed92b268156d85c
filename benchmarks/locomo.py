"""LoCoMo evidence-recall benchmark: the whole pipeline per conversation, against BM25 and dense baselines.

    .venv/bin/python benchmarks/locomo.py [--data PATH] [--k 5,10,20] [--json] [--folds loo] [--ablate]
                                          [--conversations conv-26,conv-30] [--distractors N]

Prints one JSON object on stdout (`--json`: nothing else; without it a readable table goes to stderr too);
progress goes to stderr. The data file is read in place, never copied into the repository.

Per conversation (sample) of the file, in a fresh temporary CODEX_HOME (rhythms off, offline provider):
1. the conversation alone is written to a temporary LoCoMo file and imported as a user does
   (`import_path(..., fmt="locomo")`), then the full cycle a user runs (`full_cycle_job`) must succeed;
2. every question of categories 1-4 is asked through the batch recall API (`Recaller.recall_many`, logging off),
   and the returned memories are mapped back to their dialogue turn (`dia_id` in the memory metadata);
3. the same questions are ranked over the same turns by two baselines: BM25 (`bm25s`, lowercase tokens, NLTK's English
   stop words, no stemming) and dense cosine with the project's own embedding model (`embed_texts`), both over
   "speaker: text" plus the image caption when the turn shares one.

Metrics per category (1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop) and overall, for each k:
recall_all@k (all of a question's evidence turns are in the top k), recall_any@k (at least one) and
evidence_fraction@k (mean share of the evidence turns in the top k). Evidence ids are parsed defensively
(`parse_evidence`); malformed, unknown and normalised ids and questions left without evidence are counted.

Options:
- `--folds loo`: each recall configuration of RECALL_GRID (keyword overrides for `load_weights`) is evaluated on
  every conversation's store (built once; only recall differs); for each conversation the configuration with the
  best overall recall_all@10 on the OTHER conversations is scored on it. The best configuration over all
  conversations is reported separately, labelled in-sample (not a result).
- `--ablate`: each mechanism of ABLATIONS switched off in turn; recall-time switches reuse the store, pipeline
  switches rebuild it with `CODEX_PARAMS` (a JSON object of dbt var overrides). Mechanisms without a switch
  (NOT_SWITCHABLE_YET, and switches naming a weight or var this checkout lacks) are listed, never run.
- `--distractors N`: N made-up everyday notes (seeded, from DISTRACTOR_TEMPLATES, never from LoCoMo) spread over
  each conversation's time span, imported as JSONL; active links and recall_all@10 with forgetting on and off.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "locomo" / "locomo_dev.json"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit  # noqa: E402

# ---- what is evaluated (extend here) ---------------------------------------------------------------------

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}  # 5 (adversarial) is left out
DEFAULT_KS = (5, 10, 20)
SELECTION_K = 10  # LOO selection, ablation and distractor tables use recall_all@10
BM25_STOPWORDS = "en_plus"  # bm25s' name for NLTK's English stop words

# Recall configurations for --folds loo: each entry is keyword overrides for
# `codex_dreams.retrieval.config.load_weights(**overrides)` (any RecallWeights field; partial entries keep the
# other fields at their environment/default values). The first entry must be {}: the defaults, i.e. "codex".
RECALL_GRID: list[dict] = [
    {},
    # the mechanisms' weights around the defaults; dense:lexical stays at the defaults' ratio, below which a
    # paraphrase loses to an incidental one-word match (tests/recall/test_recall_engine.py)
    {"context": 0.0},
    {"context": 0.15},
    {"context": 0.25},
    {"context": 0.5},
    {"associative": 0.0},
    {"associative": 0.4},
    {"strength": 0.05},
    {"strength": 0.1},
    {"creative": 0.3},
    {"creative": 1.0},
]

# Forgetting off: links not reactivated keep their strength (hippocampal and cortical rates alike).
FORGETTING_OFF = {"gradual_forgetting_rate": 1.0, "cortical_forgetting_rate": 1.0}

# --ablate: mechanism -> how to switch it off.
#   {"env": {...}}: recall-time switches; CODEX_RECALL_W_<FIELD> variables become `load_weights` overrides
#                   (other variables are set in the environment while recalling); the store is reused.
#   {"params": {...}}: pipeline mechanisms; dbt var overrides (names from dbt_project/dbt_project.yml `vars:`)
#                   passed as the JSON object in CODEX_PARAMS while the store is rebuilt from scratch.
# A switch naming a recall weight or a dbt var this checkout does not have is reported as not switchable (with
# the reason) instead of being run.
ABLATIONS: dict[str, dict] = {
    "associative": {"env": {"CODEX_RECALL_W_ASSOCIATIVE": "0"}},
    "episode_context": {"env": {"CODEX_RECALL_W_CONTEXT": "0"}},
    "strength": {"env": {"CODEX_RECALL_W_STRENGTH": "0"}},
    "decay": {"params": {"stm_decay_tau_hours": 1e9}},  # s(t) = s0 * exp(-t / tau): tau -> infinity, no decay
    "replay": {"params": {"hippocampal_replay_episodes": 0, "deep_sleep_replay_episodes": 0}},
    "hebbian": {"params": {"hebbian_learning_rate": 0.0}},  # no LTP: new co-activation links start at 0
    "rem": {"params": {"rem_max_links_per_cycle": 0}},
    "homeostasis": {"params": {"homeostasis_max_scale": 1.0}},  # scaling factor clamped to [1, 1]
    "forgetting": {"params": FORGETTING_OFF},
}
NOT_SWITCHABLE_YET = {
    "concepts": "no switch yet: long-term concepts are always built (recall does not read them directly)",
    "time_cues": "no switch yet: recall has no time-cue signal to switch off",
}

# --distractors: everyday notes, filled from the slot lists with a seeded RNG (never from LoCoMo).
DISTRACTOR_TEMPLATES = [
    "Bought {food} and {food} at the {shop} on the way home.",
    "Paid the {bill} bill online; it was a little higher than last month.",
    "Reminder: {chore} before {day}.",
    "Watered the {plant} and moved it closer to the window.",
    "The {appliance} is making a strange noise again; call the repair service on {day}.",
    "Took the number {number} bus into town; it was {minutes} minutes late.",
    "Recipe idea for {day}: {food} with {food} and a squeeze of lemon.",
    "Parking permit renewal is due on {day}; the form is in the top drawer.",
    "Changed the password of the {account} account and wrote the hint down.",
    "Walked {steps} steps today according to the phone.",
    "The library book about {topic} is due back on {day}.",
    "Cleaned the {room} and took the recycling out.",
    "Meeting with the landlord moved to {day} at {hour}.",
    "Weather note: {weather} all afternoon, glad I took the umbrella.",
    "Ordered new {thing} online, delivery expected on {day}.",
    "Next dental check-up in {number} months; remember to floss.",
    "Replaced the battery of the {device}; it holds a charge again.",
    "Picked up the dry cleaning and bought stamps at the post office.",
    "Defrosted the freezer and threw out some old {food}.",
    "Set the alarm for {hour} to catch the early train on {day}.",
    "Tried a new route to the {shop}; it saves about {minutes} minutes.",
    "Noted the meter reading for the {bill}: {number}{number}{number}{number}.",
]
DISTRACTOR_SLOTS = {
    "food": ["rice", "lentils", "spinach", "oat milk", "apples", "rye bread", "tomatoes", "yoghurt", "pasta",
             "carrots", "cheddar", "eggs", "chickpeas", "frozen peas", "onions"],
    "shop": ["supermarket", "corner shop", "market", "pharmacy", "hardware store", "bakery"],
    "bill": ["electricity", "water", "gas", "internet", "phone", "council tax"],
    "chore": ["defrost the freezer", "descale the kettle", "renew the car tax", "return the parcel",
              "book the boiler service", "sort the receipts", "clean the gutters", "change the bed sheets"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "plant": ["basil", "fern", "cactus", "orchid", "rubber plant", "mint pot"],
    "appliance": ["washing machine", "fridge", "dishwasher", "boiler", "microwave", "extractor fan"],
    "number": [str(n) for n in range(1, 10)],
    "minutes": [str(n) for n in (5, 7, 10, 12, 15, 20)],
    "account": ["bank", "email", "streaming", "utility", "insurance"],
    "steps": [str(n) for n in (4210, 6532, 8004, 9876, 11230, 12501)],
    "topic": ["bridges", "bees", "tax law", "knots", "the history of salt", "clouds"],
    "room": ["kitchen", "bathroom", "hallway", "garage", "spare room"],
    "hour": ["6:15", "6:40", "7:05", "7:30", "8:10"],
    "weather": ["drizzle", "heavy rain", "strong wind", "fog", "hail"],
    "thing": ["light bulbs", "printer ink", "a door mat", "batteries", "coat hangers", "a kettle descaler"],
    "device": ["smoke alarm", "bathroom scale", "car key", "wall clock", "remote control"],
}


# ---- data: conversations, turns, questions, evidence -------------------------------------------------------

class BenchmarkInputError(ValueError):
    """Bad input to the benchmark (a data file, a conversation id, a configuration); one sentence."""


_EVIDENCE_ID = re.compile(r"D(\d+):(\d+)")
_EVIDENCE_SPLIT = re.compile(r"[;,\s]+")


@dataclass(frozen=True)
class ParsedEvidence:
    valid: tuple[str, ...]       # canonical dia_ids of existing turns, deduplicated, in order
    malformed: tuple[str, ...]   # not D<int>:<int> (or only after normalising to a turn that does not exist)
    unknown: tuple[str, ...]     # well-formed, but the conversation has no such turn
    normalised: tuple[str, ...]  # e.g. "D30:05" read as the existing turn "D30:5"


def parse_evidence(raw, turn_ids: Iterable[str]) -> ParsedEvidence:
    """Split evidence entries on ';', ',' and whitespace; keep `D<int>:<int>` ids of existing turns.

    An id with leading zeros ("D30:05") is normalised ("D30:5") only if that turn exists, else it is malformed.
    """
    turn_ids = set(turn_ids)
    if raw is None:
        items = []
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        items = [raw]
    valid, malformed, unknown, normalised = [], [], [], []
    for item in items:
        for token in _EVIDENCE_SPLIT.split(str(item)):
            if not token:
                continue
            match = _EVIDENCE_ID.fullmatch(token)
            if match is None:
                malformed.append(token)
                continue
            canonical = f"D{int(match[1])}:{int(match[2])}"
            if canonical != token:
                if canonical in turn_ids:
                    normalised.append(token)
                    valid.append(canonical)
                else:
                    malformed.append(token)
            elif token in turn_ids:
                valid.append(token)
            else:
                unknown.append(token)
    return ParsedEvidence(tuple(dict.fromkeys(valid)), tuple(malformed), tuple(unknown), tuple(normalised))


@dataclass(frozen=True)
class Turn:
    dia_id: str
    speaker: str
    text: str
    caption: str | None

    @property
    def document(self) -> str:
        """The baselines' text of a turn: "speaker: text" + " " + the image caption when there is one."""
        doc = f"{self.speaker}: {self.text}"
        return f"{doc} {self.caption}" if self.caption else doc


@dataclass(frozen=True)
class Question:
    sample_id: str
    index: int  # position in the sample's qa list
    text: str
    category: int
    evidence: tuple[str, ...]


@dataclass
class Skipped:
    """What the evidence parsing dropped (added up over conversations)."""

    category_5: int = 0
    other_category: int = 0
    empty_question: int = 0
    malformed_evidence_ids: int = 0
    unknown_evidence_ids: int = 0
    normalised_evidence_ids: int = 0
    questions_with_dropped_evidence_ids: int = 0
    questions_without_valid_evidence: int = 0
    examples: list = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "examples"}
        out["examples"] = self.examples[:20]
        return out


def conversation_turns(sample: dict) -> list[Turn]:
    """The dialogue turns of one sample, in session order (only `session_<n>` keys that hold lists)."""
    conversation = sample.get("conversation") or {}
    sessions = sorted((key for key, value in conversation.items()
                       if re.fullmatch(r"session_\d+", key) and isinstance(value, list)),
                      key=lambda key: int(key.split("_")[1]))
    turns = []
    for key in sessions:
        for turn in conversation[key]:
            if isinstance(turn, dict) and turn.get("dia_id"):
                turns.append(Turn(str(turn["dia_id"]), str(turn.get("speaker") or ""), str(turn.get("text") or ""),
                                  turn.get("blip_caption") or None))
    return turns


def conversation_questions(sample: dict, turn_ids: Iterable[str], skipped: Skipped) -> list[Question]:
    """Questions of categories 1-4 with at least one valid evidence turn; everything dropped is counted."""
    sample_id = str(sample.get("sample_id"))
    turn_ids = set(turn_ids)
    out = []
    for index, qa in enumerate(sample.get("qa") or []):
        try:
            category = int(qa.get("category"))
        except (TypeError, ValueError):
            category = None
        if category == 5:
            skipped.category_5 += 1
            continue
        if category not in CATEGORIES:
            skipped.other_category += 1
            continue
        text = str(qa.get("question") or "").strip()
        if not text:
            skipped.empty_question += 1
            continue
        parsed = parse_evidence(qa.get("evidence"), turn_ids)
        skipped.malformed_evidence_ids += len(parsed.malformed)
        skipped.unknown_evidence_ids += len(parsed.unknown)
        skipped.normalised_evidence_ids += len(parsed.normalised)
        if parsed.malformed or parsed.unknown:
            skipped.questions_with_dropped_evidence_ids += 1
            skipped.examples.append({"sample_id": sample_id, "qa_index": index, "evidence": qa.get("evidence"),
                                     "malformed": list(parsed.malformed), "unknown": list(parsed.unknown)})
        if not parsed.valid:
            skipped.questions_without_valid_evidence += 1
            continue
        out.append(Question(sample_id, index, text, category, parsed.valid))
    return out


# ---- scoring (pure) ----------------------------------------------------------------------------------------

def score_question(ranking: Sequence, evidence: Iterable[str], k: int) -> tuple[bool, bool, float]:
    """(all evidence turns in the top k, at least one, share found) for one ranked list of dia_ids."""
    wanted = set(evidence)
    if not wanted:
        raise ValueError("a question without evidence cannot be scored")
    found = len(wanted & set(ranking[:k]))
    return found == len(wanted), found > 0, found / len(wanted)


def _metrics(rows: list[tuple[Sequence, Sequence[str]]], ks: Sequence[int]) -> dict:
    out: dict = {"questions": len(rows)}
    for k in ks:
        if not rows:
            out.update({f"recall_all@{k}": None, f"recall_any@{k}": None, f"evidence_fraction@{k}": None})
            continue
        scores = [score_question(ranking, evidence, k) for ranking, evidence in rows]
        out[f"recall_all@{k}"] = round(sum(s[0] for s in scores) / len(scores), 4)
        out[f"recall_any@{k}"] = round(sum(s[1] for s in scores) / len(scores), 4)
        out[f"evidence_fraction@{k}"] = round(sum(s[2] for s in scores) / len(scores), 4)
    return out


def score_rankings(items: Iterable[tuple[int, Sequence, Sequence[str]]], ks: Sequence[int]) -> dict:
    """Metrics overall and per category from (category, ranking of dia_ids, evidence dia_ids) triples."""
    items = list(items)
    out = {"overall": _metrics([(r, e) for _, r, e in items], ks), "by_category": {}}
    for category, name in CATEGORIES.items():
        out["by_category"][str(category)] = {
            "name": name, **_metrics([(r, e) for c, r, e in items if c == category], ks)}
    return out


def pooled(table: Mapping[str, Mapping[str, Mapping[str, float]]], config: str, conversations: Iterable[str],
           metric: str) -> float | None:
    """Question-weighted mean of `metric` of `config` over `conversations` (table[conv][config] = {questions,
    metric}); None when they have no questions."""
    total = weight = 0.0
    for conv in conversations:
        cell = table[conv][config]
        if cell["questions"]:
            total += cell[metric] * cell["questions"]
            weight += cell["questions"]
    return total / weight if weight else None


def choose_config(table: Mapping[str, Mapping[str, Mapping[str, float]]], configs: Sequence[str],
                  held_out: str | None, metric: str = f"recall_all@{SELECTION_K}") -> tuple[str, float | None]:
    """The configuration with the best pooled `metric` over every conversation except `held_out` (ties: the
    earlier in `configs`); with no other conversation, the first configuration and None."""
    others = [conv for conv in table if conv != held_out]
    best, best_value = configs[0], None
    for config in configs:
        value = pooled(table, config, others, metric)
        if value is not None and (best_value is None or value > best_value):
            best, best_value = config, value
    return best, best_value


def leave_one_out(table: Mapping[str, Mapping[str, Mapping[str, float]]], configs: Sequence[str],
                  metric: str = f"recall_all@{SELECTION_K}") -> list[dict]:
    """One fold per conversation: the configuration chosen without it, and how it and the first (default)
    configuration score on it."""
    folds = []
    for conv in table:
        chosen, train = choose_config(table, configs, conv, metric)
        fold = {"held_out": conv, "chosen": chosen, f"train_{metric}": None if train is None else round(train, 4),
                f"held_out_{metric}": table[conv][chosen][metric],
                f"held_out_{metric}_default": table[conv][configs[0]][metric]}
        if train is None:
            fold["note"] = "no other conversation with questions: the first configuration"
        folds.append(fold)
    return folds


# ---- baselines -------------------------------------------------------------------------------------------

def _top(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k best scores, best first, ties by document order."""
    order = np.argsort(-scores, kind="stable")
    return [int(i) for i in order[:k]]


def bm25_rankings(turns: Sequence[Turn], questions: Sequence[Question], k: int) -> list[list[str]]:
    """BM25 (bm25s, Lucene variant, k1 1.5, b 0.75) over the turn documents: lowercase word tokens of 2+
    characters, English stop words removed (bm25s' "en_plus", NLTK's 179-word list: its 33-word "en" list keeps
    question words such as "what" and "did"), no stemming."""
    import bm25s

    def tokenize(texts: list[str]) -> list[list[str]]:
        return bm25s.tokenize(texts, lower=True, stopwords=BM25_STOPWORDS, return_ids=False, show_progress=False)

    if not questions:
        return []
    retriever = bm25s.BM25()
    retriever.index(tokenize([t.document for t in turns]), show_progress=False)
    out = []
    for tokens in tokenize([q.text for q in questions]):
        scores = retriever.get_scores(tokens) if tokens else np.zeros(len(turns))
        out.append([turns[i].dia_id for i in _top(np.asarray(scores, dtype=np.float64), k)])
    return out


def dense_rankings(turns: Sequence[Turn], questions: Sequence[Question], k: int, settings) -> list[list[str]]:
    """Cosine between the question and turn embeddings of the project's model (`embed_texts`, unit vectors)."""
    from codex_dreams.enrichment import embed_texts

    if not questions:
        return []
    docs = np.asarray(embed_texts([t.document for t in turns], settings), dtype=np.float32)
    queries = np.asarray(embed_texts([q.text for q in questions], settings), dtype=np.float32)
    return [[turns[i].dia_id for i in _top(np.einsum("ij,j->i", docs, q).astype(np.float64), k)]
            for q in queries]


# ---- the system under test ---------------------------------------------------------------------------------

def config_name(overrides: Mapping) -> str:
    if not overrides:
        return "default"
    return ",".join(f"{key}={value}" for key, value in overrides.items())


def check_overrides(overrides: Mapping) -> None:
    """Refuse keys that are not RecallWeights fields (load_weights would ignore them silently)."""
    from codex_dreams.retrieval.config import RecallWeights, load_weights

    unknown = set(overrides) - set(RecallWeights.model_fields)
    if unknown:
        raise BenchmarkInputError(f"unknown recall setting(s) {', '.join(sorted(unknown))} in a benchmark config")
    load_weights(**overrides)


def usable_ablations(ablations: Mapping[str, dict]) -> tuple[dict[str, dict], dict[str, str]]:
    """(the switches this checkout has, {mechanism: why not} for those naming a recall weight or dbt var it lacks)."""
    from codex_dreams.params import biological_params
    from codex_dreams.retrieval.config import RecallWeights

    usable, unavailable = {}, {}
    for name, switch in ablations.items():
        if set(switch) == {"params"}:
            declared = biological_params()
            missing = sorted(set(switch["params"]) - set(declared))
            if missing:
                unavailable[name] = f"no switch here: dbt_project.yml declares no var {', '.join(missing)}"
                continue
        elif set(switch) == {"env"}:
            overrides = split_env_switch(switch["env"])[0]
            missing = sorted(set(overrides) - set(RecallWeights.model_fields))
            if missing:
                unavailable[name] = f"no switch here: RecallWeights has no field {', '.join(missing)}"
                continue
            check_overrides(overrides)
        else:
            raise BenchmarkInputError(f"ablation {name!r} needs exactly one of 'env' or 'params'")
        usable[name] = switch
    return usable, unavailable


def split_env_switch(env: Mapping[str, str]) -> tuple[dict, dict]:
    """An ablation's env switch -> (load_weights overrides from CODEX_RECALL_W_<FIELD>, other variables)."""
    overrides, other = {}, {}
    for name, value in env.items():
        if name.startswith("CODEX_RECALL_W_"):
            overrides[name.removeprefix("CODEX_RECALL_W_").lower()] = float(value)
        else:
            other[name] = value
    return overrides, other


@contextlib.contextmanager
def environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (None: remove) environment variables, restoring the previous values afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def codex_params_env(params: Mapping | None) -> dict[str, str | None]:
    """CODEX_PARAMS for a pipeline run: the caller's own overrides (if any) with `params` on top."""
    if not params:
        return {}
    base = os.environ.get("CODEX_PARAMS")
    merged = {**(json.loads(base) if base else {}), **params}
    return {"CODEX_PARAMS": json.dumps(merged, sort_keys=True)}


def params_honoured(params: Mapping) -> bool:
    """Whether `biological_params()` reflects CODEX_PARAMS yet (the pipeline's Python side reads it there)."""
    from codex_dreams.params import biological_params

    with environ(codex_params_env(params)):
        current = biological_params()
    return all(current.get(name) == value for name, value in params.items())


def distractor_notes(sample_id: str, n: int, start: datetime, end: datetime) -> list[dict]:
    """n made-up everyday notes (deterministic per sample and n), times uniform over [start, end]."""
    rng = random.Random(zlib.crc32(f"{sample_id}:{n}".encode()))
    span = max((end - start).total_seconds(), 1.0)
    notes, seen = [], set()
    while len(notes) < n:
        template = rng.choice(DISTRACTOR_TEMPLATES)
        content = re.sub(r"\{(\w+)\}", lambda m: rng.choice(DISTRACTOR_SLOTS[m[1]]), template)
        at = start + timedelta(seconds=int(rng.uniform(0, span)))
        if (content, at) in seen:
            continue
        seen.add((content, at))
        notes.append({"content": content, "created_at": at.isoformat(),
                      "metadata": {"kind": "benchmark_distractor", "index": len(notes)}})
    notes.sort(key=lambda note: note["created_at"])
    return notes


@dataclass
class Store:
    """One conversation's store after import + full cycle, in its own CODEX_HOME (env kept while in use)."""

    sample_id: str
    home: Path
    env: dict
    memories: int
    distractors: int
    rejected: int
    links: int
    link_types: dict
    seconds: dict

    @contextlib.contextmanager
    def active(self) -> Iterator:
        from codex_dreams.settings import load_settings

        with environ(self.env):
            yield load_settings()


def build_store(sample: dict, workdir: Path, label: str, *, params: Mapping | None = None,
                distractors: int = 0) -> Store:
    """A fresh CODEX_HOME with `sample` imported as a user does (plus distractor notes) and the full cycle run
    (CODEX_PARAMS = params while importing and running); fails loudly unless everything succeeded."""
    from codex_dreams.pipeline import run_full_cycle
    from codex_dreams.settings import load_settings
    from codex_dreams.sources.importers import read_locomo
    from codex_dreams.sources.ingest import import_path
    from codex_dreams.store import open_store

    sample_id = str(sample.get("sample_id"))
    home = workdir / label
    home.mkdir(parents=True)
    env = {"CODEX_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"), "DUCKDB_PATH": None,
           "CODEX_RHYTHMS": "off"}
    seconds = {}
    source = home / "conversation.json"
    source.write_text(json.dumps([sample]), encoding="utf-8")
    with environ({**env, **codex_params_env(params)}):
        settings = load_settings()
        started = time.perf_counter()
        report = import_path(source, fmt="locomo", settings=settings)
        if report.stored != report.accepted:
            raise RuntimeError(f"{sample_id}: import stored {report.stored} of {report.accepted} turns")
        noise = 0
        if distractors:
            times = [line.record.created_at for line in read_locomo(source) if line.record is not None]
            notes = distractor_notes(sample_id, distractors, min(times), max(times))
            jsonl = home / "distractors.jsonl"
            jsonl.write_text("".join(json.dumps(note) + "\n" for note in notes), encoding="utf-8")
            extra = import_path(jsonl, fmt="jsonl", strict=True, settings=settings)
            if extra.stored != len(notes):
                raise RuntimeError(f"{sample_id}: distractor import stored {extra.stored} of {len(notes)}")
            noise = len(notes)
        seconds["import"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        run = run_full_cycle(settings)
        seconds["pipeline"] = round(time.perf_counter() - started, 2)
        if run["status"] != "SUCCESS":
            raise RuntimeError(f"{sample_id} ({label}): full_cycle_job failed: {'; '.join(run['failures'])}")
        # pruned links are deleted from consolidation.associations, so every row is an active link
        with open_store(settings, read_only=True) as con:
            links = int(con.execute("select count(*) from consolidation.associations").fetchone()[0])
            link_types = dict(con.execute("select link_type, count(*) from consolidation.associations "
                                          "group by 1 order by 1").fetchall())
    return Store(sample_id, home, {**env, **codex_params_env(params)}, report.accepted, noise,
                 len(report.rejected), links, link_types, seconds)


def codex_rankings(store: Store, questions: Sequence[Question], k: int, overrides: Mapping | None = None,
                   env: Mapping[str, str] | None = None) -> list[list[str | None]]:
    """The dia_ids of the k memories recalled for each question (None: a memory that is not a turn of this
    conversation, e.g. a distractor), through the batch recall API with logging off."""
    from codex_dreams.retrieval.config import load_weights
    from codex_dreams.retrieval.engine import Recaller

    if not questions:
        return []
    with store.active() as settings, environ(dict(env or {})):
        engine = Recaller(settings, weights=load_weights(**dict(overrides or {})))
        try:
            responses = engine.recall_many([(i, q.text) for i, q in enumerate(questions)], k, log=False)
        finally:
            engine.close()
    out = []
    for response in responses:
        ranking = []
        for memory in response:
            meta = memory.metadata or {}
            ranking.append(str(meta["dia_id"]) if meta.get("sample_id") == store.sample_id and meta.get("dia_id")
                           else None)
        out.append(ranking)
    return out


# ---- the run -----------------------------------------------------------------------------------------------

def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _items(questions: Sequence[Question], rankings: Sequence[Sequence]) -> list[tuple]:
    return [(q.category, r, q.evidence) for q, r in zip(questions, rankings)]


def _at(metrics: dict, k: int = SELECTION_K, what: str = "recall_all") -> dict:
    """{"overall": value, "<category>": value} of one metric."""
    out = {"overall": metrics["overall"][f"{what}@{k}"]}
    for category, cell in metrics["by_category"].items():
        out[category] = cell[f"{what}@{k}"]
    return out


def _delta(value: dict, base: dict) -> dict:
    return {key: None if value[key] is None or base[key] is None else round(value[key] - base[key], 4)
            for key in value}


def load_samples(path: Path, conversations: Sequence[str] | None) -> list[dict]:
    samples = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(samples, list):
        raise BenchmarkInputError(f"{path} is not a LoCoMo file (expected a JSON list of conversations)")
    if conversations:
        known = {str(s.get("sample_id")) for s in samples}
        missing = [c for c in conversations if c not in known]
        if missing:
            raise BenchmarkInputError(f"no conversation {', '.join(missing)} in {path}")
        samples = [s for s in samples if str(s.get("sample_id")) in conversations]
    return samples


def run_benchmark(data: Path, *, ks: Sequence[int] = DEFAULT_KS, folds: str = "none", ablate: bool = False,
                  conversations: Sequence[str] | None = None, distractors: int = 0,
                  grid: Sequence[Mapping] = RECALL_GRID, ablations: Mapping[str, dict] = ABLATIONS,
                  progress: Callable[[str], None] = log) -> tuple[dict, dict]:
    """Run the benchmark; returns (the report, details: per system and conversation the questions and rankings)."""
    from codex_dreams.enrichment import active_embedding_model
    from codex_dreams.retrieval.config import load_weights
    from codex_dreams.store import open_store

    started_all = time.perf_counter()
    ks = sorted(set(ks))
    depth = max([*ks, SELECTION_K])
    if not grid or grid[0]:
        raise BenchmarkInputError("the first recall configuration must be {} (the defaults)")
    for overrides in grid:
        check_overrides(overrides)
    ablations, unavailable = usable_ablations(ablations)
    names = [config_name(g) for g in grid]
    if len(set(names)) != len(names):
        raise BenchmarkInputError("two recall configurations have the same overrides")
    samples = load_samples(data, conversations)
    skipped = Skipped()
    systems = ["codex", "bm25", "dense"]
    details: dict = {s: {} for s in systems}
    grid_items: dict[str, dict[str, list]] = {}  # conv -> config -> items
    ablation_items: dict[str, list] = {name: [] for name in ablations}
    ablation_links: dict[str, int] = {name: 0 for name in ablations if "params" in ablations[name]}
    distractor_items: dict[str, list] = {"forgetting_on": [], "forgetting_off": []}
    distractor_links: dict[str, int] = {"forgetting_on": 0, "forgetting_off": 0}
    per_conversation = []
    all_questions: list[Question] = []
    total_links = 0
    embedding_model = None

    with tempfile.TemporaryDirectory(prefix="codex-locomo-") as tmp, \
            environ({"CODEX_RHYTHMS": "off", "POSTGRES_DB_URL": "",
                     "CODEX_LLM_PROVIDER": os.environ.get("CODEX_LLM_PROVIDER") or "offline",
                     "DAGSTER_DISABLE_TELEMETRY": "1"}):
        workdir = Path(tmp)
        for sample in samples:
            conv_started = time.perf_counter()
            sample_id = str(sample.get("sample_id"))
            turns = conversation_turns(sample)
            questions = conversation_questions(sample, [t.dia_id for t in turns], skipped)
            all_questions.extend(questions)
            store = build_store(sample, workdir, sample_id)
            timing = dict(store.seconds)
            # the baselines rank exactly the turns the importer accepted (the memories codex holds)
            with store.active() as settings:
                with open_store(settings, read_only=True) as con:
                    imported = {row[0] for row in con.execute(
                        "select metadata->>'dia_id' from raw.memories where deleted_at is null").fetchall()}
            turns = [t for t in turns if t.dia_id in imported]
            started = time.perf_counter()
            grid_items[sample_id] = {}
            for name, overrides in zip(names, grid):
                if name != names[0] and folds != "loo":
                    continue
                rankings = codex_rankings(store, questions, depth, overrides)
                grid_items[sample_id][name] = _items(questions, rankings)
                if name == names[0]:
                    details["codex"][sample_id] = {"questions": questions, "rankings": rankings}
            timing["recall"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            rankings = bm25_rankings(turns, questions, depth)
            details["bm25"][sample_id] = {"questions": questions, "rankings": rankings}
            timing["bm25"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            with store.active() as settings:
                rankings = dense_rankings(turns, questions, depth, settings)
                embedding_model = active_embedding_model(settings)
            details["dense"][sample_id] = {"questions": questions, "rankings": rankings}
            timing["dense"] = round(time.perf_counter() - started, 2)
            total_links += store.links
            if ablate:
                started = time.perf_counter()
                for name, switch in ablations.items():
                    if "env" in switch:
                        overrides, other = split_env_switch(switch["env"])
                        rankings = codex_rankings(store, questions, depth, overrides, other)
                    else:
                        variant = build_store(sample, workdir, f"{sample_id}-no-{name}", params=switch["params"])
                        rankings = codex_rankings(variant, questions, depth)
                        ablation_links[name] += variant.links
                        progress(f"[locomo]   {sample_id} without {name}: {variant.links} links, "
                                 f"pipeline {variant.seconds['pipeline']:.1f}s")
                        shutil.rmtree(variant.home, ignore_errors=True)
                    ablation_items[name].extend(_items(questions, rankings))
                timing["ablation"] = round(time.perf_counter() - started, 2)
            if distractors:
                started = time.perf_counter()
                for setting, params in (("forgetting_on", None), ("forgetting_off", FORGETTING_OFF)):
                    variant = build_store(sample, workdir, f"{sample_id}-distractors-{setting}", params=params,
                                          distractors=distractors)
                    distractor_items[setting].extend(_items(questions, codex_rankings(variant, questions, depth)))
                    distractor_links[setting] += variant.links
                    progress(f"[locomo]   {sample_id} + {distractors} distractors, {setting.replace('_', ' ')}: "
                             f"{variant.links} links, pipeline {variant.seconds['pipeline']:.1f}s")
                    shutil.rmtree(variant.home, ignore_errors=True)
                timing["distractors"] = round(time.perf_counter() - started, 2)
            shutil.rmtree(store.home, ignore_errors=True)
            timing["total"] = round(time.perf_counter() - conv_started, 2)
            per_conversation.append({"sample_id": sample_id, "turns": len(turns), "memories": store.memories,
                                     "rejected_turns": store.rejected, "questions": len(questions),
                                     "links": store.links, "link_types": store.link_types, "seconds": timing})
            progress(f"[locomo] {sample_id}: {len(turns)} turns, {len(questions)} questions, {store.links} links; "
                     + ", ".join(f"{key} {value:.1f}s" for key, value in timing.items()))

        default_weights = load_weights().as_dict()

    def system_metrics(system: str) -> dict:
        items = [item for conv in details[system].values() for item in _items(conv["questions"], conv["rankings"])]
        return score_rankings(items, ks)

    report: dict = {
        "data": str(data),
        "conversations": per_conversation,
        "questions": len(all_questions),
        "skipped": skipped.as_dict(),
        "k": ks,
        "codex": {"config": {"weights": default_weights, "embedding_model": embedding_model,
                             "links": total_links}, **system_metrics("codex")},
        "bm25": {"config": {"library": "bm25s", "method": "lucene", "k1": 1.5, "b": 0.75,
                            "tokens": "lowercase \\w\\w+, no stemming",
                            "stopwords": f"bm25s {BM25_STOPWORDS} (NLTK English)",
                            "document": "speaker: text + image caption"}, **system_metrics("bm25")},
        "dense": {"config": {"embedding_model": embedding_model, "document": "speaker: text + image caption"},
                  **system_metrics("dense")},
    }

    if folds == "loo":
        metric = f"recall_all@{SELECTION_K}"
        table = {conv: {name: score_rankings(items, [SELECTION_K])["overall"] for name, items in cells.items()}
                 for conv, cells in grid_items.items()}
        fold_rows = leave_one_out(table, names, metric)
        for row in fold_rows:
            row["chosen_overrides"] = grid[names.index(row["chosen"])]
        loo_items = [item for row in fold_rows for item in grid_items[row["held_out"]][row["chosen"]]]
        best, best_value = choose_config(table, names, None, metric)
        report["loo"] = {
            "selection": f"overall {metric}, pooled over the other conversations' questions; ties: grid order",
            "grid": [{"name": name, "overrides": overrides} for name, overrides in zip(names, grid)],
            "folds": fold_rows,
            "metrics": score_rankings(loo_items, ks),
            "in_sample_not_a_result": {
                "note": "chosen and scored on the same conversations; optimistic, not a result",
                "best": best, "overrides": grid[names.index(best)],
                metric: None if best_value is None else round(best_value, 4),
                "per_config": {name: None if (v := pooled(table, name, list(table), metric)) is None
                               else round(v, 4) for name in names},
            },
        }
    else:
        report["loo"] = None

    if ablate:
        base = _at(report["codex"])
        mechanisms = {}
        for name, switch in ablations.items():
            metrics = score_rankings(ablation_items[name], [SELECTION_K])
            value = _at(metrics)
            entry = {"kind": "recall" if "env" in switch else "pipeline", "switch": switch,
                     f"recall_all@{SELECTION_K}": value, "delta": _delta(value, base)}
            if "params" in switch:
                entry["links"] = ablation_links[name]
                entry["codex_params_honoured"] = params_honoured(switch["params"])
            mechanisms[name] = entry
        report["ablation"] = {"default": {f"recall_all@{SELECTION_K}": base, "links": total_links},
                              "mechanisms": mechanisms, "not_switchable_yet": {**unavailable, **NOT_SWITCHABLE_YET}}
    else:
        report["ablation"] = None

    if distractors:
        out = {"per_conversation": distractors,
               "links": "rows of consolidation.associations after the run, summed over conversations (pruning "
                        "deletes links, so every row is active)",
               "without_distractors": {f"recall_all@{SELECTION_K}": _at(report["codex"]), "links": total_links}}
        for setting, items in distractor_items.items():
            out[setting] = {f"recall_all@{SELECTION_K}": _at(score_rankings(items, [SELECTION_K])),
                            "links": distractor_links[setting]}
        out["forgetting_off"]["params"] = FORGETTING_OFF
        out["forgetting_off"]["codex_params_honoured"] = params_honoured(FORGETTING_OFF)
        report["distractors"] = out
    else:
        report["distractors"] = None

    report["seconds"] = round(time.perf_counter() - started_all, 1)
    return report, details


# ---- output ------------------------------------------------------------------------------------------------

def table(report: dict, k: int | None = None) -> str:
    """A readable summary at k (default 10, else the largest k) for stderr."""
    k = k or (SELECTION_K if SELECTION_K in report["k"] else max(report["k"]))
    columns = [("overall", "overall")] + [(str(c), name) for c, name in CATEGORIES.items()]
    lines = [f"LoCoMo evidence recall, {report['questions']} questions, k = {k} (all / any / fraction)",
             f"{'system':<10}" + "".join(f"{name:>22}" for _, name in columns)]
    systems = [("codex", report["codex"]), ("bm25", report["bm25"]), ("dense", report["dense"])]
    if report.get("loo"):
        systems.append(("codex LOO", report["loo"]["metrics"]))
    for label, metrics in systems:
        row = f"{label:<10}"
        for key, _ in columns:
            cell = metrics["overall"] if key == "overall" else metrics["by_category"][key]
            if cell["questions"] and f"recall_all@{k}" in cell:
                row += f"{cell[f'recall_all@{k}']:>8.3f}{cell[f'recall_any@{k}']:>7.3f}" \
                       f"{cell[f'evidence_fraction@{k}']:>7.3f}"
            else:
                row += f"{'-':>22}"
        lines.append(row)
    if report.get("ablation"):
        lines.append(f"ablation (recall_all@{SELECTION_K} overall, delta vs default):")
        for name, entry in report["ablation"]["mechanisms"].items():
            value = entry[f"recall_all@{SELECTION_K}"]["overall"]
            lines.append(f"  {name:<12} {value:.3f} ({entry['delta']['overall']:+.3f})")
    return "\n".join(lines)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Everything written to stdout (file descriptor 1 included, e.g. by libraries) goes to stderr meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("--k takes numbers such as 5,10,20") from None
    if not ks or any(k < 1 or k > 1000 for k in ks):
        raise argparse.ArgumentTypeError("--k values must be between 1 and 1000")
    return ks


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LoCoMo JSON (read in place)")
    parser.add_argument("--k", type=_ks, default=list(DEFAULT_KS), help="cut-offs, e.g. 5,10,20")
    parser.add_argument("--json", action="store_true", help="only the JSON object on stdout (no table on stderr)")
    parser.add_argument("--folds", choices=["none", "loo"], default="none",
                        help="loo: choose the recall configuration leaving one conversation out")
    parser.add_argument("--ablate", action="store_true", help="switch each mechanism off in turn")
    parser.add_argument("--conversations", default="", help="comma-separated sample ids (default: all)")
    parser.add_argument("--distractors", type=int, default=0, help="made-up notes added per conversation")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.exit(2, f"Error: {args.data} does not exist.\n")
    if args.distractors < 0:
        parser.exit(2, "Error: --distractors must be 0 or more.\n")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    conversations = [c.strip() for c in args.conversations.split(",") if c.strip()] or None
    try:
        with stdout_to_stderr():
            report, _ = run_benchmark(args.data, ks=args.k, folds=args.folds, ablate=args.ablate,
                                      conversations=conversations, distractors=args.distractors)
    except BenchmarkInputError as error:
        parser.exit(2, f"Error: {error}.\n")
    emit("locomo", report)
    if not args.json:
        log(table(report))


if __name__ == "__main__":
    main()
