"""The Dagster instance under DAGSTER_HOME, created by the project: no manual dagster.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from codex_dreams.settings import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, Settings

# One writer: every DuckDB-writing step shares a pool of limit 1, and runs are queued one at a time so a
# sensor burst during a long consolidation waits instead of failing on the file lock.
# Run monitoring (in the daemon) fails runs that never start and frees the pool slots of finished runs a
# minute after they end; a run whose process was killed mid-run is found by codex_dreams.automation.watchdog
# (the default run launcher cannot tell Dagster whether a run worker is alive).
INSTANCE_YAML = """\
# Written by codex_dreams.instance; edit freely. Sections missing from it are added, none is changed.
concurrency:
  pools:
    default_limit: 1
    granularity: op
  runs:
    max_concurrent_runs: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  max_resume_run_attempts: 0
  poll_interval_seconds: 60
  free_slots_after_run_end_seconds: 60
telemetry:
  enabled: false
"""


def ensure_instance(settings: Settings) -> Path:
    """Create DAGSTER_HOME and its dagster.yaml if missing, add the sections an older version did not write;
    export DAGSTER_HOME for Dagster itself."""
    home = settings.dagster_home_path
    home.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        with os.fdopen(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE), "w") as handle:
            handle.write(INSTANCE_YAML)
    else:
        _add_missing_sections(config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _add_missing_sections(config: Path) -> None:
    try:
        current = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError:
        return  # the user's file; Dagster itself will say what is wrong with it
    if not isinstance(current, dict):
        return
    wanted = yaml.safe_load(INSTANCE_YAML)
    missing = {key: value for key, value in wanted.items() if key not in current}
    if missing:
        with config.open("a") as handle:
            handle.write("\n# Added by codex_dreams.instance (a newer version):\n")
            handle.write(yaml.safe_dump(missing, sort_keys=False))
