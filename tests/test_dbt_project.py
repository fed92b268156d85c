"""The dbt project's own tests, outside the rhythms: dbt unit tests (they check the models' SQL, so the
pipeline excludes them and the suite runs them here) and the per-model column contract (one scan that names
every violated rule)."""

import json
import os
import subprocess
from datetime import datetime, timedelta

import pytest

from codex_dreams.dbt import dbt_executable
from codex_dreams.params import DBT_PROJECT_DIR


def dbt(settings, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DUCKDB_PATH": str(settings.database_path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    return subprocess.run(
        [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")],
        env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture
def memories_in_store(settings):
    from codex_dreams.sources.ingest import store_now
    from codex_dreams.sources.records import make_record

    start = datetime(2026, 3, 2, 9, 0)
    records = [make_record(text, at=start + timedelta(seconds=20 * i)) for i, text in enumerate(
        ["Coffee with Priya at the Kestrel café.", "Priya says the Atlas cutover slips a week.",
         "Walked Biscuit in Laurelhurst Park."])]
    assert store_now(records, settings) == len(records)
    return records


def test_dbt_unit_tests_pass(settings, memories_in_store, tmp_path):
    # unit tests need their inputs' relations (for column types): build the models empty first
    built = dbt(settings, tmp_path, "run", "--empty")
    assert built.returncode == 0, built.stdout[-3000:]
    tested = dbt(settings, tmp_path, "test", "--select", "test_type:unit")
    assert tested.returncode == 0, tested.stdout[-3000:]

    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    declared = set(manifest["unit_tests"])
    results = [r for r in json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
               if r["unique_id"].startswith("unit_test.")]  # the run-end hook reports too
    assert declared, "the project declares no unit tests?"
    assert {r["unique_id"] for r in results} == declared
    assert {r["status"] for r in results} == {"pass"}


def test_column_contract_names_each_violated_rule(settings, memories_in_store, tmp_path):
    import duckdb

    built = dbt(settings, tmp_path, "run", "--select", "wm_memory_features")
    assert built.returncode == 0, built.stdout[-3000:]
    passed = dbt(settings, tmp_path, "test", "--select", "wm_memory_features_column_contract")
    assert passed.returncode == 0, passed.stdout[-3000:]

    first, second = (r.id for r in memories_in_store[:2])
    with duckdb.connect(str(settings.database_path)) as con:
        con.execute("update working_memory.wm_memory_features set importance = 1.5 where memory_id = ?", [first])
        con.execute("update working_memory.wm_memory_features set memory_id = ? where memory_id = ?",
                    [first, second])  # a duplicate id
    failed = dbt(settings, tmp_path, "test", "--select", "wm_memory_features_column_contract")
    assert failed.returncode == 1
    assert "Got 2 results" in failed.stdout

    compiled = next((tmp_path / "target" / "compiled").rglob("wm_memory_features_column_contract.sql")).read_text()
    with duckdb.connect(str(settings.database_path)) as con:
        violated = dict(con.execute(compiled).fetchall())
    assert violated == {"importance outside [0, 1]": 1, "memory_id not unique": 1}


def test_column_contract_checks_references_and_group_sizes(settings, memories_in_store, tmp_path):
    """The relationships and group rules of wm_attention's contract: a memory that working memory's features
    do not know, and a window with one attended memory more than the capacity (whose slots then no longer
    fill 1..n) and an unattended memory encoded as strongly as an attended one."""
    import duckdb

    built = dbt(settings, tmp_path, "run", "--select", "wm_memory_features", "wm_attention")
    assert built.returncode == 0, built.stdout[-3000:]
    passed = dbt(settings, tmp_path, "test", "--select", "wm_attention_column_contract")
    assert passed.returncode == 0, passed.stdout[-3000:]

    with duckdb.connect(str(settings.database_path)) as con:
        window, = con.execute("select window_start from working_memory.wm_attention limit 1").fetchone()
        # 8 attended memories in one window (capacity 7): unknown ids, slots 1..7 (the 8th repeats slot 7)
        for rank in range(1, 9):
            con.execute("""
                insert into working_memory.wm_attention by name
                select 'ghost-' || ?::varchar as memory_id, window_start, window_end, created_at, priority,
                       0.9 as encoding_strength, recency, true as attended, least(?, 7) as slot,
                       ? as attention_rank
                from working_memory.wm_attention where window_start = ? limit 1
            """, [rank, rank, rank, window])
        # ... and one unattended memory encoded as strongly as the weakest attended one
        con.execute("""
            insert into working_memory.wm_attention by name
            select 'ghost-unattended' as memory_id, window_start, window_end, created_at, priority,
                   (select min(encoding_strength) from working_memory.wm_attention
                    where window_start = ? and attended) as encoding_strength,
                   recency, false as attended, null as slot, 9 as attention_rank
            from working_memory.wm_attention where window_start = ? limit 1
        """, [window, window])
    failed = dbt(settings, tmp_path, "test", "--select", "wm_attention_column_contract")
    assert failed.returncode == 1

    compiled = next((tmp_path / "target" / "compiled").rglob("wm_attention_column_contract.sql")).read_text()
    with duckdb.connect(str(settings.database_path)) as con:
        violated = dict(con.execute(compiled).fetchall())
    assert violated == {
        f"memory_id without a row in {settings.database_path.stem}.working_memory.wm_memory_features.memory_id": 9,
        "at most working_memory_capacity attended per window": 1,
        "attended memories hold slots 1..n per window, n = least(capacity, members)": 1,
        "unattended memories encoded more weakly than attended ones per window": 1}


def test_views_are_recreated_only_when_their_definition_or_the_project_changes(settings, memories_in_store,
                                                                                  tmp_path):
    """A marker (a column comment) survives a build that skips the view and is gone when it is re-created."""
    import duckdb

    view = "working_memory.wm_current_window"

    def build(fingerprint: str, *extra: str) -> None:
        done = dbt(settings, tmp_path, "run", "--select", "+wm_current_window",
                   "--vars", f'{{"project_fingerprint": "{fingerprint}"}}', *extra)
        assert done.returncode == 0, done.stdout[-3000:]

    def mark() -> None:
        with duckdb.connect(str(settings.database_path)) as con:
            con.execute(f"comment on column {view}.memory_id is 'marker'")

    def marked() -> bool:
        with duckdb.connect(str(settings.database_path), read_only=True) as con:
            return con.execute("select comment from duckdb_columns() where schema_name = 'working_memory' and "
                               "table_name = 'wm_current_window' and column_name = 'memory_id'").fetchone()[0] \
                == "marker"

    build("a")
    mark()
    build("a")
    assert marked()  # same definition, same project: skipped
    build("b")
    assert not marked()  # the project changed: re-created
    mark()
    build("b", "--full-refresh")
    assert not marked()



def test_features_of_a_store_from_before_lookback_fingerprints_are_recomputed_once(settings, memories_in_store,
                                                                                  tmp_path):
    """wm_memory_features is incremental by lookback fingerprint; a store built before that column existed holds
    the table without it. The next run recomputes every row (and drops a memory deleted meanwhile), giving the
    table a full build gives; then a run with nothing new recomputes nothing."""
    import duckdb

    assert dbt(settings, tmp_path, "run", "--select", "wm_memory_features").returncode == 0
    first = memories_in_store[0].id
    with duckdb.connect(str(settings.database_path)) as con:
        con.execute("alter table working_memory.wm_memory_features drop column lookback_fingerprint")
        con.execute("update working_memory.wm_memory_features set novelty = 0.123")  # stale values
        con.execute("update raw.memories set deleted_at = now() where id = ?", [first])

    upgraded = dbt(settings, tmp_path, "run", "--select", "wm_memory_features")
    assert upgraded.returncode == 0, upgraded.stdout[-3000:]
    features = "select * from working_memory.wm_memory_features order by memory_id"
    with duckdb.connect(str(settings.database_path)) as con:
        after_upgrade = con.execute(features).fetchall()
        fingerprints = con.execute("select count(lookback_fingerprint), count(*) from "
                                   "working_memory.wm_memory_features").fetchone()
    assert dbt(settings, tmp_path, "run", "--select", "wm_memory_features", "--full-refresh").returncode == 0
    with duckdb.connect(str(settings.database_path)) as con:
        assert con.execute(features).fetchall() == after_upgrade
        con.execute("update working_memory.wm_memory_features set memory_source = 'kept'")
    assert fingerprints == (len(memories_in_store) - 1,) * 2
    assert first not in {row[0] for row in after_upgrade}
    assert 0.123 not in {row[11] for row in after_upgrade}

    assert dbt(settings, tmp_path, "run", "--select", "wm_memory_features").returncode == 0
    with duckdb.connect(str(settings.database_path)) as con:
        assert {row[0] for row in con.execute("select memory_source from working_memory.wm_memory_features")
                .fetchall()} == {"kept"}  # nothing changed, nothing recomputed
