"""Secrets and files (issue "Reliability", point 8).

A run fails on purpose with a password in POSTGRES_DB_URL (nothing listens on port 1, so the source sync fails) and
an OpenAI-compatible API key set (nothing listens on port 9 either). Then every command a user would reach for
runs: remember, import, consolidate, health, config, query, insights, metrics, daemon logs. Neither secret, nor
its URL-encoded forms, appears in their output, their errors, or any file under CODEX_HOME: the DuckDB store and
the recall snapshot (read through DuckDB too, which compresses strings), SQLite files (inbox, recall log, Dagster's
run, event and schedule storage), Dagster's compute logs, dbt's target and logs. And everything under CODEX_HOME is
the user's alone: files 0600 or stricter, directories 0700 or stricter, although the commands start with a umask
that lets the group and others read.

The commands run as subprocesses through the installed `codex` entry point, as a user runs them.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote, quote_plus

import duckdb
import pytest

from codex_dreams.settings import _ENV_NAMES

CODEX = Path(sys.executable).with_name("codex")
PASSWORD = "S3cr3t-Pa55word"
API_KEY = "sk-test-DoNotLeak-12345"
POSTGRES_URL = f"postgresql://codex:{PASSWORD}@127.0.0.1:1/codex_db"  # nothing listens on port 1
REDACTED_URL = "postgresql://codex:***@127.0.0.1:1/codex_db"
SECRETS = {"POSTGRES_DB_URL": POSTGRES_URL, "CODEX_LLM_PROVIDER": "openai", "OPENAI_API_KEY": API_KEY,
           "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}  # port 9: discard, nothing answers
LOOSE_UMASK = 0o002  # what the commands start with: group- and world-readable files unless they say otherwise


def secret_forms() -> list[bytes]:
    """Each secret as written, percent-encoded, and in the encodings a file might hold text in."""
    forms = set()
    for secret in (PASSWORD, API_KEY):
        for text in (secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]):
            forms.update({text.encode("utf-8"), text.encode("utf-16-le"), text.encode("utf-16-be")})
    return sorted(forms)


def clean_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_NAMES.values()}
    env.update({"CODEX_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"), "POSTGRES_DB_URL": "",
                "CODEX_LLM_PROVIDER": "offline", "DAGSTER_DISABLE_TELEMETRY": "1",
                "PATH": f"{CODEX.parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    return env


def codex(env: dict, cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(CODEX), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            umask=LOOSE_UMASK)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    """CODEX_HOME after a few memories, a consolidation whose source sync and LLM fail, and every command after
    it; returns (CODEX_HOME, {command: CompletedProcess})."""
    work = tmp_path_factory.mktemp("secrets")
    home = work / "codex_home"
    seed = work / "seed.jsonl"
    seed.write_text("".join(json.dumps({"content": text, "created_at": f"2024-05-0{i + 1}T09:00:00Z"}) + "\n"
                            for i, text in enumerate(["Coffee with Ana at the harbour", "Walked the dog by the river",
                                                      "Booked the ferry to Hydra"])))
    loaded = codex(clean_env(home), work, "import", str(seed))  # before PostgreSQL is configured: the embedded store
    assert loaded.returncode == 0, loaded.stderr
    env = {**clean_env(home), **SECRETS}
    (work / "later.jsonl").write_text('{"content": "Written while PostgreSQL is down"}\n')
    commands = {
        "remember": ("remember", "Written while PostgreSQL is down"),
        "import": ("import", str(work / "later.jsonl")),
        "consolidate": ("consolidate", "--type", "all", "--json"),
        "health": ("health", "--verbose", "--json"),
        "config": ("config",),
        "config --json": ("config", "--json"),
        "query": ("query", "--text", "coffee at the harbour", "--json"),
        "insights": ("insights", "--json"),
        "metrics": ("metrics", "--json"),
        "daemon logs": ("daemon", "logs", "--lines", "500"),
    }
    return home, {name: codex(env, work, *args) for name, args in commands.items()}


def test_writing_to_an_unreachable_postgres_fails_in_one_line_without_the_password(failed_run):
    _, results = failed_run
    for name in ("remember", "import"):
        result = results[name]
        assert result.returncode == 1, (name, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith(f"Error: cannot reach PostgreSQL at {REDACTED_URL}: "), line
        assert result.stdout == ""


def test_the_failing_run_reports_its_failures_redacted(failed_run):
    _, results = failed_run
    consolidate = results["consolidate"]
    summary = json.loads(consolidate.stdout)
    assert summary["job"] == "full_cycle_job"
    # the sync was tried and failed, and says so with the password redacted; so was the LLM
    assert f"cannot attach PostgreSQL at {REDACTED_URL}" in consolidate.stderr
    assert "http://127.0.0.1:9/v1" in consolidate.stderr
    health = json.loads(results["health"].stdout)
    checks = {check["name"]: check for check in health["checks"]}
    assert checks["source.postgres"]["status"] == "critical"
    assert REDACTED_URL in checks["source.postgres"]["detail"]
    assert results["health"].returncode == health["exit_code"] == 2
    described = json.loads(results["config --json"].stdout)
    assert described["POSTGRES_DB_URL"] == REDACTED_URL and described["OPENAI_API_KEY"] == "***"
    assert f"POSTGRES_DB_URL={REDACTED_URL}" in results["config"].stdout.splitlines()
    for name in ("query", "insights", "metrics", "daemon logs"):
        assert results[name].returncode == 0, (name, results[name].stderr)


def test_no_secret_in_any_output_error_or_file_under_codex_home(failed_run):
    home, results = failed_run
    forms = secret_forms()
    for name, result in results.items():
        for stream in (result.stdout, result.stderr):
            leaked = [form for form in forms if form in stream.encode("utf-8")]
            assert not leaked, f"`codex {name}` printed {leaked[0]!r}"
    files = [path for path in home.rglob("*") if path.is_file()]
    kinds = {path.suffix for path in files}
    # the scan covers what matters: the store, Dagster's SQLite storage and compute logs, dbt's files, the snapshot
    assert {".duckdb", ".db", ".sqlite", ".yaml", ".log", ".sql", ".npy", ".out", ".err"} <= kinds, kinds
    assert any("compute_logs" in path.parts for path in files)
    for path in files:
        for where, data in readable_contents(path):
            leaked = [form for form in forms if form in data]
            assert not leaked, f"{where} holds {leaked[0]!r}"


def readable_contents(path: Path):
    """(where, bytes) for a file: its bytes; for a zip (.npz) each member; for a DuckDB database (whose pages
    compress strings) every value of every table, read through DuckDB."""
    data = path.read_bytes()
    yield str(path), data
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                yield f"{path}!{member}", archive.read(member)
    if data[8:12] == b"DUCK":  # the DuckDB file header
        with duckdb.connect(str(path), read_only=True) as con:
            tables = con.execute("select schema_name, table_name from duckdb_tables() "
                                 "where database_name = current_database()").fetchall()
            for schema, table in tables:
                rows = con.execute(f'select * from "{schema}"."{table}"').fetchall()
                yield f"{path}:{schema}.{table}", repr(rows).encode("utf-8")


def test_files_and_directories_under_codex_home_are_user_only(failed_run):
    home, _ = failed_run
    loose = []
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        allowed = 0o700 if path.is_dir() else 0o600
        if mode & ~allowed:
            loose.append(f"{oct(mode)} {path.relative_to(home.parent)}")
    assert not loose, "\n".join(loose)
    assert len(list(home.rglob("*"))) > 50  # the store, Dagster's storage, dbt, the snapshot, logs


def test_the_python_api_creates_codex_home_and_the_inbox_user_only(tmp_path):
    """A library caller keeps its own umask; the directory and the inbox the API creates are private anyway."""
    home = tmp_path / "api_home"
    result = subprocess.run([sys.executable, "-c", "import codex_dreams as codex; codex.remember('From the API')"],
                            env=clean_env(home), cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            umask=0o022)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    sqlite_files = sorted(home.glob("inbox.sqlite*"))
    assert sqlite_files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in sqlite_files), sqlite_files


def test_the_dagster_code_location_makes_its_processes_private(tmp_path):
    """Code servers and run workers load codex_dreams.definitions: importing it sets the private umask, also when
    Dagster was started some other way than by `codex` (e.g. `dagster dev -m codex_dreams.definitions`)."""
    script = "import os, codex_dreams.definitions; print(oct(os.umask(0o022)))"
    result = subprocess.run([sys.executable, "-c", script], env=clean_env(tmp_path / "home"), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, umask=LOOSE_UMASK)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0o77"
