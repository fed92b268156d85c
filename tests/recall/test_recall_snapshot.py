"""The recall snapshot: what is published, how (atomically, old versions collected), and that its lexical
index scores exactly like DuckDB's own match_bm25."""

from __future__ import annotations

import json
import threading

import duckdb
import numpy as np
import pytest
from recall_store import CORPUS, publish

from codex_dreams.retrieval.lexical import tokenize
from codex_dreams.retrieval.snapshot import (
    CURRENT_FILE,
    SnapshotUnavailable,
    build_from_store,
    current_snapshot_path,
    current_version,
    recall_dir,
)


def test_a_published_version_holds_everything_recall_needs(recall_store, corpus_vectors):
    path = current_snapshot_path(recall_store)
    assert path is not None and path.parent == recall_dir(recall_store)
    names = {p.name for p in path.iterdir()}
    assert {"snapshot.duckdb", "embeddings.npy", "ids.npy", "embedded.npy", "strength.npy", "lexical.npz",
            "graph.npz", "manifest.json"} <= names
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["memories"] == len(CORPUS)
    assert manifest["embedding"] == {"model_key": "offline|heuristics-v1|all-MiniLM-L6-v2-onnx-int8",
                                     "model": "all-MiniLM-L6-v2-onnx-int8", "dim": 384, "embedded": len(CORPUS)}
    assert manifest["graph"]["links"] == 3
    embeddings = np.load(path / "embeddings.npy", mmap_mode="r")
    ids = np.load(path / "ids.npy")
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(CORPUS), 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    # row-aligned: row i is the stored vector of ids[i]
    by_id = {m.id: v for m, v in zip(CORPUS, corpus_vectors)}
    for i, memory_id in enumerate(ids):
        np.testing.assert_allclose(embeddings[i], by_id[str(memory_id)], atol=1e-6)
    # the DuckDB file opens read-only and carries the fts index
    con = duckdb.connect(str(path / "snapshot.duckdb"), read_only=True)
    assert con.execute("select count(*) from memories").fetchone()[0] == len(CORPUS)
    assert con.execute("select list(row_id order by row_id) = range(0, ?) from memories",
                       [len(CORPUS)]).fetchone()[0]
    assert con.execute("select count(*) from fts_main_memories.docs").fetchone()[0] == len(CORPUS)
    # the signals are added after the index is built (in parallel with reading them): each on its own row
    rows = con.execute("select row_id, id, strength from memories order by row_id").fetchall()
    assert [memory_id for _, memory_id, _ in rows] == [str(memory_id) for memory_id in ids]
    np.testing.assert_allclose([strength for _, _, strength in rows], np.load(path / "strength.npy"), atol=1e-6)
    con.close()


def test_a_new_version_reads_only_new_or_changed_vectors_from_the_store(recall_store, corpus_vectors):
    """Vectors of rows whose enrichment is unchanged come from the published snapshot; a re-enriched memory, a
    back-dated new one (every later row moves) and an edited one (its vector is stale: a zero row) are read
    anew. The result equals a build from the store alone."""
    import shutil

    from codex_dreams.enrichment import active_embedding_model, active_model_key
    from codex_dreams.store import open_store

    before = current_snapshot_path(recall_store)
    ids = [str(x) for x in np.load(before / "ids.npy")]
    # mark an unchanged memory's row in the published file: a vector taken from there carries the mark
    unchanged, reenriched, edited = CORPUS[0].id, CORPUS[1].id, CORPUS[2].id
    marked = np.load(before / "embeddings.npy")
    marked[ids.index(unchanged)] = np.roll(marked[ids.index(unchanged)], 1)
    np.save(before / "embeddings.npy", marked)
    # re-sign the marked file (the checksums would otherwise, rightly, refuse to reuse a changed file)
    from codex_dreams.retrieval.snapshot import file_checksum

    manifest = json.loads((before / "manifest.json").read_text())
    manifest["checksums"]["embeddings.npy"] = file_checksum(before / "embeddings.npy")
    (before / "manifest.json").write_text(json.dumps(manifest))
    turned = np.roll(corpus_vectors[1], 7)
    with open_store(recall_store) as con:
        con.execute("update enriched.memory_enrichment set embedding = ?, enriched_at = now() where memory_id = ?",
                    [turned.tolist(), reenriched])
        con.execute("update raw.memories set content = content || ' (edited)' where id = ?", [edited])
        con.execute("insert into raw.memories (id, content, created_at, updated_at, source) values "
                    "('early', 'a memory dated before all others', '2000-01-01', '2000-01-01', 'test')")
        con.execute("insert into enriched.memory_enrichment (memory_id, content_hash, provider, model, embedding, "
                    "embedding_model, embedding_dim) values ('early', left(sha256('a memory dated before all "
                    "others'), 32), 'offline', ?, ?, ?, 384)",
                    [active_model_key(recall_store), corpus_vectors[3].tolist(), active_embedding_model(recall_store)])

    after = publish(recall_store).path
    vectors = np.load(after / "embeddings.npy")
    row = {str(memory_id): i for i, memory_id in enumerate(np.load(after / "ids.npy"))}
    assert row["early"] == 0 and row[unchanged] == ids.index(unchanged) + 1
    np.testing.assert_allclose(vectors[row[unchanged]], marked[ids.index(unchanged)], atol=1e-6)  # reused
    np.testing.assert_allclose(vectors[row[reenriched]], turned / np.linalg.norm(turned), atol=1e-6)
    np.testing.assert_allclose(vectors[row["early"]], corpus_vectors[3], atol=1e-6)
    assert not vectors[row[edited]].any() and not np.load(after / "embedded.npy")[row[edited]]
    versions = np.load(after / "embedding_versions.npy")

    shutil.rmtree(recall_dir(recall_store))  # nothing published: every vector comes from the store
    fresh = publish(recall_store).path
    expected = np.load(fresh / "embeddings.npy")
    expected[row[unchanged]] = vectors[row[unchanged]]  # all but the planted mark
    np.testing.assert_array_equal(vectors, expected)
    np.testing.assert_array_equal(versions, np.load(fresh / "embedding_versions.npy"))


def test_the_graph_is_symmetric_csr_strongest_first(recall_store):
    path = current_snapshot_path(recall_store)
    ids = [str(x) for x in np.load(path / "ids.npy")]
    with np.load(path / "graph.npz") as graph:
        indptr, indices, weights = graph["indptr"], graph["indices"], graph["weights"]
    edges = {(ids[row], ids[indices[j]], round(float(weights[j]), 3))
             for row in range(len(ids)) for j in range(indptr[row], indptr[row + 1])}
    assert {("ferry", "bills", 0.9), ("bills", "ferry", 0.9), ("bills", "tomato", 0.8),
            ("tomato", "bills", 0.8)} <= edges
    bills = ids.index("bills")
    assert list(weights[indptr[bills]:indptr[bills + 1]]) == sorted(weights[indptr[bills]:indptr[bills + 1]],
                                                                      reverse=True)


def test_publishing_replaces_current_and_keeps_the_last_two(recall_store):
    first = current_version(recall_store)
    versions = [publish(recall_store).version for _ in range(3)]
    assert current_version(recall_store) == versions[-1] != first
    kept = sorted(p.name for p in recall_dir(recall_store).iterdir() if p.is_dir())
    assert kept == sorted(versions[-2:])
    assert not [p for p in recall_dir(recall_store).iterdir() if p.name.startswith(".")]  # no temp leftovers
    assert (recall_dir(recall_store) / CURRENT_FILE).read_text().strip() == versions[-1]


def test_readers_keep_answering_while_new_versions_are_published(recall_store):
    from codex_dreams.retrieval.engine import Recaller

    engine = Recaller(recall_store)
    errors, seen = [], set()
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                response = engine.recall("ferry tickets to Hydra", 3, log=False)
                assert response[0].memory_id == "ferry"
                seen.add(response.snapshot)
            except Exception as error:  # pragma: no cover - reported below
                errors.append(repr(error))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for _ in range(4):
            publish(recall_store)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert errors == []
    assert len(seen) >= 2  # the readers moved to newer versions as they were published


def test_without_a_snapshot_recall_builds_one_from_a_free_store(settings, corpus_vectors):
    from recall_store import write_store

    from codex_dreams.api import recall

    write_store(settings, CORPUS, corpus_vectors, [])
    assert current_version(settings) is None
    response = recall("Kovacsevic", 1, settings=settings, log=False)
    assert response[0].memory_id == "zoltan"
    assert current_version(settings) == response.snapshot


def test_without_a_snapshot_or_a_store_the_error_says_what_to_do(settings):
    with pytest.raises(SnapshotUnavailable, match="no recall snapshot yet"):
        build_from_store(settings)


# ---- lexical parity with DuckDB's fts ----------------------------------------------------------------------

TRICKY = [
    "Café Über straße naïve coöperate İstanbul ΣΑΣ Москва 東京タワー ١٢٣ e\u0301 x_y a-b don't it’s 😀emoji",
    "Flight LH1234 at 7:45, gate B12 (terminal 2)", "ﬁne ½ ² Ⅻ Ångström ŁÓDŹ", "tab\tnew\nline\u00a0nbsp",
    "", "   ", "!!!", "UPPER lower MiXeD", "e-mail: someone@example.com; https://example.com/a?b=c",
]


def _index_contents(path) -> dict:
    """The lexical index of a version by term and row (termids and docids are internal numbering)."""
    con = duckdb.connect(str(path / "snapshot.duckdb"), read_only=True)
    index = "fts_main_memories"
    contents = {
        "postings": sorted(con.execute(f"""select dict.term, docs.name, count(*) from {index}.terms as t
            join {index}.dict as dict using (termid) join {index}.docs as docs using (docid)
            group by all""").fetchall()),
        "dict": sorted(con.execute(f"select term, df from {index}.dict").fetchall()),
        "docs": sorted(con.execute(f"select name, len from {index}.docs").fetchall()),
        "stats": con.execute(f"select num_docs, round(avgdl, 12) from {index}.stats").fetchall(),
        "memories": con.execute("select * from memories order by row_id").fetchall(),
    }
    con.close()
    with np.load(path / "lexical.npz") as arrays:
        ids = np.load(path / "ids.npy")
        terms = {termid: term for term, termid in duckdb.connect(str(path / "snapshot.duckdb"), read_only=True)
                 .execute("select term, termid from fts_main_memories.dict").fetchall()}
        indptr, rows, tf = arrays["term_indptr"], arrays["rows"], arrays["tf"]
        contents["csr"] = sorted((terms[termid], str(ids[rows[j]]), float(tf[j]))
                                 for termid in terms for j in range(indptr[termid], indptr[termid + 1]))
        contents["doc_len"] = arrays["doc_len"].tolist()
    return contents


def test_an_updated_lexical_index_equals_a_whole_build(recall_store):
    """The next version updates the published index with what changed (documents of removed and edited
    memories out, new and edited ones in, rows renumbered after a back-dated memory) instead of indexing every
    text again; the result is the index a whole build gives, and scores as DuckDB's match_bm25 does."""
    import shutil

    from codex_dreams.store import open_store

    with open_store(recall_store) as con:
        con.execute("update raw.memories set deleted_at = now() where id = ?", [CORPUS[0].id])
        con.execute("update raw.memories set content = 'The ferry to Hydra leaves from Piraeus at dawn, "
                    "tickets bought' where id = ?", [CORPUS[1].id])
        con.execute("insert into raw.memories (id, content, created_at, updated_at, source) values "
                    "('early', 'Zyxw: a word no other memory has, and the ferry again', '2000-01-01', "
                    "'2000-01-01', 'test'), ('late', 'Tomato plants on the balcony need water', '2099-01-01', "
                    "'2099-01-01', 'test')")
    updated = publish(recall_store)
    assert updated.manifest["lexical"]["updates"] == 1
    updated_index = _index_contents(updated.path)
    from codex_dreams.retrieval.engine import Recaller

    engine = Recaller(recall_store)
    snap = engine.snapshot()
    cursor = snap.cursor()
    for query in ("ferry tickets to Hydra", "zyxw", "tomato balcony", "Kovacsevic"):
        ours, _ = snap.lexical.search(cursor, query)
        theirs = dict(cursor.execute("select row_id, fts_main_memories.match_bm25(row_id, ?) from memories",
                                     [query]).fetchall())
        np.testing.assert_allclose(ours, [theirs[row] or 0.0 for row in range(snap.n)], rtol=1e-9, atol=1e-12)
    engine.close()

    shutil.rmtree(recall_dir(recall_store))
    whole = publish(recall_store)
    assert whole.manifest["lexical"]["updates"] == 0
    whole_index = _index_contents(whole.path)
    assert updated_index == whole_index

    # after MAX_INDEX_UPDATES updates in a row the index is built whole once (freed blocks leave the file)
    from codex_dreams.retrieval import snapshot

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshot, "MAX_INDEX_UPDATES", 2)
        assert [publish(recall_store).manifest["lexical"]["updates"] for _ in range(4)] == [1, 2, 0, 1]
    # ... and so is an index where too much changed, from an empty file
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshot, "WHOLE_BUILD_CHANGES", 0)
        with open_store(recall_store) as con:
            con.execute("update raw.memories set content = content || ' again' where id in (?, ?, ?, ?)",
                        [m.id for m in CORPUS[3:7]])  # 8 changed documents, more than a fifth
        rebuilt = publish(recall_store)
        assert rebuilt.manifest["lexical"]["updates"] == 0
    with open_store(recall_store) as con:
        con.execute("update raw.memories set content = replace(content, ' again', '') where id in (?, ?, ?, ?)",
                    [m.id for m in CORPUS[3:7]])
    assert _index_contents(publish(recall_store).path) == whole_index
    # ... and so is an index the update cannot read (the fts extension's tables changed under it)
    broken = duckdb.connect(str(current_snapshot_path(recall_store) / "snapshot.duckdb"))
    broken.execute("drop table fts_main_memories.dict")
    broken.close()
    rebuilt = publish(recall_store)
    assert rebuilt.manifest["lexical"]["updates"] == 0 and _index_contents(rebuilt.path) == whole_index


def test_the_query_tokenizer_is_the_fts_index_tokenizer(recall_store):
    path = current_snapshot_path(recall_store)
    from codex_dreams.store import load_extension

    con = duckdb.connect(str(path / "snapshot.duckdb"), read_only=True,
                         config={"extension_directory": str(recall_store.extension_dir)})
    load_extension(con, "fts")
    for text in TRICKY + [m.text for m in CORPUS]:
        theirs = [t for t in con.execute("select fts_main_memories.tokenize(?)", [text]).fetchone()[0] if t]
        assert tokenize(text) == theirs, text
    con.close()


@pytest.mark.parametrize("query", ["Kovacsevic", "ferry tickets to Hydra", "the new home office",
                                   "LH1234 Zurich gate", "tomato plants balcony breakfast", "nothing matches zyxw"])
def test_bm25_scores_equal_match_bm25(recall_store, query):
    from codex_dreams.retrieval.engine import Recaller

    engine = Recaller(recall_store)
    snap = engine.snapshot()
    cursor = snap.cursor()
    ours, _ = snap.lexical.search(cursor, query)
    theirs = dict(cursor.execute(
        "select row_id, fts_main_memories.match_bm25(row_id, ?) from memories", [query]).fetchall())
    for row in range(snap.n):
        expected = theirs[row] or 0.0
        assert ours[row] == pytest.approx(expected, rel=1e-9, abs=1e-12), (query, row)


def test_every_live_memory_gets_a_strength_from_one_model_with_its_constants_in_dbt_vars(monkeypatch):
    """A memory not in long-term memory takes its consolidation strength, else its decayed short-term strength;
    the weights and the half-life are dbt vars (CODEX_PARAMS reaches them like every other parameter)."""
    from codex_dreams.retrieval.snapshot import strength_prior

    day = 86400.0
    inputs = {"stm_strength": np.array([0.5, 0.9, np.nan]), "consolidation_strength": np.array([np.nan, 0.8, np.nan]),
              "retrieval_strength": np.array([np.nan, np.nan, 0.7]), "access_count": np.array([0, 0, 3])}
    created = np.array([0.0, 30 * day, 30 * day])
    prior, reference = strength_prior(created, inputs)
    assert reference == 30 * day
    # 0.4 x strength + 0.3 x recency (0.5 after one 30-day half-life) + 0.3 x (1 - e^(-accesses / 3)):
    # [0.4*0.5 + 0.3*0.5, 0.4*0.8 + 0.3*1, 0.4*0.7 + 0.3*1 + 0.3*(1 - e^-1)] = [0.35, 0.62, 0.7696]
    np.testing.assert_allclose(prior, [0.35, 0.62, 0.58 + 0.3 * (1 - np.exp(-1))], atol=1e-6)

    monkeypatch.setenv("CODEX_PARAMS", json.dumps({"recall_strength_weights": {
        "consolidation": 1.0, "recency": 0.0, "practice": 0.0}}))
    prior, _ = strength_prior(created, inputs)
    np.testing.assert_allclose(prior, [0.5, 0.8, 0.7], atol=1e-6)
