"""Dagster resources, built from the settings: DuckDB and dbt on the same file."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import PrivateAttr

from codex_dreams.dbt import dbt_resource
from codex_dreams.settings import Settings, get_settings
from codex_dreams.store import connect, duckdb_config


class StoreResource(DuckDBResource):
    """The DuckDB store, held open for a whole run: the first step that asks for a connection opens the
    database (waiting for the file lock like every `codex` writer), every step then gets its own connection
    to that one instance, and the run's end closes it. Steps no longer pay an open and a close each, and the
    buffer cache stays warm from one step to the next. dbt, in the same process, opens the file with the
    same config (profiles.yml) and so shares the instance. Outside a run (no setup), each connection opens
    and closes the file as DuckDBResource does."""

    _in_run: bool = PrivateAttr(default=False)
    _database: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._in_run = True

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._in_run = False
        self.release()

    def release(self) -> None:
        """Close the run's instance before a long wait outside the store (an LLM provider's calls), so other
        processes can use the file meanwhile; the next connection reopens it."""
        if self._database is not None:
            self._database.close()
            self._database = None

    def _open(self) -> duckdb.DuckDBPyConnection:
        directory = self.connection_config.get("extension_directory")
        return connect(self.database, extension_dir=Path(directory) if directory else None)

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self._in_run:
            con = self._open()
            try:
                yield con
            finally:
                con.close()
            return
        if self._database is None:
            self._database = self._open()
        con = self._database.cursor()
        try:
            yield con
        finally:
            con.close()


def build_resources(settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    return {
        "duckdb": StoreResource(
            database=str(settings.database_path),
            connection_config=duckdb_config(settings.extension_dir),
        ),
        "dbt": dbt_resource(settings),
    }
