"""Crash safety at every stage: `codex consolidate --type all` is killed with SIGKILL (its whole process group)
while enrichment, a dbt build, a consolidation cycle or the recall snapshot runs, then run again. The re-run
finishes, and the store equals one that was never killed, for the same memories and the same cycle keys: no
memory lost or duplicated, no link strengthened twice (the ledger has no repeats), the DuckDB file opens, and
the recall snapshot is intact. A killed `codex import` re-imported gives exactly the file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import dagster as dg
import pytest

pytestmark = pytest.mark.slow

CODEX = str(Path(sys.executable).with_name("codex"))
MEMORIES = 80  # enough that each step takes a moment, few enough that a run is quick


def _env(home: Path) -> dict:
    env = {**os.environ, "CODEX_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"),
           "CODEX_RHYTHMS": "off", "POSTGRES_DB_URL": "", "CODEX_LLM_PROVIDER": "offline"}
    env.pop("DUCKDB_PATH", None)
    return env


def _memories_file(tmp_path: Path) -> Path:
    lines = resources.files("codex_dreams.data").joinpath("demo_memories.jsonl").read_text().splitlines()
    path = tmp_path / "memories.jsonl"
    path.write_text("\n".join(lines[:MEMORIES]) + "\n")
    return path


def _codex(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([CODEX, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _state(home: Path) -> dict:
    """What a run leaves, in a form two stores can be compared by (no wall-clock times, no run ids)."""
    import duckdb

    from codex_dreams.retrieval.snapshot import current_version, read_manifest, recall_dir, verify_files
    from codex_dreams.settings import load_settings

    con = duckdb.connect(str(home / "memory.duckdb"), read_only=True)
    try:
        def rows(sql: str) -> list:
            return sorted(con.execute(sql).fetchall(), key=repr)

        state = {
            "memories": rows("select id, content, created_at from raw.memories"),
            "enrichment": rows("select memory_id, provider, model from enriched.memory_enrichment"),
            "ledger": rows("select cycle_type, cycle_key from consolidation.cycle_ledger"),
            "links": rows("select memory_a, memory_b, link_type, round(strength, 9) from consolidation.associations"),
            "consolidation": rows("select memory_id, round(consolidation_strength, 9), replay_count, "
                                  "consolidated_at from consolidation.memory_consolidation"),
            "long_term": rows("select memory_id, category from long_term_memory.ltm_memories"),
        }
    finally:
        con.close()
    settings_env = {"CODEX_HOME": str(home)}
    old = {key: os.environ.get(key) for key in settings_env}
    os.environ.update(settings_env)
    try:
        settings = load_settings()
        version = current_version(settings)
        path = recall_dir(settings) / version
        manifest = read_manifest(path)
        verify_files(path, manifest)  # the published snapshot is whole, never torn
        state["snapshot_memories"] = manifest["memories"]
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return state


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The same memories, imported and consolidated once, never killed."""
    home = tmp_path_factory.mktemp("reference")
    env = _env(home)
    source = _memories_file(home)
    assert _codex(env, "import", str(source)).returncode == 0
    result = _codex(env, "consolidate", "--type", "all", "--json")
    assert result.returncode == 0, result.stderr
    return _state(home)


def _running_step(instance: dg.DagsterInstance, prefix: str) -> str | None:
    """The id of a run whose step `prefix...` has started and not finished."""
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run_id = record.dagster_run.run_id
        events = instance.get_records_for_run(run_id, of_type={
            dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.STEP_FAILURE}).records
        started, finished = set(), set()
        for event in events:
            entry = event.event_log_entry.dagster_event
            (started if entry.event_type == dg.DagsterEventType.STEP_START else finished).add(entry.step_key)
        if any(step.startswith(prefix) for step in started - finished):
            return run_id
    return None


@pytest.mark.parametrize("step", ["memory_enrichment", "codex_dbt_models", "consolidation__hippocampal_consolidation",
                                  "recall_snapshot"])
def test_a_run_killed_at_any_stage_reruns_to_the_state_of_one_never_killed(step, reference, tmp_path):
    home = tmp_path / "home"
    env = _env(home)
    assert _codex(env, "import", str(_memories_file(tmp_path))).returncode == 0
    victim = subprocess.Popen([CODEX, "consolidate", "--type", "all", "--json"], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_run = None
    try:
        deadline = time.monotonic() + 300
        with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
            while killed_run is None and time.monotonic() < deadline and victim.poll() is None:
                killed_run = _running_step(instance, step)
                time.sleep(0.05)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
    assert killed_run is not None, f"the run finished before {step} could be caught running"

    rerun = _codex(env, "consolidate", "--type", "all", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["status"] == "SUCCESS"
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE

    state = _state(home)
    assert len(state["memories"]) == MEMORIES == len({row[0] for row in state["memories"]})
    assert len(state["ledger"]) == len(set(state["ledger"]))  # each cycle applied once
    assert state == reference


def test_a_killed_import_reimported_gives_exactly_the_file(tmp_path):
    home = tmp_path / "home"
    env = _env(home)
    source = tmp_path / "big.jsonl"
    source.write_text("".join(json.dumps({"content": f"Note {i}: the tide was out at the pier at {i % 24}h",
                                          "created_at": f"2026-06-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z"})
                              + "\n" for i in range(20_000)))
    victim = subprocess.Popen([CODEX, "import", str(source)], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # under way: parsing, writing the inbox or the store
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()

    again = _codex(env, "import", str(source), "--json")
    assert again.returncode == 0, again.stderr
    import duckdb

    con = duckdb.connect(str(home / "memory.duckdb"), read_only=True)
    try:
        total, distinct = con.execute("select count(*), count(distinct id) from raw.memories").fetchone()
    finally:
        con.close()
    assert total == distinct == 20_000
