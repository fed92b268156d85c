"""Fixtures for the enrichment tests: an isolated CODEX_HOME, settings from the environment, the protocol
server, a dead URL, and the ONNX model loaded once per session."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from enrichment_protocol_server import ProtocolServer  # noqa: E402

from codex_dreams import settings as settings_module  # noqa: E402


@pytest.fixture
def codex_home(tmp_path, monkeypatch) -> Path:
    for name in settings_module._ENV_NAMES.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the working directory
    home = tmp_path / "codex_home"
    monkeypatch.setenv("CODEX_HOME", str(home))
    return home


@pytest.fixture
def make_settings(codex_home, monkeypatch):
    """make_settings(CODEX_LLM_PROVIDER="ollama", ...) sets the variables and loads validated Settings."""

    def make(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        return settings_module.load_settings()

    return make


@pytest.fixture
def server():
    with ProtocolServer() as running:
        yield running


@pytest.fixture
def dead_url() -> str:
    """A localhost URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def minilm():
    """The process-wide MiniLM embedder, loaded once for the whole session."""
    from codex_dreams.enrichment.embeddings import offline_embedder

    embedder = offline_embedder()
    embedder.embed(["warm up"])
    return embedder
