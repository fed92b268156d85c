"""The in-process dbt step when dbt fails: the step fails with dbt's own error lines, nothing keeps the file."""

import subprocess
import sys
from datetime import datetime, timedelta

import duckdb
from scenario import materialize_stages


def test_a_failing_dbt_build_fails_the_step_with_dbts_error_and_releases_the_store(settings, resources):
    from codex_dreams.sources.ingest import store_now
    from codex_dreams.sources.records import make_record

    start = datetime(2026, 3, 2, 9, 0)
    assert store_now([make_record(f"Memory {i} of the morning.", at=start + timedelta(seconds=i))
                      for i in range(3)], settings) == 3
    with duckdb.connect(str(settings.database_path)) as con:
        con.execute("drop table enriched.memory_enrichment cascade")  # a source the first model reads

    result = materialize_stages(resources, "working_memory", raise_on_error=False)

    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert failure.step_key.startswith("codex_dbt_")
    message = failure.event_specific_data.error.message
    assert "dbt build failed" in message and "memory_enrichment" in message
    probe = subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
                            str(settings.database_path)], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr  # neither dbt nor the run keeps the file open
