"""Codex Dreams: a biologically-inspired long-term memory on Dagster, dbt and DuckDB."""

__version__ = "0.3.0"
