"""Enrichment throughput, printed as one JSON object.

1. Offline: `enrich_pending` over 2,000 demo-like memories in a temporary store (heuristics + MiniLM ONNX
   embeddings + DuckDB writes), plus the embedding model alone.
2. Remote: the same code against the local Ollama-protocol server (tests/enrichment) answering after 300 ms per
   call, 64 memories, MAX_CONCURRENCY=1 versus 16 (goal: >= 8x), and the number of calls a second run repeats
   (must be 0).
3. A one-slot server (as llama-cpp-python is: one request at a time, 200 ms each), 16 memories, MAX_CONCURRENCY
   1, 2 (the default) and 8: the run takes as long whatever the concurrency, but each request waits longer in
   the server's queue (mean latency per memory), which is time its timeout runs. This is why the default is 2.

Run: .venv/bin/python benchmarks/enrichment.py   (about 60 s on 2 idle cores)
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "enrichment"))

from enrichment_protocol_server import ProtocolServer  # noqa: E402

from codex_dreams.enrichment import enrich_pending  # noqa: E402
from codex_dreams.enrichment.embeddings import offline_embedder  # noqa: E402
from codex_dreams.settings import load_settings  # noqa: E402
from codex_dreams.store import open_store  # noqa: E402

OFFLINE_MEMORIES = 2000
EMBEDDING_SAMPLE = 500  # texts for the model-only measurement
REMOTE_MEMORIES = 64
REMOTE_LATENCY_S = 0.3
SEED = 7

PEOPLE = ["Sarah", "Marcus", "Ana", "Priya", "Jonas", "Dr. Chen", "Grandma", "Leo", "Mei", "Tomás"]
PLACES = ["Lisbon", "Berlin", "Porto", "Tokyo", "the office", "Central Park", "Union Station", "the kitchen",
          "Oakland", "the gym"]
ACTIVITIES = ["had coffee", "went for a run", "reviewed the budget", "fixed the bike", "cooked dinner",
              "planned the trip", "debugged the payment service", "read a book about Rome", "painted the fence",
              "talked about the garden project"]
FEELINGS = ["It was wonderful!", "I felt anxious about it.", "Honestly a bit boring.", "I was so happy.",
            "Terrible timing, I was furious.", "Quietly satisfying.", "", "We laughed a lot."]
TAILS = ["I need to send the notes tomorrow.", "My goal is to finish the marathon in spring.",
         "The bakery is two blocks north of the station.", "Remember to call the dentist.", "",
         "I want to learn Japanese before the trip.", "The car was parked behind the house."]


def demo_like_texts(count: int, rng: random.Random) -> list[str]:
    """Varied, realistic memory texts: sampled from the demo file if it exists, recombined with templates."""
    demo: list[str] = []
    demo_file = ROOT / "codex_dreams" / "data" / "demo_memories.jsonl"
    if demo_file.exists():
        for line in demo_file.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            text = record.get("content") or record.get("text") if isinstance(record, dict) else None
            if isinstance(text, str) and text.strip():
                demo.append(text.strip())
    texts = []
    for i in range(count):
        generated = (f"{rng.choice(ACTIVITIES).capitalize()} with {rng.choice(PEOPLE)} in {rng.choice(PLACES)}. "
                     f"{rng.choice(FEELINGS)} {rng.choice(TAILS)}").strip()
        if demo and i % 2 == 0:
            generated = f"{rng.choice(demo)} {rng.choice(TAILS)}".strip()
        texts.append(generated)
    return texts


def fresh_settings(home: Path, **env: str):
    for name in ("CODEX_LLM_PROVIDER", "OLLAMA_URL", "OLLAMA_MODEL", "EMBEDDING_MODEL", "OLLAMA_TIMEOUT",
                 "MAX_CONCURRENCY", "DUCKDB_PATH", "POSTGRES_DB_URL"):
        os.environ.pop(name, None)
    os.environ["CODEX_HOME"] = str(home)
    os.environ.update(env)
    return load_settings()


def insert(settings, texts: list[str]) -> None:
    start = datetime(2026, 3, 1, 8, 0, 0)
    rows = [(f"b{i}", text, start + timedelta(seconds=40 * i)) for i, text in enumerate(texts)]
    with open_store(settings) as con:
        con.executemany(
            "insert into raw.memories (id, content, created_at, updated_at, metadata, source) "
            "values (?, ?, ?, ?, '{}', 'benchmark')",
            [(i, text, at, at) for i, text, at in rows],
        )


def offline_benchmark(workdir: Path, texts: list[str]) -> dict:
    embedder = offline_embedder()
    started = time.perf_counter()
    embedder.embed(["load the model"])
    load_s = time.perf_counter() - started

    sample = texts[:EMBEDDING_SAMPLE]
    started = time.perf_counter()
    embedder.embed(sample)
    embed_s = time.perf_counter() - started

    settings = fresh_settings(workdir / "offline")
    insert(settings, texts)
    stats = enrich_pending(settings)
    again = enrich_pending(settings)
    return {
        "memories": len(texts),
        "model_load_s": round(load_s, 3),
        "embedding_only_texts_per_s": round(len(sample) / embed_s, 1),
        "enrich_pending_s": round(stats.duration_s, 3),
        "enrich_pending_memories_per_s": round(len(texts) / stats.duration_s, 1),
        "mean_heuristics_latency_ms": round(stats.mean_latency_ms, 3),
        "embedding_dim": stats.embedding_dim,
        "second_run_pending": again.pending,
    }


def remote_benchmark(workdir: Path, texts: list[str]) -> dict:
    results = {}
    with ProtocolServer(latency=REMOTE_LATENCY_S) as server:
        for concurrency in (1, 16):
            settings = fresh_settings(workdir / f"remote_{concurrency}", CODEX_LLM_PROVIDER="ollama",
                                      OLLAMA_URL=server.url, OLLAMA_MODEL="bench-chat", EMBEDDING_MODEL="bench-embed",
                                      OLLAMA_TIMEOUT="10", MAX_CONCURRENCY=str(concurrency))
            insert(settings, texts)
            server.reset()
            stats = enrich_pending(settings)
            calls = server.count()
            server.reset()
            enrich_pending(settings)
            results[concurrency] = {
                "seconds": round(stats.duration_s, 3),
                "memories_per_s": round(len(texts) / stats.duration_s, 2),
                "calls": calls,
                "by_provider": stats.by_provider,
                "fallbacks": stats.fallbacks,
                "repeated_calls_second_run": server.count(),
            }
    sequential, concurrent = results[1], results[16]
    return {
        "memories": len(texts),
        "latency_per_call_ms": int(REMOTE_LATENCY_S * 1000),
        "sequential": sequential,
        "concurrency_16": concurrent,
        "speedup": round(sequential["seconds"] / concurrent["seconds"], 2),
        "speedup_goal": 8,
        "repeated_calls_second_run": sequential["repeated_calls_second_run"] + concurrent["repeated_calls_second_run"],
    }


ONE_SLOT_MEMORIES = 16
ONE_SLOT_LATENCY_S = 0.2


def one_slot_benchmark(workdir: Path, texts: list[str]) -> dict:
    results = {}
    with ProtocolServer(latency=ONE_SLOT_LATENCY_S, slots=1) as server:
        for concurrency in (1, 2, 8):
            settings = fresh_settings(workdir / f"one_slot_{concurrency}", CODEX_LLM_PROVIDER="ollama",
                                      OLLAMA_URL=server.url, OLLAMA_MODEL="bench-chat", EMBEDDING_MODEL="bench-embed",
                                      OLLAMA_TIMEOUT="30", MAX_CONCURRENCY=str(concurrency))
            insert(settings, texts)
            server.reset()
            server.max_in_flight = 0
            stats = enrich_pending(settings)
            results[f"concurrency_{concurrency}"] = {
                "seconds": round(stats.duration_s, 2),
                "mean_latency_per_memory_ms": round(stats.mean_latency_ms),
                "most_requests_at_the_server": server.max_in_flight,
                "fallbacks": stats.fallbacks,
            }
    return {"memories": len(texts), "latency_per_call_ms": int(ONE_SLOT_LATENCY_S * 1000), **results}


def main() -> None:
    rng = random.Random(SEED)
    texts = demo_like_texts(OFFLINE_MEMORIES, rng)
    with tempfile.TemporaryDirectory(prefix="codex-bench-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        report = {
            "benchmark": "enrichment",
            "cpu_count": os.cpu_count(),
            # Throughput on a shared machine depends on what else runs: the load average says how much did.
            "load_average_1m_before": round(os.getloadavg()[0], 2),
            "offline": offline_benchmark(workdir, texts),
            "remote_protocol_server": remote_benchmark(workdir, texts[:REMOTE_MEMORIES]),
            "one_slot_server": one_slot_benchmark(workdir, texts[:ONE_SLOT_MEMORIES]),
        }
        report["load_average_1m_after"] = round(os.getloadavg()[0], 2)
        report["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
