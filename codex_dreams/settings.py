"""Environment -> one validated settings object.

Variables use the seed's names where it has them (POSTGRES_DB_URL, DUCKDB_PATH, OLLAMA_URL, OLLAMA_MODEL,
EMBEDDING_MODEL, OLLAMA_TIMEOUT) plus CODEX_* for what is new. An optional `.env` in the working directory
is read too (real environment variables win). Validation happens once; a bad value raises `SettingsError`
with one sentence naming the variable. Secrets are `SecretStr` and URLs are shown through `redact_url`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from codex_dreams.errors import InputError

# A memory is a short text; anything longer is almost certainly a pasted document, not a memory.
MAX_MEMORY_CHARS = 20_000


# Everything under CODEX_HOME is the user's alone: memories, the Dagster instance (run logs quote them), logs.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077


def use_private_file_modes() -> None:
    """Make this process (and every process it starts) create files 0600 and directories 0700.

    A process-wide umask rather than a mode at each place a file is made: most files under CODEX_HOME are
    created by DuckDB (the store, its WAL, the recall snapshot), SQLite (the inbox, the recall log, Dagster's
    run, event and schedule storage), Dagster (compute logs) and dbt (target/, dbt.log), none of which takes a
    mode, and the daemon's processes and run workers inherit it. Called by the `codex` command before any
    command and by the Dagster code location; bits the user's umask already masks stay masked. The directories
    the project creates itself also get PRIVATE_DIR_MODE explicitly, which protects the files inside when
    another process (a library caller of `codex_dreams.api`) keeps a looser umask.
    """
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)


class SettingsError(InputError):
    """A configuration value is invalid; the message names the variable."""


def redact_url(url: str | None) -> str | None:
    """The URL with any password replaced by '***' (safe for logs, metadata and errors)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


# pydantic field name -> the environment variable a user sets
_ENV_NAMES = {
    "codex_home": "CODEX_HOME",
    "duckdb_path": "DUCKDB_PATH",
    "dagster_home": "DAGSTER_HOME",
    "postgres_db_url": "POSTGRES_DB_URL",
    "llm_provider": "CODEX_LLM_PROVIDER",
    "ollama_url": "OLLAMA_URL",
    "ollama_model": "OLLAMA_MODEL",
    "embedding_model": "EMBEDDING_MODEL",
    "ollama_timeout": "OLLAMA_TIMEOUT",
    "openai_base_url": "OPENAI_BASE_URL",
    "openai_api_key": "OPENAI_API_KEY",
    "openai_model": "OPENAI_MODEL",
    "openai_embedding_model": "OPENAI_EMBEDDING_MODEL",
    "openai_embedding_base_url": "OPENAI_EMBEDDING_BASE_URL",
    "openai_embedding_api_key": "OPENAI_EMBEDDING_API_KEY",
    "max_concurrency": "MAX_CONCURRENCY",
    "timezone": "CODEX_TIMEZONE",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    codex_home: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("codex-dreams")),
        validation_alias="CODEX_HOME",
    )
    duckdb_path: Path | None = Field(default=None, validation_alias="DUCKDB_PATH")
    dagster_home: Path | None = Field(default=None, validation_alias="DAGSTER_HOME")
    postgres_db_url: SecretStr | None = Field(default=None, validation_alias="POSTGRES_DB_URL")

    llm_provider: Literal["offline", "ollama", "openai"] = Field(
        default="offline", validation_alias="CODEX_LLM_PROVIDER"
    )
    ollama_url: str = Field(default="http://localhost:11434", validation_alias="OLLAMA_URL")
    ollama_model: str = Field(default="gpt-oss:20b", validation_alias="OLLAMA_MODEL")
    embedding_model: str = Field(default="nomic-embed-text", validation_alias="EMBEDDING_MODEL")
    ollama_timeout: float = Field(default=300.0, gt=0, validation_alias="OLLAMA_TIMEOUT")
    openai_base_url: str = Field(default="http://localhost:8000/v1", validation_alias="OPENAI_BASE_URL")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_model: str = Field(default="gpt-4o-mini", validation_alias="OPENAI_MODEL")
    openai_embedding_model: str = Field(
        default="text-embedding-3-small", validation_alias="OPENAI_EMBEDDING_MODEL"
    )
    # None: the chat server's URL and key (one server for both is the common case)
    openai_embedding_base_url: str | None = Field(default=None, validation_alias="OPENAI_EMBEDDING_BASE_URL")
    openai_embedding_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_EMBEDDING_API_KEY")
    # Local servers (llama.cpp, Ollama) run one or a few requests at a time: more in flight only queue there
    # and time out (docs/enrichment.md).
    max_concurrency: int = Field(default=2, ge=1, le=256, validation_alias="MAX_CONCURRENCY")
    # None: the timezone of the rhythm catalogue (schedules/rhythms.yaml, UTC by default)
    timezone: str | None = Field(default=None, validation_alias="CODEX_TIMEZONE")

    @field_validator("postgres_db_url", "openai_embedding_base_url", "openai_embedding_api_key", mode="before")
    @classmethod
    def _blank_is_none(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("postgres_db_url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr | None):
        if value is not None:
            scheme = urlsplit(value.get_secret_value()).scheme
            if scheme not in ("postgres", "postgresql"):
                raise ValueError("must start with postgresql://")
        return value

    @field_validator("ollama_url", "openai_base_url", "openai_embedding_base_url")
    @classmethod
    def _http_url(cls, value: str | None):
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if value is None or not value.strip():
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as UTC or Europe/Berlin") from None
        return value

    # Derived paths: everything the project keeps lives under CODEX_HOME unless overridden.
    @property
    def database_path(self) -> Path:
        return (self.duckdb_path or self.codex_home / "memory.duckdb").expanduser().resolve()

    @property
    def dagster_home_path(self) -> Path:
        return (self.dagster_home or self.codex_home / "dagster_home").expanduser().resolve()

    @property
    def inbox_path(self) -> Path:
        return self.codex_home.expanduser().resolve() / "inbox.sqlite"

    @property
    def logs_dir(self) -> Path:
        return self.codex_home.expanduser().resolve() / "logs"

    @property
    def run_dir(self) -> Path:
        return self.codex_home.expanduser().resolve() / "run"

    @property
    def dbt_target_dir(self) -> Path:
        """dbt's compiled SQL and partial-parse state for this store (one writer at a time uses it)."""
        return self.codex_home.expanduser().resolve() / "dbt_target"

    @property
    def extension_dir(self) -> Path:
        return self.codex_home.expanduser().resolve() / "duckdb_extensions"

    @property
    def embedding_base_url(self) -> str:
        """Where OpenAI-compatible embeddings are requested (OPENAI_EMBEDDING_BASE_URL, else OPENAI_BASE_URL)."""
        return self.openai_embedding_base_url or self.openai_base_url

    @property
    def embedding_api_key(self) -> SecretStr | None:
        """The key for the embedding server: its own if set, else the chat server's."""
        return self.openai_embedding_api_key or self.openai_api_key

    @property
    def postgres_url_redacted(self) -> str | None:
        return redact_url(self.postgres_db_url.get_secret_value()) if self.postgres_db_url else None

    def ensure_dirs(self) -> None:
        for path in (self.codex_home.expanduser(), self.database_path.parent, self.dagster_home_path,
                     self.logs_dir, self.run_dir):
            path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)

    def describe(self) -> dict:
        """Settings safe to print: secrets redacted."""
        return {
            "CODEX_HOME": str(self.codex_home.expanduser().resolve()),
            "DUCKDB_PATH": str(self.database_path),
            "DAGSTER_HOME": str(self.dagster_home_path),
            "POSTGRES_DB_URL": self.postgres_url_redacted,
            "CODEX_LLM_PROVIDER": self.llm_provider,
            "OLLAMA_URL": self.ollama_url,
            "OLLAMA_MODEL": self.ollama_model,
            "EMBEDDING_MODEL": self.embedding_model,
            "OLLAMA_TIMEOUT": self.ollama_timeout,
            "OPENAI_BASE_URL": redact_url(self.openai_base_url),
            "OPENAI_API_KEY": "***" if self.openai_api_key else None,
            "OPENAI_MODEL": self.openai_model,
            "OPENAI_EMBEDDING_MODEL": self.openai_embedding_model,
            "OPENAI_EMBEDDING_BASE_URL": redact_url(self.embedding_base_url),
            "OPENAI_EMBEDDING_API_KEY": "***" if self.embedding_api_key else None,
            "MAX_CONCURRENCY": self.max_concurrency,
            "CODEX_TIMEZONE": self.timezone,
        }


def _explain(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = first.get("loc", ("?",))[0]
    name = _ENV_NAMES.get(str(loc), str(loc))
    value = first.get("input")
    shown = "" if name in ("POSTGRES_DB_URL", "OPENAI_API_KEY", "OPENAI_EMBEDDING_API_KEY") else f" (got {value!r})"
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    return f"Invalid setting {name}: {message}{shown}."


def load_settings(**overrides) -> Settings:
    """Read and validate the settings; raise SettingsError with one clear sentence on a bad value."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(_explain(error)) from None


@lru_cache(maxsize=8)
def _cached(env_key: tuple) -> Settings:
    return load_settings()


def get_settings() -> Settings:
    """Settings for the current environment (re-read when a relevant variable changes, e.g. in tests)."""
    env_key = tuple(os.environ.get(name) for name in _ENV_NAMES.values())
    return _cached(env_key)
