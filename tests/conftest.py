"""Shared fixtures: every test gets its own CODEX_HOME (store, inbox, Dagster home) in a temp directory."""

import os
import sys
from pathlib import Path

import pytest

# dbt and dagster are invoked as executables next to the interpreter (the venv's bin).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

ISOLATED_VARIABLES = {
    # blank values override anything a developer's .env might set
    "POSTGRES_DB_URL": "",
    "CODEX_LLM_PROVIDER": "offline",
}
CLEARED_VARIABLES = ("DUCKDB_PATH", "OPENAI_API_KEY", "MAX_CONCURRENCY", "CODEX_TIMEZONE",
                     "OLLAMA_URL", "OLLAMA_MODEL", "EMBEDDING_MODEL", "OLLAMA_TIMEOUT", "OPENAI_BASE_URL",
                     "OPENAI_MODEL", "OPENAI_EMBEDDING_MODEL", "OPENAI_EMBEDDING_BASE_URL", "OPENAI_EMBEDDING_API_KEY",
                     "CODEX_PARAMS", "CODEX_RECALL_W_DENSE", "CODEX_RECALL_W_LEXICAL", "CODEX_RECALL_W_ASSOCIATIVE",
                     "CODEX_RECALL_W_CONTEXT", "CODEX_RECALL_W_STRENGTH")


@pytest.fixture
def codex_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "codex_home"
    monkeypatch.setenv("CODEX_HOME", str(home))
    for name, value in ISOLATED_VARIABLES.items():
        monkeypatch.setenv(name, value)
    for name in CLEARED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # Set (not just cleared) so that code exporting DAGSTER_HOME for Dagster is undone after the test.
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.chdir(tmp_path)  # no developer .env is read
    return home


@pytest.fixture
def settings(codex_home):
    from codex_dreams.settings import load_settings

    return load_settings()


@pytest.fixture
def store(settings):
    """A bootstrapped connection to the test's store (closed after the test)."""
    from codex_dreams.store import open_store

    with open_store(settings) as con:
        yield con


@pytest.fixture
def resources(settings):
    from codex_dreams.resources import build_resources

    return build_resources(settings)


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest():
    """Parse the dbt project once per session (a few seconds) so definitions load fast in every test."""
    from codex_dreams.dbt import ensure_manifest

    return ensure_manifest()
