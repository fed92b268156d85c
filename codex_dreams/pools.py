"""Names shared by the stages, the dbt wiring and the run watchdog, in a module that imports nothing."""

# Every step that writes the DuckDB file runs in this Dagster pool of limit 1 (one writer at a time).
DUCKDB_WRITER_POOL = "duckdb_writer"
# The owners shown on every stage asset in the UI.
STAGE_OWNERS = ["team:codex-dreams"]
