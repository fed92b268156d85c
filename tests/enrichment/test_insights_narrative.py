"""With an LLM configured, `codex insights` adds narrative insights written by the LLM over HTTP; a dead
server leaves the extractive insights standing."""

from enrichment_store_helpers import SAMPLE_TEXTS, insert_memories

from codex_dreams.enrichment import enrich_pending
from codex_dreams.commands.insights import generate_insights


def _store_with_memories(settings):
    insert_memories(settings, SAMPLE_TEXTS * 2)
    enrich_pending(settings)


def test_llm_narrates_the_findings(make_settings, server):
    settings = make_settings(CODEX_LLM_PROVIDER="ollama", OLLAMA_URL=server.url, OLLAMA_MODEL="fake-chat",
                             EMBEDDING_MODEL="fake-embed")
    _store_with_memories(settings)
    calls_before = server.count("chat")
    report = generate_insights(settings, days=30)
    narratives = [i for i in report["insights"] if i["kind"] == "narrative"]
    assert len(narratives) == 1
    assert narratives[0]["provenance"] == {"method": "llm", "provider": "ollama"}
    assert server.count("chat") == calls_before + 1
    [body] = server.bodies("chat")[-1:]
    assert "insights" in body["format"]["properties"]
    assert any(i["kind"] != "narrative" for i in report["insights"])  # the extractive findings remain


def test_a_dead_llm_leaves_the_extractive_insights(make_settings, dead_url):
    settings = make_settings(CODEX_LLM_PROVIDER="ollama", OLLAMA_URL=dead_url, OLLAMA_TIMEOUT="1")
    _store_with_memories(settings)
    report = generate_insights(settings, days=30)
    assert report["insights"]
    assert all(i["kind"] != "narrative" for i in report["insights"])
