"""Recall never waits on the pipeline: while another process holds the memory store read-write (as a run
does), any number of readers - threads and processes - answer from the published snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import duckdb
import pytest

from codex_dreams.retrieval.engine import Recaller

READER = """
import json, sys
from codex_dreams.api import recall
answers = [recall(text, 3).memory_ids for text in sys.argv[1:]]
print(json.dumps(answers))
"""


@pytest.fixture
def store_held_by_a_writer(recall_store):
    code = ("import duckdb, sys\n"
            f"con = duckdb.connect({str(recall_store.database_path)!r})\n"
            "con.execute('create table if not exists main.busy as select 1 as x')\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(duckdb.IOException, match="lock"):  # really held: not even a read-only open works
        duckdb.connect(str(recall_store.database_path), read_only=True)
    yield recall_store
    holder.stdin.close()
    holder.wait(timeout=30)


def test_readers_answer_from_the_snapshot_while_a_writer_holds_the_store(store_held_by_a_writer, codex_home):
    settings = store_held_by_a_writer
    env = {**os.environ, "CODEX_HOME": str(codex_home)}
    queries = ["ferry tickets to Hydra", "Kovacsevic", "brought home a new feline companion"]
    processes = [subprocess.Popen([sys.executable, "-c", READER, *queries], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]

    engine = Recaller(settings)
    errors, answers = [], []

    def read():
        try:
            for text in queries:
                answers.append((text, engine.recall(text, 3).memory_ids[0]))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(repr(error))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outputs = [process.communicate(timeout=120) for process in processes]

    assert errors == []
    expected_top = {"ferry tickets to Hydra": "ferry", "Kovacsevic": "zoltan",
                    "brought home a new feline companion": "kitten"}
    assert sorted(answers) == sorted((text, expected_top[text]) for text in queries for _ in range(4))
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
        assert [ids[0] for ids in json.loads(stdout)] == [expected_top[text] for text in queries]
