"""Recall: dense + lexical + associative search over the snapshot the pipeline publishes (docs/recall.md).

- `snapshot.py`: build and publish `$CODEX_HOME/recall/<version>/` (the `recall_snapshot` asset calls it)
- `engine.py`: `Recaller` - fusion, explanations, logging; `codex_dreams.api.recall` is the front door
- `lexical.py`, `graph.py`: BM25 over the fts index, spreading activation over the association graph
- `log.py`: the recall log and its drain into long_term_memory.access_log (the testing effect)
- `asset.py`: the Dagster assets `long_term_memory/access_log` and `recall_snapshot`
- `cli.py`: `codex query`

Importing this package imports nothing else (the CLI path stays free of Dagster and dbt).
"""
