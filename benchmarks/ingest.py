"""Ingestion benchmark: bulk import throughput and `remember` latency into the embedded store.

    .venv/bin/python benchmarks/ingest.py [--sizes 10000,100000] [--remember 500] [--repeat 3] [--seed 7]

Prints one JSON object. Everything happens in temporary directories (a fresh CODEX_HOME per measurement).
Bulk measurements are repeated (--repeat, default 3) and the median is reported.

- Bulk import, per size: a generated JSON Lines file (varied everyday text, increasing timestamps, metadata on
  most lines) goes through the same steps as `codex import` (`import_path`), timed separately:
  parse+validate (`read_file`, one MemoryRecord per line), inbox write (one SQLite transaction), drain into
  DuckDB raw.memories (open + bootstrap + `drain_inbox`); then, on another fresh store, `import_path` end to
  end (`total`). Rates are memories per second.
- Baseline: the same file loaded with no validation at all: pyarrow's JSON reader, then DuckDB
  `insert into raw.memories ... select ... from <arrow table>`. `baseline_ratio` = baseline rate / our rate.
- `remember` latency: N in-process calls of `codex_dreams.sources.ingest.remember` (validate + one durable
  SQLite commit, synchronous=full, on the process's cached inbox connection), p50/p95/p99; `uncached`: the
  same with the connection opened and closed around every call (what one `codex remember` process pays,
  and what every call paid before the cache); `cli_wall`: whole `codex remember` processes (imports included).
- `via_inbox` in the bulk results: parse+validate + inbox write + drain, the path an import takes when a run
  holds the store (and the only path before imports went straight into a free store).
Goals (issue 2): >= 20,000 memories/s bulk; remember p50 <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import emit, percentiles_ms, timer  # noqa: E402

from codex_dreams.settings import load_settings  # noqa: E402
from codex_dreams.sources import inbox  # noqa: E402
from codex_dreams.sources.importers import read_file  # noqa: E402
from codex_dreams.sources.ingest import import_path, remember  # noqa: E402
from codex_dreams.store import open_store  # noqa: E402

GOAL_BULK_PER_S = 20_000
GOAL_REMEMBER_P50_MS = 5.0

PEOPLE = ["Ana", "Ben", "Sam", "Priya", "Jonas", "Mei", "Tomás", "Aisha", "Lukas", "Noor", "my sister", "the landlord"]
PLACES = ["the harbour café", "Laurelhurst Park", "the office", "the climbing gym", "Lisbon", "the library",
          "the farmers market", "home", "the train to Porto", "the dentist", "the bakery on 5th", "the lake"]
ACTIVITIES = [
    "talked about the quarterly report", "planned the trip in May", "argued about the thermostat again",
    "fixed the bike's rear brake", "tried the new ramen place", "went over the budget spreadsheet",
    "practised the Spanish verbs", "read two chapters of the novel", "walked the dog in the rain",
    "sketched the kitchen shelves", "booked the flights", "reviewed the pull request about caching",
]
FEELINGS = ["Felt relieved.", "A bit anxious about it.", "That was fun!", "Too tired to think.",
            "Need to follow up tomorrow.", "Remember to send the photos.", "", "", ""]
TAGS = ["work", "family", "health", "travel", "money", "hobby", "errand", "social"]


def generate(path: Path, n: int, rng: random.Random) -> None:
    moment = datetime(2024, 1, 1, 7, 0, 0)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            moment += timedelta(seconds=rng.randint(5, 900))
            text = (f"{rng.choice(['Met', 'Called', 'Had lunch with', 'Ran into', 'Texted'])} "
                    f"{rng.choice(PEOPLE)} at {rng.choice(PLACES)} and {rng.choice(ACTIVITIES)}. "
                    f"{rng.choice(FEELINGS)}").strip()
            if rng.random() < 0.3:
                text += f" Note #{i}: {rng.choice(ACTIVITIES)} before {rng.randint(1, 28)} {rng.choice(['May', 'June', 'July'])}."
            line = {"content": text, "created_at": moment.isoformat() + "Z"}
            if rng.random() < 0.8:
                line["metadata"] = {"tags": rng.sample(TAGS, rng.randint(1, 3)), "mood": round(rng.uniform(-1, 1), 2)}
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")


def fresh_settings(root: Path, name: str):
    home = root / name
    if home.exists():
        shutil.rmtree(home)
    return load_settings(CODEX_HOME=str(home), POSTGRES_DB_URL="", DUCKDB_PATH=None)


def rate(n: int, seconds: float) -> int:
    return int(n / seconds) if seconds > 0 else 0


def bench_bulk(root: Path, n: int, rng: random.Random, repeat: int) -> dict:
    path = root / f"memories_{n}.jsonl"
    generate(path, n, rng)
    runs = [_bulk_once(root, path, n) for _ in range(repeat)]
    path.unlink()
    # The median of each measurement over the repetitions (the machine may be shared).
    t = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    ours = rate(n, t["total"])
    return {
        "memories": n,
        "repeat": repeat,
        "seconds": {key: round(value, 3) for key, value in t.items()},
        "memories_per_s": {
            "parse_validate": rate(n, t["parse_validate"]),
            "inbox_write": rate(n, t["inbox_write"]),
            "drain": rate(n, t["drain"]),
            "total": ours,
            "via_inbox": rate(n, t["via_inbox"]),
            "reimport": rate(n, t["reimport"]),
            "baseline_arrow_duckdb": rate(n, t["baseline"]),
        },
        "baseline_ratio": round(rate(n, t["baseline"]) / ours, 2) if ours else None,
        "goal_met": ours >= GOAL_BULK_PER_S,
    }


def _bulk_once(root: Path, path: Path, n: int) -> dict:
    # Phases, as import_path runs them when the store is busy (through the inbox).
    settings = fresh_settings(root, f"phases_{n}")
    t: dict = {}
    with timer(t, "parse_validate"):
        _, lines = read_file(path, "jsonl")
        records = [parsed.record for parsed in lines if parsed.record is not None]
    assert len(records) == n
    with timer(t, "inbox_write"):
        inbox.append(settings.inbox_path, records)
    with timer(t, "drain"):
        with open_store(settings) as con:
            stored = inbox.drain_inbox(con, settings.inbox_path)
    assert stored == n, stored

    # End to end, on a fresh store.
    settings = fresh_settings(root, f"total_{n}")
    with timer(t, "total"):
        report = import_path(path, settings=settings)
    assert report.stored == n and not report.rejected

    # Re-import of the same file: everything is a duplicate.
    with timer(t, "reimport"):
        again = import_path(path, settings=settings)
    assert again.stored == 0

    # Baseline: no validation, pyarrow JSON reader straight into DuckDB.
    import pyarrow.json as pj

    settings = fresh_settings(root, f"baseline_{n}")
    with timer(t, "baseline"):
        table = pj.read_json(path)
        with open_store(settings) as con:
            con.register("arrow_rows", table)
            con.execute(
                """
                insert into raw.memories (id, content, created_at, updated_at, metadata, source)
                select uuid()::varchar, content, created_at::timestamp, created_at::timestamp,
                       coalesce(to_json(metadata), '{}'), 'baseline'
                from arrow_rows
                """
            )
            assert con.execute("select count(*) from raw.memories").fetchone()[0] == n
    t["via_inbox"] = t["parse_validate"] + t["inbox_write"] + t["drain"]
    return t


def bench_remember(root: Path, calls: int) -> dict:
    settings = fresh_settings(root, "remember")
    for i in range(5):  # warm up: first open creates the file and the table
        remember(f"warm-up {i}", settings=settings)
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        remember(f"Quick note {i}: picked up the dry cleaning and bought oat milk.",
                 metadata={"tags": ["errand"]}, settings=settings)
        samples.append(time.perf_counter() - started)
    assert inbox.pending(settings.inbox_path) == calls + 5
    result = percentiles_ms(samples)
    result["goal_met"] = result["p50_ms"] <= GOAL_REMEMBER_P50_MS

    uncached = []
    for i in range(max(50, calls // 5)):
        started = time.perf_counter()
        remember(f"Uncached note {i}", settings=settings)
        inbox.close_writers()  # a new connection next time, and the close-time checkpoint paid now
        uncached.append(time.perf_counter() - started)
    result["uncached"] = percentiles_ms(uncached)

    import os
    import subprocess

    codex = str(Path(sys.executable).with_name("codex"))
    env = {**os.environ, "CODEX_HOME": str(settings.codex_home), "POSTGRES_DB_URL": ""}
    wall = []
    for i in range(5):
        started = time.perf_counter()
        subprocess.run([codex, "remember", f"From the command line {i}"], env=env, check=True,
                       capture_output=True)
        wall.append(time.perf_counter() - started)
    result["cli_wall"] = percentiles_ms(wall)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--remember", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="bulk repetitions; the median is reported")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="codex-bench-ingest-"))
    try:
        bulk = [bench_bulk(root, int(size), rng, args.repeat) for size in args.sizes.split(",")]
        latency = bench_remember(root, args.remember)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    emit("ingest", {
        "goals": {"bulk_memories_per_s": GOAL_BULK_PER_S, "remember_p50_ms": GOAL_REMEMBER_P50_MS},
        "bulk_import": bulk,
        "remember_latency": latency,
        "wall_seconds": round(time.perf_counter() - started, 1),
    })


if __name__ == "__main__":
    main()
