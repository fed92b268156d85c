"""Recall benchmark: latency at 10k and 100k memories, the numpy baseline, DuckDB vss, CLI wall time.

    .venv/bin/python benchmarks/recall.py [--sizes 10000,100000] [--queries 200] [--hnsw-max 10000]
                                          [--locomo ../shared/datasets/locomo/locomo_dev.json] [--no-cli]

Prints one JSON object. Everything happens in a temporary CODEX_HOME.

- Latency: a scripted store per size (memory texts mixed from real dialogue turns, so BM25 sees a natural
  vocabulary; synthetic unit embeddings; ~3 association links per memory; episodes of 20), a published
  snapshot, then
  `Recaller.recall(q, k=10)` in process over distinct real questions: `cold` includes embedding the query
  (MiniLM on the CPU), `warm` repeats the same queries (the query vector is cached, everything else runs).
  Logging for the testing effect is on, as in real use.
- Baseline: exact numpy dot-product top-10 over the same memory-mapped matrix (memory bandwidth), and the
  ratio recall / baseline.
- DuckDB vss: exact `array_cosine_distance` scan and (up to --hnsw-max memories) an HNSW index, query vector
  bound from Python, for the dense part alone.
- CLI: wall time of `codex query --text ... --json` (a new process: imports, snapshot open, model load).

Recall quality (LoCoMo evidence recall through the real pipeline, against BM25) is `benchmarks/locomo.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LOCOMO = ROOT.parent / "shared" / "datasets" / "locomo" / "locomo_dev.json"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, percentiles_ms as _percentiles  # noqa: E402


def _locomo(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    turns, questions = [], []
    for conversation in data:
        sample = conversation["sample_id"]
        conv = conversation["conversation"]
        for key, value in conv.items():
            if key.startswith("session_") and isinstance(value, list):
                for turn in value:
                    turns.append((sample, str(turn.get("dia_id")), f"{turn['speaker']}: {turn['text']}"))
        for qa in conversation.get("qa", []):
            evidence = []
            for item in qa.get("evidence") or []:
                evidence.extend(str(item).replace(";", " ").split())
            questions.append((sample, qa["question"], int(qa.get("category", 0)), evidence))
    return turns, questions


def _text_pool(locomo: Path | None) -> tuple[list[str], list[str]]:
    """Real sentences for memory texts and real questions for queries."""
    if locomo and locomo.exists():
        turns, questions = _locomo(locomo)
        return [t[2].split(": ", 1)[1] for t in turns], [q[1] for q in questions]
    from codex_dreams.pipeline import demo_memories_path

    lines = [json.loads(line)["content"] for line in demo_memories_path().read_text().splitlines() if line.strip()]
    return lines, [" ".join(line.split()[:6]) for line in lines]


def _synthetic_texts(pool: list[str], n: int, rng: random.Random) -> list[str]:
    words = [w for text in pool for w in text.split()]
    texts = list(pool[:n])
    while len(texts) < n:
        base = rng.choice(pool).split()
        texts.append(" ".join(base[: rng.randint(4, 14)] + rng.sample(words, 6)))
    return texts


def _fill_store(con, texts: list[str], vectors: np.ndarray, settings, rng: np.random.Generator,
                links_per_memory: int = 3, ids: list[str] | None = None, created: list[datetime] | None = None,
                metadata: list[str] | None = None) -> None:
    import pyarrow as pa

    from codex_dreams.enrichment import active_embedding_model, active_model_key

    n = len(texts)
    ids = ids or [f"m{i:07d}" for i in range(n)]
    created = created or [datetime(2024, 1, 1) + timedelta(minutes=7 * i) for i in range(n)]
    memories = pa.table({"id": ids, "content": texts, "created_at": pa.array(created, pa.timestamp("us")),
                         "metadata": metadata or ["{}"] * n})
    con.register("bench_memories", memories)
    con.execute("insert into raw.memories (id, content, created_at, updated_at, metadata, source) "
                "select id, content, created_at, created_at, metadata::json, 'benchmark' from bench_memories")
    dim = vectors.shape[1]
    enrichment = pa.table({
        "memory_id": ids,
        "embedding": pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * dim),
                                              pa.array(vectors.ravel())),
    })
    con.register("bench_enrichment", enrichment)
    con.execute(
        "insert into enriched.memory_enrichment (memory_id, content_hash, provider, model, embedding, "
        "embedding_model, embedding_dim) select e.memory_id, left(sha256(m.content), 32), 'offline', ?, "
        "e.embedding, ?, ? from bench_enrichment e join bench_memories m on m.id = e.memory_id",
        [active_model_key(settings), active_embedding_model(settings), dim])
    # short-term episodes of ~20 memories in a row (about two hours), so episode context has work to do
    con.execute("create schema if not exists short_term_memory")
    con.execute("create table if not exists short_term_memory.stm_memories (memory_id varchar, episode_id varchar)")
    con.execute("insert into short_term_memory.stm_memories select id, 'e' || (row_number() over (order by "
                "created_at, id) // 20) from bench_memories")
    if links_per_memory:
        a = rng.integers(0, n, n * links_per_memory)
        b = np.clip(a + rng.integers(1, 50, len(a)), 0, n - 1)  # mostly near in time, like real links
        keep = a < b
        pairs = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0)
        types = np.array(["hebbian", "semantic", "temporal", "creative"])[rng.integers(0, 4, len(pairs))]
        links = pa.table({"memory_a": [ids[i] for i in pairs[:, 0]], "memory_b": [ids[i] for i in pairs[:, 1]],
                          "strength": rng.uniform(0.05, 1.0, len(pairs)), "link_type": types})
        con.register("bench_links", links)
        con.execute("insert into consolidation.associations (memory_a, memory_b, strength, link_type, created_at, "
                    "updated_at, created_cycle_key, updated_cycle_key) select memory_a, memory_b, strength, "
                    "link_type, timestamp '2024-06-01', timestamp '2024-06-01', 'hippocampal:bench', "
                    "'hippocampal:bench' from bench_links")


def _vss(vectors: np.ndarray, queries: np.ndarray, hnsw: bool, extension_dir: Path) -> dict:
    import duckdb
    import pyarrow as pa

    from codex_dreams.store import duckdb_config, load_extension

    n, dim = vectors.shape
    con = duckdb.connect(":memory:", config=duckdb_config(extension_dir))
    load_extension(con, "vss")
    table = pa.table({"id": pa.array(np.arange(n, dtype=np.int32)),
                      "v": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)})
    con.register("vectors", table)
    con.execute(f"create table e as select id, v::float[{dim}] as v from vectors")
    bound = f"select id from e order by array_cosine_distance(v, ?::float[{dim}]) limit 10"

    def run(inline: bool) -> dict:
        times = []
        for q in queries:
            started = time.perf_counter()
            if inline:  # the HNSW index is only used for a constant query vector
                literal = "[" + ",".join(f"{x:.9g}" for x in q) + f"]::float[{dim}]"
                con.execute(f"select id from e order by array_cosine_distance(v, {literal}) limit 10").fetchall()
            else:
                con.execute(bound, [q.tolist()]).fetchall()
            times.append(time.perf_counter() - started)
        return _percentiles(times)

    out = {"exact_scan_bound_vector": run(False)}
    if hnsw:
        started = time.perf_counter()
        con.execute("create index e_hnsw on e using hnsw (v) with (metric = 'cosine')")
        out["hnsw_build_s"] = round(time.perf_counter() - started, 2)
        out["hnsw_inline_vector"] = run(True)
    else:
        out["hnsw"] = "skipped: more memories than --hnsw-max (the index build takes minutes)"
    con.close()
    return out


def bench_size(n: int, pool: list[str], questions: list[str], n_queries: int, hnsw_max: int, base: Path) -> dict:
    from codex_dreams.retrieval.engine import Recaller
    from codex_dreams.retrieval.snapshot import build_snapshot
    from codex_dreams.settings import load_settings
    from codex_dreams.store import open_store

    home = base / f"home_{n}"
    os.environ["CODEX_HOME"] = str(home)
    settings = load_settings()
    rng = np.random.default_rng(n)
    texts = _synthetic_texts(pool, n, random.Random(n))
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.perf_counter()
    with open_store(settings) as con:
        _fill_store(con, texts, vectors, settings, rng)
        fill_s = time.perf_counter() - started
        info = build_snapshot(con, settings)
    engine = Recaller(settings)
    queries = list(dict.fromkeys(questions))[:n_queries]
    for q in ["warm up the model", "and the snapshot", "a third one"]:
        engine.recall(q, 10)
    cold, warm = [], []
    for q in queries:
        started = time.perf_counter()
        engine.recall(q, 10)
        cold.append(time.perf_counter() - started)
    for q in queries:
        started = time.perf_counter()
        engine.recall(q, 10)
        warm.append(time.perf_counter() - started)
    snap = engine.snapshot()
    query_vectors = np.stack([engine._vectors[q] for q in queries])
    base_times = []
    for qv in query_vectors:
        started = time.perf_counter()
        scores = snap.embeddings @ qv
        top = np.argpartition(-scores, 10)[:10]
        top[np.argsort(-scores[top])]
        base_times.append(time.perf_counter() - started)
    embed_times = []
    from codex_dreams.enrichment import embed_texts

    for q in queries[:50]:
        started = time.perf_counter()
        embed_texts([q + " ?"], settings)
        embed_times.append(time.perf_counter() - started)
    result = {
        "memories": n,
        "links": info.manifest["graph"]["links"],
        "store_fill_s": round(fill_s, 2),
        "snapshot_build_s": info.manifest["build_seconds"],
        "recall_cold": _percentiles(cold),
        "recall_warm_query_vector_cached": _percentiles(warm),
        "query_embedding": _percentiles(embed_times),
        "numpy_exact_top10": _percentiles(base_times),
    }
    result["ratio_recall_warm_p50_to_numpy_p50"] = round(
        result["recall_warm_query_vector_cached"]["p50_ms"] / result["numpy_exact_top10"]["p50_ms"], 2)
    result["ratio_recall_cold_p50_to_numpy_p50"] = round(
        result["recall_cold"]["p50_ms"] / result["numpy_exact_top10"]["p50_ms"], 2)
    result["duckdb_vss"] = _vss(vectors, query_vectors[:30], n <= hnsw_max, settings.extension_dir)
    engine.close()
    return result


def bench_cli(home: Path, text: str, runs: int = 3) -> dict:
    codex = Path(sys.executable).with_name("codex")
    env = {**os.environ, "CODEX_HOME": str(home)}
    times = []
    for i in range(runs):
        started = time.perf_counter()
        subprocess.run([str(codex), "query", "--text", f"{text} {i}", "--k", "10", "--json"], env=env, check=True,
                       capture_output=True)
        times.append(time.perf_counter() - started)
    return {"wall_s": [round(t, 3) for t in times], "median_s": round(statistics.median(times), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hnsw-max", type=int, default=10000, help="build an HNSW index up to this many memories")
    parser.add_argument("--locomo", type=Path, default=DEFAULT_LOCOMO,
                        help="LoCoMo file whose turns and questions make the texts and queries (if present)")
    parser.add_argument("--no-cli", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("CODEX_LLM_PROVIDER", "offline")
    os.environ["POSTGRES_DB_URL"] = ""
    report: dict = {"load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    pool, questions = _text_pool(args.locomo)
    with tempfile.TemporaryDirectory(prefix="codex-recall-bench-") as tmp:
        base = Path(tmp)
        report["sizes"] = []
        for n in [int(s) for s in args.sizes.split(",") if s]:
            report["sizes"].append(bench_size(n, pool, questions, args.queries, args.hnsw_max, base))
        if not args.no_cli and report["sizes"]:
            largest = max(report["sizes"], key=lambda r: r["memories"])["memories"]
            report["cli"] = {**bench_cli(base / f"home_{largest}", "what did we talk about at dinner"),
                             "memories": largest}
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    emit("recall", report)


if __name__ == "__main__":
    main()
