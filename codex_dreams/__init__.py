"""Codex Dreams: a biologically-inspired long-term memory on Dagster, dbt and DuckDB.

The Python API mirrors the `codex` command (see codex_dreams.api):

    import codex_dreams as codex
    codex.remember("Coffee with Priya at Kestrel café", metadata={"people": ["Priya"]})
    codex.consolidate("all")
    for memory in codex.recall("who did I have coffee with?", k=5, explain=True):
        print(memory.score, memory.content)
"""

from codex_dreams.api import consolidate, export, health, import_file, insights, metrics, recall, remember

__version__ = "0.3.0"
__all__ = ["consolidate", "export", "health", "import_file", "insights", "metrics", "recall", "remember"]
