"""Fixtures of the recall tests (the scripted store itself lives in `recall_store.py`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `import recall_store` from any test module here

from recall_store import CORPUS, LINKS, publish, write_store  # noqa: E402


@pytest.fixture(scope="session")
def corpus_vectors(tmp_path_factory) -> np.ndarray:
    """MiniLM embeddings of CORPUS (embed_texts with the offline provider), computed once per session."""
    from codex_dreams.enrichment import embed_texts
    from codex_dreams.settings import load_settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODEX_HOME", str(tmp_path_factory.mktemp("embed_home")))
        mp.setenv("CODEX_LLM_PROVIDER", "offline")
        settings = load_settings()
        return embed_texts([m.text for m in CORPUS], settings)


@pytest.fixture
def recall_store(settings, corpus_vectors):
    """The scripted corpus with embeddings and links, and a published snapshot; returns the settings."""
    write_store(settings, CORPUS, corpus_vectors, LINKS)
    publish(settings)
    return settings


@pytest.fixture
def engine(recall_store):
    from codex_dreams.retrieval.engine import Recaller

    recaller = Recaller(recall_store)
    yield recaller
    recaller.close()


@pytest.fixture(scope="session")
def query_schema() -> dict:
    from importlib import resources

    return json.loads(resources.files("codex_dreams.retrieval").joinpath("query_result.schema.json").read_text())
