"""Opening the DuckDB file: late, briefly, and with the packaged extensions.

DuckDB allows one read-write process per file; while it is held no other process can open the file at all.
`connect` therefore waits a bounded time for the lock and then says clearly that the store is busy.
Extensions come from the duckdb-extension-* wheels (nothing is downloaded at run time) and are installed
into a directory under CODEX_HOME.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from codex_dreams.errors import StoreBusyError  # noqa: F401  (re-exported)
from codex_dreams.store.schema import MIGRATIONS, SCHEMA_VERSION

PACKAGED_EXTENSIONS = ("postgres", "fts", "vss")


def duckdb_config(extension_dir: Path | None) -> dict:
    # custom_user_agent is set because dagster_duckdb's DuckDBResource adds its own ("dagster") unless the
    # config names one: DuckDB refuses a second in-process connection to a file whose config differs ("Can't
    # open a connection to same database file with a different configuration"), so open_store and the
    # resource must pass identical configs (e.g. `codex demo` reads the store in the process that ran the job).
    # dbt opens the file with the same config (profiles.yml `config_options`), so it shares the run's database
    # instance (see codex_dreams.resources.StoreResource); "" is DuckDB's default extension directory.
    config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
              "custom_user_agent": "codex-dreams", "extension_directory": ""}
    if extension_dir is not None:
        extension_dir.mkdir(parents=True, exist_ok=True)
        config["extension_directory"] = str(extension_dir)
    return config


def _is_lock_error(error: Exception) -> bool:
    text = str(error)
    return "Could not set lock" in text or "Conflicting lock" in text


def connect(path: Path | str, *, read_only: bool = False, extension_dir: Path | None = None,
            wait_seconds: float = 10.0) -> duckdb.DuckDBPyConnection:
    """Open the store, waiting up to `wait_seconds` for another process to release it."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=duckdb_config(extension_dir))
        except duckdb.IOException as error:
            if not _is_lock_error(error):
                raise
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"The memory store {path} is in use by another process (a pipeline run?); "
                    "try again when it finishes."
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def relation_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    """Whether a table or view `schema.name` exists (stages appear only once the pipeline has built them)."""
    return bool(con.execute(
        "select count(*) from (select schema_name, table_name as name from duckdb_tables() union all "
        "select schema_name, view_name from duckdb_views()) where schema_name = ? and name = ?",
        [schema, name],
    ).fetchone()[0])


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD a packaged extension, installing it from its wheel into the extension directory first if needed."""
    if name not in PACKAGED_EXTENSIONS:
        raise ValueError(f"unknown extension {name!r}")
    try:
        con.execute(f"load {name}")
    except duckdb.Error:
        import duckdb_extensions

        duckdb_extensions.import_extension(name, con=con)
        con.execute(f"load {name}")


def bootstrap(con: duckdb.DuckDBPyConnection) -> int:
    """Create or bring forward the schema; returns the schema version. Idempotent."""
    con.execute("create schema if not exists meta")
    con.execute(
        "create table if not exists meta.schema_version (version integer primary key, applied_at timestamp)"
    )
    applied = {row[0] for row in con.execute("select version from meta.schema_version").fetchall()}
    for version, statements in MIGRATIONS:
        if version in applied:
            continue
        con.execute("begin transaction")
        try:
            for statement in statements:
                con.execute(statement)
            con.execute("insert into meta.schema_version values (?, now() at time zone 'UTC')", [version])
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
    return SCHEMA_VERSION


@contextmanager
def open_store(settings=None, *, read_only: bool = False, wait_seconds: float = 10.0
               ) -> Iterator[duckdb.DuckDBPyConnection]:
    """A bootstrapped connection to the configured store, closed on exit."""
    if settings is None:
        from codex_dreams.settings import get_settings

        settings = get_settings()
    if not read_only:
        settings.ensure_dirs()
    con = connect(settings.database_path, read_only=read_only, extension_dir=settings.extension_dir,
                  wait_seconds=wait_seconds)
    try:
        if not read_only:
            bootstrap(con)
        yield con
    finally:
        con.close()
