"""What the clients send and how they read answers, against a real local HTTP server."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from enrichment_protocol_server import fake_embedding, fake_enrichment, memory_text
from enrichment_store_helpers import FAST, SAMPLE_TEXTS, insert_memories

from codex_dreams.enrichment import (
    EmbeddingUnavailable,
    embed_texts,
    enrich_pending,
    enrich_texts,
    enrichment_json_schema,
)
from codex_dreams.enrichment.providers import ENRICHMENT_MAX_TOKENS, SYSTEM_MESSAGE, build_remote_provider

API_KEY = "sk-test-0123456789-secret"


def _unit(vector):
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def ollama_settings(make_settings, server):
    return make_settings(CODEX_LLM_PROVIDER="ollama", OLLAMA_URL=server.url, OLLAMA_MODEL="fake-chat:7b",
                         EMBEDDING_MODEL="fake-embed", OLLAMA_TIMEOUT=5, MAX_CONCURRENCY=4)


@pytest.fixture
def openai_settings(make_settings, server):
    return make_settings(CODEX_LLM_PROVIDER="openai", OPENAI_BASE_URL=server.openai_url, OPENAI_MODEL="fake-gpt",
                         OPENAI_EMBEDDING_MODEL="fake-embedding-3", OPENAI_API_KEY=API_KEY, OLLAMA_TIMEOUT=5,
                         MAX_CONCURRENCY=4)


def test_ollama_chat_and_embed_requests(ollama_settings, server):
    texts = SAMPLE_TEXTS[:3]
    results = enrich_texts(texts, ollama_settings, resilience=FAST)

    chats = server.bodies("chat")
    assert len(chats) == 3 and {r.path for r in server.requests} == {"/api/chat", "/api/embed"}
    for body in chats:
        assert body["model"] == "fake-chat:7b"
        assert body["stream"] is False
        assert body["format"] == enrichment_json_schema()
        assert body["options"]["num_predict"] == ENRICHMENT_MAX_TOKENS
        assert body["messages"][0] == {"role": "system", "content": SYSTEM_MESSAGE}
        assert "emotional_salience" in body["messages"][-1]["content"]  # the instructions travel with the memory
    assert sorted(memory_text(body["messages"][-1]["content"]) for body in chats) == sorted(texts)
    embeds = server.bodies("embed")
    assert embeds == [{"model": "fake-embed", "input": texts}]

    for text, result in zip(texts, results):
        assert result.provider == "ollama" and result.fallback_reason is None
        assert result.enrichment.model_dump() == fake_enrichment(text)
        assert result.embedding_model == "fake-embed"
        assert np.allclose(result.embedding, _unit(fake_embedding(text, 16)), atol=1e-6)


def test_openai_requests_carry_schema_model_and_bearer_key(openai_settings, server):
    server.require_api_key = API_KEY
    texts = SAMPLE_TEXTS[:3]
    results = enrich_texts(texts, openai_settings, resilience=FAST)

    assert {r.path for r in server.requests} == {"/v1/chat/completions", "/v1/embeddings"}
    assert all(r.headers["authorization"] == f"Bearer {API_KEY}" for r in server.requests)
    for body in server.bodies("chat"):
        assert body["model"] == "fake-gpt"
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"] == enrichment_json_schema()
        assert body["response_format"]["json_schema"]["strict"] is True
        assert body["max_tokens"] == ENRICHMENT_MAX_TOKENS
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert "egocentric_locations" in body["messages"][1]["content"]
    assert server.bodies("embed") == [{"model": "fake-embedding-3", "input": texts, "encoding_format": "float"}]
    # The server lists embeddings in reverse; the client must order them by `index`.
    for text, result in zip(texts, results):
        assert result.provider == "openai"
        assert result.enrichment.model_dump() == fake_enrichment(text)
        assert np.allclose(result.embedding, _unit(fake_embedding(text, 16)), atol=1e-6)


def test_plain_json_object_server_gets_the_schema_in_the_user_message(openai_settings, server, make_settings):
    settings = make_settings(MAX_CONCURRENCY=1)
    server.accepted_formats = frozenset({"json_object"})  # refuses json_schema and a json_object schema (400)
    results = enrich_texts(SAMPLE_TEXTS[:3], settings, resilience=FAST)

    forms = [body["response_format"] for body in server.bodies("chat")]
    assert forms[0]["type"] == "json_schema" and forms[1] == {"type": "json_object", "schema": enrichment_json_schema()}
    assert forms[2:] == [{"type": "json_object"}] * 3  # found once, then used for every memory
    user = server.bodies("chat")[2]["messages"][1]["content"]
    assert "JSON schema" in user and '"importance"' in user and memory_text(user) == SAMPLE_TEXTS[0]
    assert [r.provider for r in results] == ["openai"] * 3


def test_list_models_on_both_apis(ollama_settings, openai_settings, server):
    with build_remote_provider(ollama_settings) as provider:
        assert "fake-chat:latest" in provider.list_models()
    with build_remote_provider(openai_settings) as provider:
        assert "fake-embed" in provider.list_models()
    assert [r.path for r in server.requests] == ["/api/tags", "/v1/models"]


def test_embed_texts_remote_is_normalised_and_never_substituted(ollama_settings, server, make_settings, dead_url):
    vectors = embed_texts(SAMPLE_TEXTS[:2], ollama_settings, resilience=FAST)
    assert vectors.shape == (2, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)

    down = make_settings(OLLAMA_URL=dead_url)
    with pytest.raises(EmbeddingUnavailable):
        embed_texts(["query"], down, resilience=FAST)


def test_api_key_never_appears_in_errors_metadata_or_logs(openai_settings, server, caplog):
    server.require_api_key = "sk-a-different-key"  # every call is refused with 401
    insert_memories(openai_settings, SAMPLE_TEXTS[:4])
    messages = []

    class Collector:
        def info(self, msg, *args):
            messages.append(msg % args if args else msg)

        warning = info

    with caplog.at_level(logging.DEBUG):
        stats = enrich_pending(openai_settings, log=Collector(), resilience=FAST)
        with pytest.raises(EmbeddingUnavailable) as error:
            embed_texts(["query"], openai_settings, resilience=FAST)

    assert stats.fallback_reasons.get("rejected", 0) + stats.fallback_reasons.get("circuit_open", 0) == 4
    everything = " ".join([str(stats.as_metadata()), str(error.value), caplog.text, *messages, repr(stats)])
    assert API_KEY not in everything and "0123456789" not in everything
    with build_remote_provider(openai_settings) as provider:
        assert API_KEY not in repr(provider)
