"""benchmarks/locomo.py: evidence parsing, scoring, leave-one-out selection and one end-to-end run on a tiny
hand-made LoCoMo-format file (tests/recall/tiny_locomo.py) through the real import and pipeline."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from tiny_locomo import TINY_LOCOMO, write_tiny_locomo  # noqa: E402


def _load_benchmark():
    """benchmarks/ is not a package: load locomo.py by path (it puts benchmarks/ on sys.path for `common`)."""
    name = "codex_locomo_benchmark"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "locomo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


locomo = _load_benchmark()


@pytest.fixture(scope="module")
def tiny() -> list[dict]:
    return json.loads(json.dumps(TINY_LOCOMO))  # a fresh copy


def _questions(tiny):
    """sample id -> (turns, questions) of the tiny file, and the Skipped counters over both."""
    skipped = locomo.Skipped()
    out = {}
    for sample in tiny:
        turns = locomo.conversation_turns(sample)
        out[sample["sample_id"]] = (turns, locomo.conversation_questions(sample, [t.dia_id for t in turns], skipped))
    return out, skipped


# ---- (a) evidence parsing and scoring -----------------------------------------------------------------------

def test_parse_evidence_is_defensive():
    turns = {"D8:6", "D9:17", "D30:5", "D11:26", "D1:2", "D1:3"}
    parsed = locomo.parse_evidence(["D8:6; D9:17", "D", "D:11:26", "D30:05", "D1:2 D1:3", "D1:2", "D7:7", "D40:05"],
                                   turns)
    assert parsed.valid == ("D8:6", "D9:17", "D30:5", "D1:2", "D1:3")  # deduplicated, file order
    assert parsed.malformed == ("D", "D:11:26", "D40:05")  # D40:5 does not exist, so D40:05 is not normalised
    assert parsed.unknown == ("D7:7",)
    assert parsed.normalised == ("D30:05",)
    assert locomo.parse_evidence(None, turns).valid == ()
    assert locomo.parse_evidence("D1:2,D1:3", turns).valid == ("D1:2", "D1:3")


def test_tiny_questions_count_what_they_skip(tiny):
    by_sample, skipped = _questions(tiny)
    turns_a, questions_a = by_sample["tiny-a"]
    turns_b, questions_b = by_sample["tiny-b"]
    # session_3_date_time of tiny-a has no session: only the sessions that hold lists give turns
    assert [t.dia_id for t in turns_a] == ["D1:1", "D1:2", "D1:3", "D1:4", "D2:1", "D2:2", "D2:3"]
    assert turns_a[4].document == ("Teodor: The sailboat is finished, I painted the hull bright yellow. "
                                   "a photo of a yellow sailboat on a trailer")
    assert [(q.category, q.evidence) for q in questions_a] == [(4, ("D2:1",)), (1, ("D1:1", "D1:3"))]
    assert [(q.category, q.evidence) for q in questions_b] == [(2, ("D2:1", "D1:2")), (3, ("D1:1",))]
    assert len(turns_b) == 6
    assert skipped.category_5 == 1                    # tiny-a's adversarial question
    assert skipped.malformed_evidence_ids == 2        # "D" and "D:1:3"
    assert skipped.unknown_evidence_ids == 1          # "D9:9"
    assert skipped.normalised_evidence_ids == 1       # "D1:03" -> "D1:3"
    assert skipped.questions_with_dropped_evidence_ids == 2
    assert skipped.questions_without_valid_evidence == 1  # "D:1:3" was its only evidence


def test_scoring_hand_made_rankings(tiny):
    by_sample, _ = _questions(tiny)
    (_, (q1, q2)), (_, (q4, q5)) = by_sample["tiny-a"], by_sample["tiny-b"]
    rankings = {
        q1: ["D2:1", "D1:4", "D2:3"],  # E = {D2:1}: found at rank 1
        q2: ["D1:3", "D1:2", "D1:1"],  # E = {D1:1, D1:3}: half by k = 1 and 2, all at k = 3
        q4: ["D2:3", "D1:1", "D2:2"],  # E = {D2:1, D1:2}: never found
        q5: ["D2:2", "D1:1", None],    # E = {D1:1}: found at rank 2 (None: a memory that is not a turn)
    }
    metrics = locomo.score_rankings([(q.category, r, q.evidence) for q, r in rankings.items()], [1, 2, 3])
    overall = metrics["overall"]
    assert overall["questions"] == 4
    # k = 1: all (1 + 0 + 0 + 0) / 4; any (1 + 1 + 0 + 0) / 4; fraction (1 + 0.5 + 0 + 0) / 4
    assert (overall["recall_all@1"], overall["recall_any@1"], overall["evidence_fraction@1"]) == (0.25, 0.5, 0.375)
    # k = 2: q5 found too: all (1 + 0 + 0 + 1) / 4; any (1 + 1 + 0 + 1) / 4; fraction (1 + 0.5 + 0 + 1) / 4
    assert (overall["recall_all@2"], overall["recall_any@2"], overall["evidence_fraction@2"]) == (0.5, 0.75, 0.625)
    # k = 3: q2 complete: all (1 + 1 + 0 + 1) / 4; any the same; fraction (1 + 1 + 0 + 1) / 4
    assert (overall["recall_all@3"], overall["recall_any@3"], overall["evidence_fraction@3"]) == (0.75, 0.75, 0.75)
    cats = metrics["by_category"]
    assert cats["1"]["name"] == "multi-hop" and cats["1"]["questions"] == 1
    assert (cats["1"]["recall_all@2"], cats["1"]["recall_any@2"], cats["1"]["evidence_fraction@2"]) == (0, 1, 0.5)
    assert (cats["2"]["recall_all@3"], cats["2"]["recall_any@3"], cats["2"]["evidence_fraction@3"]) == (0, 0, 0)
    assert (cats["3"]["recall_all@1"], cats["3"]["recall_all@2"]) == (0, 1)
    assert cats["4"]["recall_all@1"] == 1


def test_score_question_and_empty_categories():
    assert locomo.score_question(["a", "b", "c"], ["c", "d", "e"], 3) == (False, True, pytest.approx(1 / 3))
    assert locomo.score_question([], ["a"], 10) == (False, False, 0.0)
    with pytest.raises(ValueError):
        locomo.score_question(["a"], [], 1)
    metrics = locomo.score_rankings([(4, ["x"], ("x",))], [1])
    assert metrics["by_category"]["1"] == {"name": "multi-hop", "questions": 0, "recall_all@1": None,
                                           "recall_any@1": None, "evidence_fraction@1": None}


def test_bm25_baseline_finds_the_obvious_turn(tiny):
    by_sample, _ = _questions(tiny)
    turns, questions = by_sample["tiny-a"]
    rankings = locomo.bm25_rankings(turns, questions, 3)
    assert rankings[0][0] == "D2:1"  # the only turn with "hull" (and "sailboat" twice, with its caption)
    assert len(rankings[1]) == 3
    assert locomo.bm25_rankings(turns, [], 3) == []


# ---- (c) leave one conversation out ---------------------------------------------------------------------------

def _cell(value, questions=10):
    return {"questions": questions, "recall_all@10": value}


def test_loo_chooses_without_the_held_out_conversation():
    configs = ["default", "lexical", "dense"]
    # conv-x is won by "dense" by a mile; on the others "lexical" is best. Pooled over all three "dense" wins
    # (in sample), but no fold may pick "dense" for conv-x from conv-x's own numbers.
    table = {
        "conv-x": {"default": _cell(0.1), "lexical": _cell(0.1), "dense": _cell(0.9)},
        "conv-y": {"default": _cell(0.4), "lexical": _cell(0.5), "dense": _cell(0.3)},
        "conv-z": {"default": _cell(0.4, 30), "lexical": _cell(0.5, 30), "dense": _cell(0.45, 30)},
    }
    best, value = locomo.choose_config(table, configs, None)
    assert best == "dense" and value == pytest.approx((9 + 3 + 13.5) / 50)  # in-sample only
    chosen, train = locomo.choose_config(table, configs, "conv-x")
    assert chosen == "lexical" and train == pytest.approx((5 + 15) / 40)
    # without conv-y: conv-x + conv-z pooled by questions: dense (9 + 13.5) / 40 beats lexical (1 + 15) / 40
    assert locomo.choose_config(table, configs, "conv-y")[0] == "dense"
    folds = {f["held_out"]: f for f in locomo.leave_one_out(table, configs)}
    assert folds["conv-x"]["chosen"] == "lexical"
    assert folds["conv-x"]["held_out_recall_all@10"] == 0.1
    assert folds["conv-x"]["held_out_recall_all@10_default"] == 0.1
    assert folds["conv-y"]["chosen"] == "dense" and folds["conv-y"]["held_out_recall_all@10"] == 0.3
    assert folds["conv-z"]["chosen"] == "dense"  # conv-x + conv-y: dense (9 + 3) / 20 > lexical (1 + 5) / 20


def test_loo_ties_keep_grid_order_and_lone_conversation_gets_default():
    configs = ["default", "other"]
    table = {"a": {"default": _cell(0.5), "other": _cell(0.5)}, "b": {"default": _cell(0.2), "other": _cell(0.2)}}
    assert locomo.choose_config(table, configs, "a") == ("default", 0.2)
    lone = locomo.leave_one_out({"a": {"default": _cell(0.5), "other": _cell(0.9)}}, configs)
    assert lone[0]["chosen"] == "default" and lone[0]["train_recall_all@10"] is None and "note" in lone[0]
    # a conversation without questions does not count
    table["b"] = {"default": _cell(None, 0), "other": _cell(None, 0)}
    assert locomo.choose_config(table, configs, "a") == ("default", None)


# ---- configuration tables and distractors -----------------------------------------------------------------

def test_declared_tables_are_valid():
    from codex_dreams.params import biological_params

    assert locomo.RECALL_GRID[0] == {}
    for overrides in locomo.RECALL_GRID:
        locomo.check_overrides(overrides)
    with pytest.raises(locomo.BenchmarkInputError):
        locomo.check_overrides({"lexcial": 1.0})
    for name, switch in locomo.ABLATIONS.items():
        assert ("env" in switch) != ("params" in switch), name
        if "params" in switch:
            biological_params(switch["params"])  # every var is declared in dbt_project.yml
    usable, unavailable = locomo.usable_ablations({
        "associative": {"env": {"CODEX_RECALL_W_ASSOCIATIVE": "0"}},
        "future_signal": {"env": {"CODEX_RECALL_W_NO_SUCH_SIGNAL": "0"}},
        "future_mechanism": {"params": {"no_such_var": 0}},
        "hebbian": locomo.ABLATIONS["hebbian"],
    })
    assert set(usable) == {"associative", "hebbian"}
    assert "no_such_signal" in unavailable["future_signal"] and "no_such_var" in unavailable["future_mechanism"]
    with pytest.raises(locomo.BenchmarkInputError):
        locomo.usable_ablations({"both": {"env": {}, "params": {}}})
    assert locomo.split_env_switch({"CODEX_RECALL_W_ASSOCIATIVE": "0", "OTHER": "x"}) == (
        {"associative": 0.0}, {"OTHER": "x"})
    assert not set(locomo.NOT_SWITCHABLE_YET) & set(locomo.ABLATIONS)


def test_distractors_are_deterministic_and_spread(tiny):
    start, end = datetime(2023, 3, 3, 10, 15), datetime(2023, 3, 20, 16, 30)
    notes = locomo.distractor_notes("tiny-a", 40, start, end)
    assert notes == locomo.distractor_notes("tiny-a", 40, start, end)
    assert notes != locomo.distractor_notes("tiny-b", 40, start, end)
    assert len(notes) == 40 and len({(n["content"], n["created_at"]) for n in notes}) == 40
    times = [datetime.fromisoformat(n["created_at"]) for n in notes]
    assert times == sorted(times) and start <= times[0] and times[-1] <= end
    assert times[-1] - times[0] > (end - start) / 2
    locomo_text = json.dumps(tiny).lower()
    assert not any(n["content"].lower() in locomo_text for n in notes)
    assert all("{" not in n["content"] for n in notes)


# ---- (b) end to end through the real import and pipeline ------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One run of the harness on the tiny file: LOO over a 2-entry grid, one recall and one pipeline ablation,
    2 distractors per conversation (2 + 2 + 4 pipeline runs)."""
    with pytest.MonkeyPatch.context() as mp:
        # the isolation of tests/conftest.py's codex_home fixture, for a module-scoped run
        mp.setenv("POSTGRES_DB_URL", "")
        mp.setenv("CODEX_LLM_PROVIDER", "offline")
        for name in ("DUCKDB_PATH", "DAGSTER_HOME", "CODEX_PARAMS", "OPENAI_API_KEY", "MAX_CONCURRENCY",
                     "CODEX_TIMEZONE", "EMBEDDING_MODEL", "CODEX_RECALL_W_DENSE", "CODEX_RECALL_W_LEXICAL",
                     "CODEX_RECALL_W_ASSOCIATIVE", "CODEX_RECALL_W_STRENGTH"):
            mp.delenv(name, raising=False)
        mp.setenv("CODEX_HOME", str(tmp_path_factory.mktemp("outer_home")))
        mp.chdir(tmp_path_factory.mktemp("cwd"))  # no developer .env
        before = {name: os.environ.get(name) for name in ("CODEX_HOME", "CODEX_RHYTHMS", "DAGSTER_HOME")}
        grid = [{}, {"dense": 0.0, "lexical": 1.0, "associative": 0.0, "strength": 0.0}]
        ablations = {"associative": locomo.ABLATIONS["associative"], "forgetting": locomo.ABLATIONS["forgetting"]}
        data = write_tiny_locomo(tmp_path_factory.mktemp("data"))
        report, details = locomo.run_benchmark(data, ks=[1, 3, 10], folds="loo", ablate=True, distractors=2,
                                               grid=grid, ablations=ablations, progress=lambda line: None)
        after = {name: os.environ.get(name) for name in before}
    return report, details, before, after, data


@pytest.mark.slow
def test_end_to_end_structure(tiny_run):
    report, details, before, after, data = tiny_run
    assert before == after  # the harness restores the environment it changed
    json.dumps(report)  # serialisable as is
    assert report["data"] == str(data) and report["k"] == [1, 3, 10]
    assert [c["sample_id"] for c in report["conversations"]] == ["tiny-a", "tiny-b"]
    assert [c["memories"] for c in report["conversations"]] == [7, 6]
    assert all(c["links"] > 0 for c in report["conversations"])  # consolidation linked the turns
    assert report["questions"] == 4
    assert report["skipped"]["category_5"] == 1 and report["skipped"]["questions_without_valid_evidence"] == 1
    for system in ("codex", "bm25", "dense"):
        metrics = report[system]
        assert metrics["overall"]["questions"] == 4
        assert set(metrics["by_category"]) == {"1", "2", "3", "4"}
        for k in (1, 3, 10):
            for what in ("recall_all", "recall_any", "evidence_fraction"):
                assert 0 <= metrics["overall"][f"{what}@{k}"] <= 1
        # with 6-7 turns per conversation, the top 10 holds every turn: everything is found
        assert metrics["overall"]["recall_all@10"] == 1.0
    # codex answers are mapped back to this conversation's turns
    for sample_id, entry in details["codex"].items():
        turns = {t.dia_id for t in locomo.conversation_turns(
            next(s for s in TINY_LOCOMO if s["sample_id"] == sample_id))}
        assert all(ranking and set(ranking) <= turns for ranking in entry["rankings"])
    # BM25 must find the one turn that has "hull" and "sailboat" (twice, with its caption) first
    assert details["bm25"]["tiny-a"]["rankings"][0][0] == "D2:1"


@pytest.mark.slow
def test_end_to_end_loo_ablation_distractors(tiny_run):
    report = tiny_run[0]
    loo = report["loo"]
    assert [g["name"] for g in loo["grid"]] == ["default", "dense=0.0,lexical=1.0,associative=0.0,strength=0.0"]
    assert [f["held_out"] for f in loo["folds"]] == ["tiny-a", "tiny-b"]
    assert all(f["chosen"] in {g["name"] for g in loo["grid"]} for f in loo["folds"])
    assert loo["metrics"]["overall"]["questions"] == 4
    assert "not a result" in loo["in_sample_not_a_result"]["note"]
    ablation = report["ablation"]
    assert set(ablation["mechanisms"]) == {"associative", "forgetting"}
    assert ablation["mechanisms"]["associative"]["kind"] == "recall"
    forgetting = ablation["mechanisms"]["forgetting"]
    assert forgetting["kind"] == "pipeline" and isinstance(forgetting["codex_params_honoured"], bool)
    for entry in ablation["mechanisms"].values():
        assert set(entry["delta"]) == {"overall", "1", "2", "3", "4"}
    assert {"concepts", "time_cues"} <= set(ablation["not_switchable_yet"])
    distractors = report["distractors"]
    assert distractors["per_conversation"] == 2
    for setting in ("forgetting_on", "forgetting_off"):
        assert distractors[setting]["links"] >= 0
        assert 0 <= distractors[setting]["recall_all@10"]["overall"] <= 1
    assert distractors["forgetting_off"]["params"] == locomo.FORGETTING_OFF


def test_cli_refuses_bad_input(tmp_path, capsys):
    tiny_file = write_tiny_locomo(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        locomo.main(["--data", str(tmp_path / "missing.json"), "--json"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        locomo.main(["--data", str(tiny_file), "--conversations", "conv-404", "--json"])
    assert exit_info.value.code == 2
    assert "conv-404" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        locomo.main(["--data", str(tiny_file), "--k", "0"])
