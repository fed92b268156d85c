"""The Dagster instance under DAGSTER_HOME, created by the project: no manual dagster.yaml."""

from __future__ import annotations

import os
from pathlib import Path

from codex_dreams.settings import Settings

# One writer: every DuckDB-writing step shares a pool of limit 1, and runs are queued one at a time so a
# sensor burst during a long consolidation waits instead of failing on the file lock.
INSTANCE_YAML = """\
# Written by codex_dreams.instance; edit freely, it is only created when missing.
concurrency:
  pools:
    default_limit: 1
    granularity: op
  runs:
    max_concurrent_runs: 1
telemetry:
  enabled: false
"""


def ensure_instance(settings: Settings) -> Path:
    """Create DAGSTER_HOME and its dagster.yaml if missing; export DAGSTER_HOME for Dagster itself."""
    home = settings.dagster_home_path
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
