"""DuckDB store: connections, extensions and the schema bootstrap."""

from codex_dreams.store.duckdb_store import (
    StoreBusyError,
    bootstrap,
    connect,
    duckdb_config,
    load_extension,
    open_store,
    relation_exists,
)

__all__ = ["StoreBusyError", "bootstrap", "connect", "duckdb_config", "load_extension", "open_store", "relation_exists"]
