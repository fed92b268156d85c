"""Dagster resources, built from the settings: DuckDB and dbt on the same file."""

from __future__ import annotations

from dagster_duckdb import DuckDBResource

from codex_dreams.dbt import dbt_resource
from codex_dreams.settings import Settings, get_settings
from codex_dreams.store import duckdb_config


def build_resources(settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    return {
        "duckdb": DuckDBResource(
            database=str(settings.database_path),
            connection_config=duckdb_config(settings.extension_dir),
        ),
        "dbt": dbt_resource(),
    }
