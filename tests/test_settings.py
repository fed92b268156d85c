import pytest

from codex_dreams.settings import SettingsError, load_settings, redact_url


def test_defaults_live_under_codex_home(settings, codex_home):
    assert settings.database_path == (codex_home / "memory.duckdb").resolve()
    assert settings.dagster_home_path == (codex_home / "dagster_home").resolve()
    assert settings.inbox_path.parent == codex_home.resolve()
    assert settings.llm_provider == "offline"
    assert settings.postgres_db_url is None


def test_duckdb_path_overrides_the_store_location(codex_home, monkeypatch, tmp_path):
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "elsewhere" / "m.duckdb"))
    assert load_settings().database_path == (tmp_path / "elsewhere" / "m.duckdb").resolve()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("OLLAMA_TIMEOUT", "soon", "Invalid setting OLLAMA_TIMEOUT"),
        ("OLLAMA_TIMEOUT", "-3", "Invalid setting OLLAMA_TIMEOUT"),
        ("CODEX_LLM_PROVIDER", "gpt", "Invalid setting CODEX_LLM_PROVIDER"),
        ("OLLAMA_URL", "localhost:11434", "Invalid setting OLLAMA_URL: must be an http:// or https:// URL"),
        ("MAX_CONCURRENCY", "0", "Invalid setting MAX_CONCURRENCY"),
        ("CODEX_TIMEZONE", "Mars/Olympus", "Invalid setting CODEX_TIMEZONE"),
        ("POSTGRES_DB_URL", "mysql://u:pw@h/db", "Invalid setting POSTGRES_DB_URL: must start with postgresql://"),
    ],
)
def test_a_bad_value_gets_one_sentence_naming_the_variable(codex_home, monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_a_bad_postgres_url_never_echoes_its_password(codex_home, monkeypatch):
    monkeypatch.setenv("POSTGRES_DB_URL", "mysql://user:hunter2@db/codex")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_env_file_is_read_and_real_environment_wins(codex_home, monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("OLLAMA_MODEL=llama3.2\nOLLAMA_TIMEOUT=12\n")
    monkeypatch.setenv("OLLAMA_TIMEOUT", "45")
    loaded = load_settings()
    assert loaded.ollama_model == "llama3.2"
    assert loaded.ollama_timeout == 45.0


def test_describe_redacts_secrets(codex_home, monkeypatch):
    monkeypatch.setenv("POSTGRES_DB_URL", "postgresql://codex:s3cret@db.example:5432/codex_db")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-123")
    described = load_settings().describe()
    text = repr(described)
    assert "s3cret" not in text and "sk-live-123" not in text
    assert described["POSTGRES_DB_URL"] == "postgresql://codex:***@db.example:5432/codex_db"


def test_redact_url_keeps_urls_without_password():
    assert redact_url("postgresql://codex@localhost/codex_db") == "postgresql://codex@localhost/codex_db"
    assert redact_url("postgresql://u:p%40ss@h:1/d") == "postgresql://u:***@h:1/d"


def test_codex_params_overrides_reach_python_and_dbt_alike(monkeypatch, codex_home):
    """CODEX_PARAMS overrides the dbt vars for the Python cycles and the dbt models (--vars) alike, and gives the
    views another fingerprint (their SQL embeds the vars)."""
    from codex_dreams.dbt import dbt_vars
    from codex_dreams.params import biological_params

    plain = dbt_vars()
    monkeypatch.setenv("CODEX_PARAMS", '{"gradual_forgetting_rate": 1.0, "working_memory_capacity": 3}')
    assert biological_params()["gradual_forgetting_rate"] == 1.0
    assert biological_params({"working_memory_capacity": 5})["working_memory_capacity"] == 5  # explicit wins
    overridden = dbt_vars()
    assert overridden["gradual_forgetting_rate"] == 1.0 and overridden["working_memory_capacity"] == 3
    assert overridden["project_fingerprint"] != plain["project_fingerprint"]


@pytest.mark.parametrize("value, fragment", [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"no_such_param": 1}', "no_such_param"),
])
def test_a_bad_codex_params_is_one_clear_sentence(monkeypatch, value, fragment):
    from codex_dreams.params import biological_params
    from codex_dreams.settings import SettingsError

    monkeypatch.setenv("CODEX_PARAMS", value)
    with pytest.raises(SettingsError, match="CODEX_PARAMS") as raised:
        biological_params()
    assert fragment in str(raised.value)
