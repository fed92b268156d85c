"""The run-scoped store resource: one database instance from a run's first store step to its end."""

import subprocess
import sys

import dagster as dg

from codex_dreams.resources import StoreResource


def other_process_can_open(path) -> bool:
    probe = subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
                            str(path)], capture_output=True, text=True, timeout=60)
    return probe.returncode == 0


def test_a_run_holds_the_store_between_steps_until_release_or_its_end(settings, resources):
    path = settings.database_path
    seen = {}

    @dg.asset
    def first(duckdb: StoreResource):
        with duckdb.get_connection() as con:
            con.execute("create table scratch as select 42 as answer")
        # this step's connection is closed, the run's instance is not
        seen["held_after_the_step_closed_its_connection"] = not other_process_can_open(path)

    @dg.asset(deps=[first])
    def second(duckdb: StoreResource):
        duckdb.release()
        seen["free_after_release"] = other_process_can_open(path)
        with duckdb.get_connection() as con:  # reopened on demand, the data is there
            seen["answer"] = con.execute("select answer from scratch").fetchone()[0]

    assert dg.materialize([first, second], resources=resources).success
    assert seen == {"held_after_the_step_closed_its_connection": True, "free_after_release": True, "answer": 42}
    assert other_process_can_open(path)  # the run's end closed the instance


def test_outside_a_run_each_connection_opens_and_closes_the_file(settings, resources):
    with resources["duckdb"].get_connection() as con:
        con.execute("create table scratch as select 1 as one")
    assert other_process_can_open(settings.database_path)
