"""What real servers do (issue 19), against the protocol server taught to do it: llama-cpp-python refusing
json_schema with HTTP 500, one embedding vector per token, any model name answered; and the project saying so
when enrichment does not work (the first real cause, the asset check, `codex health`)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace

import dagster as dg
import numpy as np
import pytest
from enrichment_protocol_server import (
    LLAMA_CPP_MODEL,
    ProtocolServer,
    fake_enrichment,
    fake_token_embeddings,
    memory_text,
    response_format_form,
)
from enrichment_store_helpers import FAST, SAMPLE_TEXTS, enrichment_rows, insert_memories

from codex_dreams.enrichment import Enrichment, enrich_pending, enrich_texts
from codex_dreams.enrichment.asset import FALLBACK_CHECK, REENRICH_FALLBACKS_TAG, memory_enrichment
from codex_dreams.enrichment.capabilities import FILE_NAME
from codex_dreams.enrichment.providers import ENRICHMENT_MAX_TOKENS, AbandonedError, build_remote_provider
from codex_dreams.resources import build_resources

N = len(SAMPLE_TEXTS)
API_KEY = "sk-issue19-0123456789-secret"
FIELDS = list(Enrichment.model_fields)


class Collector:
    """A run log (what Dagster's context.log is to the pipeline) that keeps what it was told."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg, *args):
        self.lines.append(("INFO", msg % args if args else msg))

    def warning(self, msg, *args):
        self.lines.append(("WARNING", msg % args if args else msg))

    def said(self, level: str, fragment: str) -> list[str]:
        return [text for lvl, text in self.lines if lvl == level and fragment in text]


@pytest.fixture
def llama(server):
    return server.like_llama_cpp_python()


@pytest.fixture
def openai(make_settings, server):
    def make(**env):
        base = dict(CODEX_LLM_PROVIDER="openai", OPENAI_BASE_URL=server.openai_url, OPENAI_MODEL="gemma-3-270m",
                    OPENAI_EMBEDDING_MODEL="gemma-3-270m-embed", OPENAI_API_KEY=API_KEY, OLLAMA_TIMEOUT=5)
        return make_settings(**{**base, **env})

    return make


def _unit(vector):
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_llama_cpp_python_refusing_json_schema_with_500_is_negotiated_once(openai, llama):
    settings = openai()
    insert_memories(settings, SAMPLE_TEXTS)
    log = Collector()
    stats = enrich_pending(settings, log=log, resilience=FAST)

    forms = [response_format_form(body) for body in llama.bodies("chat")]
    # One refused request (not retried as a transient 500), then the server's own form for every memory.
    assert forms == ["json_schema"] + ["json_object+schema"] * N
    assert stats.retries == 0 and stats.http_errors == 1 and stats.breaker_opens == 0
    assert stats.by_provider == {"openai": N} and stats.fallbacks == 0 and stats.llm_answers == N
    assert stats.structured_output == "json_object+schema"
    assert log.said("INFO", "structured output as response_format json_object+schema")
    for body in llama.bodies("chat"):
        assert body["max_tokens"] == ENRICHMENT_MAX_TOKENS
        system, user = body["messages"]
        # gemma's chat template drops the system message: the instructions must be in the user message
        assert system["role"] == "system" and "importance" not in system["content"]
        assert user["role"] == "user" and "importance" in user["content"] and "sentiment" in user["content"]
    for row in enrichment_rows(settings):
        assert row["provider"] == "openai" and row["fallback_reason"] is None
        text = SAMPLE_TEXTS[int(row["memory_id"][1:])]
        assert Enrichment.model_validate({f: row[f] for f in FIELDS}).model_dump() == fake_enrichment(text)

    # Remembered per base URL and model under CODEX_HOME: the next run does not ask with json_schema again.
    remembered = json.loads((settings.codex_home / FILE_NAME).read_text())["servers"]
    assert [entry["structured_output"] for entry in remembered.values()] == ["json_object+schema"]
    assert API_KEY not in json.dumps(remembered)
    llama.reset()
    insert_memories(settings, ["A new memory about the garden in Porto."], prefix="n")
    enrich_pending(settings, resilience=FAST)
    assert [response_format_form(body) for body in llama.bodies("chat")] == ["json_object+schema"]


def test_per_token_embeddings_are_mean_pooled_with_one_warning(openai, llama):
    settings = openai()
    insert_memories(settings, SAMPLE_TEXTS)  # two embedding requests (FAST: 8 texts each)
    log = Collector()
    stats = enrich_pending(settings, log=log, resilience=FAST)

    assert llama.count("embed") == 2 and stats.embedded == N and stats.embeddings_pending == 0
    assert len(log.said("WARNING", "one vector per token")) == 1
    for row in enrichment_rows(settings):
        text = SAMPLE_TEXTS[int(row["memory_id"][1:])]
        expected = _unit(np.mean(np.asarray(fake_token_embeddings(text, 16), dtype=np.float32), axis=0))
        assert row["embedding_dim"] == 16
        assert np.allclose(row["embedding"], expected, atol=1e-6)


def test_first_real_cause_is_stored_logged_and_scrubbed_not_circuit_open(openai, server):
    server.set_mode("chat", "error")
    settings = openai()
    insert_memories(settings, SAMPLE_TEXTS)
    log = Collector()
    stats = enrich_pending(settings, log=log, resilience=FAST)

    assert stats.by_provider == {"offline": N} and stats.fallback_reasons == {"unavailable": N}
    assert stats.breaker_opens >= 1
    # The server saw every failed attempt; the run says how many there were.
    assert stats.http_errors == server.count("chat") == stats.requests - server.count("embed")
    assert stats.first_failure.startswith("unavailable: openai POST") and "answered 500" in stats.first_failure
    assert '"internal error"' in stats.first_failure  # the server's own body
    assert log.said("WARNING", f"openai failed: {stats.first_failure}")  # once, in the server's own words
    assert len(log.said("WARNING", "openai failed:")) == 1
    reasons = {row["fallback_reason"] for row in enrichment_rows(settings)}
    assert all("answered 500" in reason for reason in reasons) and "circuit_open" not in reasons
    metadata = stats.as_metadata()
    assert metadata["first_failure"] == stats.first_failure and metadata["llm_answers"] == 0
    assert metadata["fallback_share"] == 1.0 and "fallback_alert" in metadata


def test_an_error_body_echoing_the_key_is_scrubbed(openai, server):
    server.require_api_key = "sk-the-right-one"  # our key is refused with 401 ...
    server.echo_authorization = True  # ... and the body repeats the header it got, as some proxies do
    settings = openai()
    insert_memories(settings, SAMPLE_TEXTS[:2])
    stats = enrich_pending(settings, log=Collector(), resilience=FAST)

    assert "answered 401" in stats.first_failure and "Bearer ***" in stats.first_failure
    stored = " ".join(row["fallback_reason"] for row in enrichment_rows(settings))
    everything = stored + str(stats.as_metadata())
    assert API_KEY not in everything and "0123456789" not in everything


def test_total_fallback_fails_the_warn_check_and_health_says_degraded_with_the_cause(openai, server, monkeypatch):
    from codex_dreams.commands.health import run_health

    server.set_mode("chat", "error")
    settings = openai(MAX_CONCURRENCY=1)
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home_path))  # undone after the test
    from codex_dreams.instance import ensure_instance

    ensure_instance(settings)
    insert_memories(settings, SAMPLE_TEXTS[:4])
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([memory_enrichment], resources=build_resources(settings), instance=instance)
    assert result.success  # the run itself succeeds: enrichment fell back, nothing broke ...
    [evaluation] = result.get_asset_check_evaluations()
    # ... but the check on the asset fails, as a warning, and says why
    assert evaluation.check_name == FALLBACK_CHECK and not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "100%" in evaluation.description and "answered 500" in evaluation.description

    report = run_health(settings)
    assert report["status"] == "degraded"
    [check] = [c for c in report["checks"] if c["name"] == "enrichment"]
    assert check["status"] == "warning" and "100% of the memories" in check["detail"]
    assert "answered 500" in check["detail"] and API_KEY not in json.dumps(report)


def test_healthy_enrichment_passes_the_check(openai, server):
    settings = openai()
    insert_memories(settings, SAMPLE_TEXTS[:3])
    result = dg.materialize([memory_enrichment], resources=build_resources(settings))
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed
    metadata = result.asset_materializations_for_node("memory_enrichment")[0].metadata
    assert metadata["llm_answers"].value == 3 and metadata["fallbacks"].value == 0
    assert metadata["structured_output"].value == "json_schema"


def test_health_verbose_names_the_model_the_server_does_not_list(openai, llama, make_settings):
    from codex_dreams.commands.health import run_health

    settings = openai(OPENAI_MODEL="gpt-4o-mini")  # llama-cpp-python answers under any name
    report = run_health(settings, verbose=True)
    [check] = [c for c in report["checks"] if c["name"] == "llm.models"]
    assert check["status"] == "warning" and report["status"] == "degraded"
    assert "OPENAI_MODEL 'gpt-4o-mini' is not among the models the server lists" in check["detail"]
    assert "OPENAI_EMBEDDING_MODEL 'gemma-3-270m-embed'" in check["detail"] and LLAMA_CPP_MODEL in check["detail"]

    # The file name the server lists (its path's last part) is a name it answers to.
    name = LLAMA_CPP_MODEL.rsplit("/", 1)[1]
    settings = make_settings(OPENAI_MODEL=name, OPENAI_EMBEDDING_MODEL=name)
    [check] = [c for c in run_health(settings, verbose=True)["checks"] if c["name"] == "llm.models"]
    assert check["status"] == "ok"


def test_ollama_models_match_with_their_implicit_latest_tag(make_settings, server):
    from codex_dreams.enrichment.health import model_check

    settings = make_settings(CODEX_LLM_PROVIDER="ollama", OLLAMA_URL=server.url, OLLAMA_MODEL="fake-chat",
                             EMBEDDING_MODEL="fake-embed")
    assert model_check(settings)[1] == "ok"
    settings = make_settings(OLLAMA_MODEL="llama3.2")
    name, status, detail = model_check(settings)
    assert status == "warning" and "OLLAMA_MODEL 'llama3.2'" in detail and "EMBEDDING_MODEL" not in detail


def test_default_concurrency_is_small_and_respected(openai, server):
    server.latency = 0.05
    settings = openai()  # MAX_CONCURRENCY not set
    assert settings.max_concurrency == 2
    insert_memories(settings, SAMPLE_TEXTS)
    enrich_pending(settings, resilience=FAST)
    assert 1 <= server.max_in_flight <= 2


def test_a_timed_out_request_closes_its_connection_so_the_server_can_stop(openai, server):
    server.set_mode("chat", "hang")
    server.hang_seconds = 30.0  # far beyond the client's timeout: only a closed connection ends it early
    settings = openai(OLLAMA_TIMEOUT=0.3, MAX_CONCURRENCY=1)
    [result] = enrich_texts(["Lunch with Ana in Porto."], settings, resilience=FAST)
    assert result.provider == "offline" and result.fallback_reason.startswith("unavailable:")
    deadline = time.monotonic() + 20
    while server.abandoned < server.count("chat") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.abandoned == server.count("chat") >= 1


def test_a_closed_provider_sends_nothing_more(openai, server):
    with build_remote_provider(openai()) as provider:
        provider.enrich("first")
    with pytest.raises(AbandonedError):
        provider.enrich("after close")
    assert server.count("chat") == 1


def test_reenrich_fallbacks_asks_the_llm_again_and_keeps_the_vectors(openai, server):
    server.set_mode("chat", "error")
    settings = openai()
    insert_memories(settings, SAMPLE_TEXTS[:4])
    enrich_pending(settings, resilience=replace(FAST, breaker_failure_threshold=50))  # embeddings get through
    before = {row["memory_id"]: row for row in enrichment_rows(settings)}
    assert all(row["provider"] == "offline" and row["embedding"] is not None for row in before.values())

    server.reset()  # the server is fixed: a plain run leaves the fallbacks alone (rows are final) ...
    assert enrich_pending(settings, resilience=FAST).pending == 0 and server.count() == 0
    # ... the tagged run (codex consolidate --type working --reenrich-fallbacks) asks again
    result = dg.materialize([memory_enrichment], resources=build_resources(settings),
                            tags={REENRICH_FALLBACKS_TAG: "true"})
    metadata = result.asset_materializations_for_node("memory_enrichment")[0].metadata
    assert metadata["llm_answers"].value == 4 and metadata["stored_fallback_share"].value == 0
    assert server.count("chat") == 4 and server.count("embed") == 0  # the stored vectors are kept
    for row in enrichment_rows(settings):
        assert row["provider"] == "openai" and row["fallback_reason"] is None
        assert row["embedding"] == before[row["memory_id"]]["embedding"]


def test_stored_fallbacks_keep_the_check_failing_until_reenriched(openai, server):
    server.set_mode("chat", "error")
    settings = openai()
    insert_memories(settings, SAMPLE_TEXTS[:4])
    enrich_pending(settings, resilience=FAST)
    server.reset()
    insert_memories(settings, ["One more memory, enriched fine."], prefix="n")
    stats = enrich_pending(settings, resilience=FAST)
    assert stats.fallbacks == 0 and stats.stored_fallback_share == 0.8
    alert = stats.fallback_alert()
    assert "80% of the stored memories" in alert and "--reenrich-fallbacks" in alert
    assert "answered 500" in alert  # the most common stored reason


def test_chat_and_embeddings_on_separate_servers_with_their_own_keys(openai, server, make_settings):
    with ProtocolServer() as embedder:
        server.require_api_key, embedder.require_api_key = API_KEY, "sk-embed-key"
        settings = openai(OPENAI_EMBEDDING_BASE_URL=embedder.openai_url, OPENAI_EMBEDDING_API_KEY="sk-embed-key")
        insert_memories(settings, SAMPLE_TEXTS[:3])
        stats = enrich_pending(settings, resilience=FAST)
        assert stats.by_provider == {"openai": 3} and stats.embedded == 3
        assert server.count("embed") == 0 and embedder.count("chat") == 0 and embedder.count("embed") == 1
        described = settings.describe()
        assert described["OPENAI_MODEL"] == "gemma-3-270m"
        assert described["OPENAI_EMBEDDING_MODEL"] == "gemma-3-270m-embed"
        assert described["OPENAI_EMBEDDING_BASE_URL"] == embedder.openai_url
        assert described["OPENAI_EMBEDDING_API_KEY"] == "***" and "sk-embed-key" not in repr(described)
    # Unset, the embedding server is the chat server (and its key).
    plain = make_settings(OPENAI_EMBEDDING_BASE_URL="", OPENAI_EMBEDDING_API_KEY="")
    assert plain.embedding_base_url == plain.openai_base_url
    assert plain.embedding_api_key.get_secret_value() == API_KEY


def test_a_changed_dimension_is_refused_with_one_warning(openai, server):
    settings = openai()
    insert_memories(settings, SAMPLE_TEXTS[:2])
    enrich_pending(settings, resilience=FAST)
    server.set_mode("embed", "wrong_dim")
    insert_memories(settings, SAMPLE_TEXTS[2:], prefix="n")
    log = Collector()
    stats = enrich_pending(settings, log=log, resilience=FAST)
    assert stats.embedded == 0 and stats.embeddings_pending == N - 2
    [warning] = log.said("WARNING", "17-d vectors but 16-d are stored")
    assert "gemma-3-270m-embed" in warning


def test_insights_narrative_works_through_the_negotiated_form(openai, llama, caplog):
    from codex_dreams.commands.insights import _narrate
    from codex_dreams.commands.insights import Insight

    settings = openai()
    with caplog.at_level(logging.INFO):
        narratives = _narrate(settings, [Insight("topic", "Gardening", "Often about the garden.", ["m1"], {})])
    assert [n.kind for n in narratives] == ["narrative"]
    assert [response_format_form(b) for b in llama.bodies("chat")] == ["json_schema", "json_object+schema"]
    assert memory_text(llama.bodies("chat")[-1]["messages"][1]["content"]).endswith("Often about the garden.")


def test_embeddings_that_all_fail_are_not_silent(openai, server):
    server.set_mode("embed", "error")
    settings = openai()
    insert_memories(settings, SAMPLE_TEXTS[:3])
    log = Collector()
    stats = enrich_pending(settings, log=log, resilience=replace(FAST, breaker_failure_threshold=50))
    assert stats.by_provider == {"openai": 3} and stats.embeddings_pending == 3
    [warning] = log.said("WARNING", "embeddings from 'gemma-3-270m-embed' failed: unavailable:")
    assert "answered 500" in warning
    assert "100% of the memories in this run (3 of 3) got no embedding" in stats.fallback_alert()


def test_recall_queries_pool_per_token_vectors_too_and_warn_once_per_process(openai, llama, caplog):
    from codex_dreams.enrichment import embed_texts

    settings = openai(OPENAI_EMBEDDING_MODEL="query-pooling-model")
    with caplog.at_level(logging.WARNING, logger="codex_dreams.enrichment.providers"):
        first = embed_texts(["coffee in Lisbon"], settings, resilience=FAST)
        second = embed_texts(["coffee in Lisbon"], settings, resilience=FAST)
    assert np.array_equal(first, second) and first.shape == (1, 16)
    assert len([r for r in caplog.records if "one vector per token" in r.getMessage()]) == 1


def test_reenrich_fallbacks_is_refused_for_runs_that_do_not_enrich(codex_home):
    from typer.testing import CliRunner

    from codex_dreams.cli.main import app

    result = CliRunner().invoke(app, ["consolidate", "--type", "short_term", "--reenrich-fallbacks"])
    assert result.exit_code == 2 and "--reenrich-fallbacks needs --type working or all" in result.output


@pytest.mark.parametrize("answer", [
    {"data": [{"index": 1, "embedding": [0.0, 2.0]}, {"index": 0, "embedding": [[1.0, 0.0], [3.0, 0.0]]}]},
    {"embeddings": [[[1.0, 0.0], [3.0, 0.0]], [0.0, 2.0]]},
    [[[1.0, 0.0], [3.0, 0.0]], [0.0, 2.0]],
])
def test_every_common_embedding_answer_shape_is_read(answer):
    from codex_dreams.enrichment.providers import embedding_lists, pool_token_vectors, validate_embeddings

    vectors, pooled = pool_token_vectors(embedding_lists(answer, 2, "test"), "test")
    assert pooled and np.allclose(validate_embeddings(vectors, 2, "test"), [[1.0, 0.0], [0.0, 1.0]])
    single, pooled = pool_token_vectors(embedding_lists({"embedding": [0.0, 3.0]}, 1, "test"), "test")
    assert not pooled and np.allclose(validate_embeddings(single, 1, "test"), [[0.0, 1.0]])


def test_a_server_refusing_every_form_falls_back_at_once_with_the_reason(openai, server):
    server.accepted_formats = frozenset({"text"})
    settings = openai(MAX_CONCURRENCY=1)
    insert_memories(settings, SAMPLE_TEXTS[:3])
    stats = enrich_pending(settings, resilience=FAST)
    assert server.count("chat") == 3  # the three forms, once; the other memories are not sent
    assert stats.fallback_reasons == {"rejected": 3} and stats.breaker_opens == 0
    assert stats.first_failure.startswith("rejected: openai refused every structured output form")
    assert "json_object: 400" in stats.first_failure and "response_format is not supported" in stats.first_failure
