"""The code location: it loads, has the stage groups, validates with the dagster CLI, keeps one DuckDB writer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

STAGE_GROUPS = {"sensory_input", "working_memory", "short_term_memory", "consolidation", "long_term_memory"}
WRITER_POOL = "duckdb_writer"
# Resources through which an op reaches the DuckDB file (dbt writes it too).
STORE_RESOURCES = {"duckdb", "dbt"}


@pytest.fixture(scope="module")
def defs():
    from codex_dreams.definitions import defs

    return defs


def _ops_touching_the_store(defs):
    graph = defs.resolve_asset_graph()
    for assets_def in graph.assets_defs:
        if not assets_def.is_executable:
            continue
        kinds = set().union(*(spec.kinds for spec in assets_def.specs)) if assets_def.specs else set()
        if assets_def.required_resource_keys & STORE_RESOURCES or "duckdb" in kinds:
            yield assets_def


def test_definitions_load_with_the_stage_groups(defs):
    groups = {spec.group_name for spec in defs.resolve_all_asset_specs()}
    assert STAGE_GROUPS <= groups, groups
    assert {"working_memory", "short_term_memory", "consolidation", "long_term_memory"} <= groups


def test_raw_memories_is_the_sensory_input(defs):
    from dagster import AssetKey

    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == AssetKey("raw_memories"))
    assert spec.group_name == "sensory_input"


def test_every_asset_has_a_meaningful_group_and_every_check_a_description(defs):
    """What the UI shows a new user: no stray `default` group (an undeclared dependency lands there with an
    empty lineage), and no asset check without a sentence saying what it checks."""
    from dagster import AssetKey

    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    assert sorted(k.to_user_string() for k, s in specs.items() if s.group_name in (None, "default")) == []
    stage_runs = specs[AssetKey(["meta", "stage_runs"])]
    assert stage_runs.group_name == "monitoring" and stage_runs.description
    checks = {spec.key.name: spec for a in defs.resolve_asset_graph().assets_defs for spec in a.check_specs}
    assert "stm_memories_column_contract" in checks and "assert_stm_episodes_cover_memories" in checks
    assert sorted(name for name, spec in checks.items() if not (spec.description or "").strip()) == []
    # a column contract's description lists its rules, with dbt's ref()/var() shown by name
    contract = checks["stm_memories_column_contract"].description
    assert "episode_id references stm_episodes.episode_id" in contract and "{{" not in contract


def test_every_asset_that_writes_duckdb_is_in_the_writer_pool(defs):
    assets = [a for a in _ops_touching_the_store(defs) if a.keys]
    assert assets, "no asset uses the store?"
    outside = sorted(f"{a.op.name} (pool={a.op.pool!r})" for a in assets if a.op.pool != WRITER_POOL)
    assert outside == [], f"assets that open the DuckDB file outside pool {WRITER_POOL!r}: {outside}"


def test_every_asset_check_that_opens_duckdb_is_in_the_writer_pool(defs):
    """A check step that opens the file beside a writer step (multiprocess executor) hits the file lock."""
    checks = [a for a in _ops_touching_the_store(defs) if not a.keys and a.check_keys]
    outside = sorted(f"{a.op.name} (pool={a.op.pool!r})" for a in checks if a.op.pool != WRITER_POOL)
    assert outside == [], f"asset checks that open the DuckDB file outside pool {WRITER_POOL!r}: {outside}"


def test_dagster_cli_validates_the_code_location(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "DAGSTER_HOME": str(tmp_path / "dagster_home"), "CODEX_HOME": str(tmp_path / "codex_home"),
           "POSTGRES_DB_URL": "", "DAGSTER_DISABLE_TELEMETRY": "1"}
    (tmp_path / "dagster_home").mkdir()
    done = subprocess.run([str(bin_dir / "dagster"), "definitions", "validate", "-m", "codex_dreams.definitions"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_ensure_instance_writes_a_one_writer_dagster_yaml(settings, monkeypatch):
    from codex_dreams.instance import ensure_instance

    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # restored after the test (ensure_instance exports it)
    home = ensure_instance(settings)
    assert home == settings.dagster_home_path and os.environ["DAGSTER_HOME"] == str(home)
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 1

    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:  # Dagster accepts it
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1

    # an edited file is kept
    (home / "dagster.yaml").write_text("# mine\n" + (home / "dagster.yaml").read_text())
    ensure_instance(settings)
    assert (home / "dagster.yaml").read_text().startswith("# mine\n")
