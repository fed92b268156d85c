"""The recall snapshot: what `codex query` reads, published by the pipeline after each run.

DuckDB lets one process hold the store read-write and then nobody else can open it, not even read-only. So
recall never opens the store on demand: the `recall_snapshot` asset (inside the `duckdb_writer` pool) reads the
store and writes a self-contained, read-only copy of what recall needs into a new version directory:

    $CODEX_HOME/recall/
        CURRENT                     the published version's name (replaced atomically with os.replace)
        <version>/
            snapshot.duckdb         memories (row_id, id, content, created_at, metadata, signals) + fts index
            embeddings.npy          float32 [n, d], unit rows (zero rows: not embedded yet), row i = row_id i
            ids.npy                 memory ids, row-aligned with embeddings.npy
            embedding_versions.npy  uint64 [n]: a hash of each row's enrichment (0: none); the next build takes
                                    the vectors of unchanged rows from here instead of the store
            created_at.npy          int64 microseconds since 1970 (UTC), row-aligned
            content.bin + content_offsets.npy, metadata.bin + metadata_offsets.npy
                                    the texts and metadata JSON, row-aligned (see `write_strings`)
            embedded.npy            bool [n]: the row has an embedding
            strength.npy            float32 [n]: the retrieval-strength prior in [0, 1]
            lexical.npz             the fts index's postings as CSR (term -> rows, tf) and document lengths
            graph.npz               the association graph as CSR (row -> neighbour rows, strength, link type)
            manifest.json           format, embedding model/dim, counts, created_at, what the store had

A new version starts from the published one: unchanged rows' vectors are copied from it and its fts index is
updated with the changed documents (`_start_database`, `_read_embeddings`); only what changed is read and indexed.

A version is written to a temporary directory, renamed into place, and only then named in CURRENT, so a reader
sees either the old or the new snapshot, never a partial one. Any number of processes read it at once. Old
versions are removed after publishing (the newest `KEEP_VERSIONS` and the current one stay).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from codex_dreams.errors import OperationalError
from codex_dreams.settings import PRIVATE_DIR_MODE

SNAPSHOT_FORMAT = 1
CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "manifest.json"
DATABASE_FILE = "snapshot.duckdb"
KEEP_VERSIONS = 2
VERSIONS_FILE = "embedding_versions.npy"
FTS_TABLE = "memories"
FTS_STEMMER = "porter"
FTS_STOPWORDS = "english"
# Letters and digits of any script are kept (the fts default keeps only a-z, dropping "2023" or "LH1234").
FTS_IGNORE = r"[^\p{L}\p{N}]+"
LINK_TYPES = ("hebbian", "semantic", "temporal", "creative")
_STALE_TMP_SECONDS = 3600


class SnapshotUnavailable(OperationalError):
    """There is no published recall snapshot and none can be built now; the message says what to do."""


@dataclass(frozen=True)
class SnapshotInfo:
    version: str
    path: Path
    manifest: dict


def recall_dir(settings) -> Path:
    return settings.codex_home.expanduser().resolve() / "recall"


def current_version(settings) -> str | None:
    """The published version's name, or None before the first publish."""
    try:
        text = (recall_dir(settings) / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def current_snapshot_path(settings) -> Path | None:
    version = current_version(settings)
    if version is None:
        return None
    path = recall_dir(settings) / version
    return path if (path / MANIFEST_FILE).exists() else None


def _published(settings, log=None) -> SnapshotInfo | None:
    """The published version with its manifest, if its files match their checksums; None otherwise (none yet,
    unreadable, written before checksums, or damaged): the next version is then built whole from the store, so
    damaged vectors or a truncated index are never carried into it."""
    path = current_snapshot_path(settings)
    if path is None:
        return None
    try:
        manifest = read_manifest(path)
        if not manifest.get("checksums"):
            return None
        verify_files(path, manifest)
    except SnapshotDamaged as damage:
        if log:
            log(f"recall snapshot {path.name} is damaged ({damage}); building the new version whole from the store")
        return None
    return SnapshotInfo(path.name, path, manifest)


class SnapshotDamaged(OperationalError):
    """A snapshot version's files do not match its manifest (missing, truncated or overwritten)."""


def file_checksum(path: Path) -> str:
    """crc32 and size of a file: cheap enough to check on every open (~1 GB/s), and any torn write, truncation
    or stray bytes change it. (Integrity, not security: nothing here defends against a deliberate forger.)"""
    crc = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return f"crc32:{crc:08x}:{path.stat().st_size}"


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SnapshotDamaged(f"{MANIFEST_FILE} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError):
        raise SnapshotDamaged(f"{MANIFEST_FILE} is not readable JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("version"), str) or \
            not isinstance(manifest.get("memories"), int):
        raise SnapshotDamaged(f"{MANIFEST_FILE} is not a recall snapshot manifest")
    return manifest


def verify_files(path: Path, manifest: dict) -> None:
    """Raise SnapshotDamaged naming the first file that is missing or does not match its checksum. A manifest
    without checksums (written before they existed) is taken as it is."""
    for name, expected in sorted((manifest.get("checksums") or {}).items()):
        try:
            actual = file_checksum(path / name)
        except FileNotFoundError:
            raise SnapshotDamaged(f"{name} is missing") from None
        except OSError as error:
            raise SnapshotDamaged(f"{name} cannot be read ({error.strerror})") from None
        if actual != expected:
            raise SnapshotDamaged(f"{name} does not match its checksum")


# ---- reading the store -----------------------------------------------------------------------------------

def _columns(con, schema: str, table: str) -> set[str]:
    rows = con.execute(
        "select column_name from duckdb_columns() where database_name = current_database() "
        "and schema_name = ? and table_name = ?",
        [schema, table],
    ).fetchall()
    return {row[0] for row in rows}


def _read_memories(con):
    import pyarrow as pa

    if not _columns(con, "raw", "memories"):
        return pa.table({"id": pa.array([], pa.string()), "content": pa.array([], pa.string()),
                         "created_at": pa.array([], pa.timestamp("us")), "metadata": pa.array([], pa.string()),
                         "search_text": pa.array([], pa.string())})
    return con.execute(
        f"""
        select id, content, created_at, coalesce(metadata::varchar, '{{}}') as metadata,
               {SEARCH_TEXT_SQL} as search_text
        from raw.memories
        where deleted_at is null
        order by created_at, id
        """
    ).fetch_arrow_table()


# What the lexical index reads: the text plus who said or wrote it (questions name people: "What did Caroline
# say about ...?"), from the metadata fields `speaker`, `author` and `people` (a name or a list of names).
SEARCH_TEXT_SQL = """concat_ws(' ', content,
    json_extract_string(metadata, '$.speaker'), json_extract_string(metadata, '$.author'),
    case json_type(metadata, '$.people')
         when 'ARRAY' then array_to_string(json_extract_string(metadata, '$.people[*]'), ' ')
         when 'VARCHAR' then json_extract_string(metadata, '$.people') end)"""
LEXICAL_FIELD = "search_text"
EPISODE_FILE = "episode.npy"  # int32 [n]: the row's episode number, -1 for none (see _read_episodes)


def _embedding_source(settings) -> tuple[str | None, str | None]:
    """(model key, embedding model) the query embedder uses; (None, None) if enrichment is unavailable."""
    try:
        from codex_dreams.enrichment import active_embedding_model, active_model_key
    except ImportError:
        return None, None
    return active_model_key(settings), active_embedding_model(settings)


def _read_embeddings(con, n: int, model_key: str | None, embedding_model: str | None,
                     previous: SnapshotInfo | None = None):
    """float32 [n, d] unit rows aligned with row_id (zero rows where no current embedding), d, the number of
    embedded rows, and the uint64 version of each row's enrichment (0 where none).

    The row of the active model key whose content hash is current (an edited memory's old vector is stale). A
    vector whose row is unchanged since the published snapshot `previous` (same memory, same version, same model
    and dimension) is taken from that snapshot's embeddings.npy; only new or changed rows read their vector from
    the store, so a run after a few new memories reads a few vectors, not every one."""
    columns = _columns(con, "enriched", "memory_enrichment")
    none = (None, 0, 0, np.zeros(n, dtype=np.uint64))
    if n == 0 or model_key is None or not {"embedding", "model", "content_hash", "embedding_model"} <= columns:
        return none
    # chosen over the narrow columns; embedding_dim is set exactly when embedding is (enrichment.cache.write_rows)
    chosen = con.execute(
        """
        select r.row_id, r.id, e.embedding_dim as dim,
               hash(e.enriched_at, e.content_hash, e.embedding_dim) as version
        from snapshot_rows as r
        join raw.memories as m on m.id = r.id
        join enriched.memory_enrichment as e on e.memory_id = r.id
        where e.model = ? and e.embedding_model = ? and e.embedding_dim > 0
          and e.content_hash = left(sha256(m.content), 32)
        """,
        [model_key, embedding_model],
    ).to_arrow_table()
    if chosen.num_rows == 0:
        return none
    dims = chosen.column("dim").to_numpy()
    dim = int(np.bincount(dims).argmax())  # one model, one dimension; anything else is skipped
    keep = dims == dim
    rows = chosen.column("row_id").to_numpy()[keep]
    ids = np.asarray(chosen.column("id").to_pylist(), dtype=object)[keep]
    versions = np.zeros(n, dtype=np.uint64)
    versions[rows] = chosen.column("version").to_numpy()[keep]
    matrix = np.zeros((n, dim), dtype=np.float32)

    reused = _reuse_vectors(previous, model_key, embedding_model, dim, rows, ids, versions, matrix)
    fetch = ~reused
    if fetch.any():
        import pyarrow as pa

        from codex_dreams.enrichment.embeddings import stored_unit_rows

        # a temporary table, not the registered Arrow scan, for the optimizer's estimates (see _read_signals)
        con.register("snapshot_fetch_arrow", pa.table({"row_id": pa.array(rows[fetch], pa.int32())}))
        try:
            con.execute("create or replace temp table snapshot_fetch as select * from snapshot_fetch_arrow")
        finally:
            con.unregister("snapshot_fetch_arrow")
        try:
            result = con.execute(
                """
                select f.row_id, e.embedding
                from snapshot_fetch as f
                join snapshot_rows as r on r.row_id = f.row_id
                join enriched.memory_enrichment as e on e.memory_id = r.id
                where e.model = ? and e.embedding_model = ?
                """,
                [model_key, embedding_model],
            ).fetch_arrow_table()
        finally:
            con.execute("drop table if exists temp.snapshot_fetch")
        matrix[result.column("row_id").to_numpy()] = stored_unit_rows(result.column("embedding").combine_chunks())
    return matrix, dim, int(keep.sum()), versions


def _reuse_vectors(previous: SnapshotInfo | None, model_key: str, embedding_model: str, dim: int,
                   rows: np.ndarray, ids: np.ndarray, versions: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Copy into `matrix` the vectors of `rows` (memory `ids`) that the snapshot at `previous` holds for the same
    enrichment version, model and dimension; returns which of `rows` were filled."""
    reused = np.zeros(len(rows), dtype=bool)
    try:
        embedding = previous.manifest["embedding"] if previous else None
        if not embedding or (embedding["model_key"], embedding["model"], embedding["dim"]) != \
                (model_key, embedding_model, dim):
            return reused
        old_versions = np.load(previous.path / VERSIONS_FILE)
        old_ids = np.load(previous.path / "ids.npy")
        old_vectors = np.load(previous.path / "embeddings.npy", mmap_mode="r")
    except (OSError, ValueError, KeyError):  # no usable previous snapshot: every vector is read
        return reused
    old_row = {memory_id: row for row, memory_id in enumerate(old_ids.tolist())}
    source = np.array([old_row.get(memory_id, -1) for memory_id in ids], dtype=np.int64)
    found = source >= 0
    found[found] = old_versions[source[found]] == versions[rows[found]]
    matrix[rows[found]] = old_vectors[source[found]]
    reused[found] = True
    return reused


def _read_strength_inputs(con, n: int) -> tuple[dict[str, np.ndarray], dict]:
    """Per-row LTM columns and access counts, whatever of them the store has."""
    out: dict[str, np.ndarray] = {}
    found: dict = {"ltm_columns": [], "access_log": False}
    ltm = _columns(con, "long_term_memory", "ltm_memories")
    if n and "memory_id" in ltm:
        wanted = [c for c in ("retrieval_strength", "strength", "stability", "category", "cluster_id") if c in ltm]
        found["ltm_columns"] = wanted
        if wanted:
            select = ", ".join(f"l.{c}" for c in wanted)
            result = con.execute(
                f"""
                select r.row_id, {select}
                from snapshot_rows as r
                join (select * from long_term_memory.ltm_memories qualify row_number() over (partition by memory_id) = 1) as l
                  on l.memory_id = r.id
                """
            ).fetch_arrow_table()
            rows = result.column("row_id").to_numpy()
            for name in wanted:
                column = result.column(name)
                if name in ("category", "cluster_id"):
                    values = np.full(n, None, dtype=object)
                    values[rows] = [None if v is None else str(v) for v in column.to_pylist()]
                else:
                    values = np.full(n, np.nan, dtype=np.float64)
                    values[rows] = np.asarray(column.to_pylist(), dtype=np.float64)
                out[name] = values
    # Memories not (yet) in long-term memory still have a strength: their consolidation strength, else their
    # decayed short-term strength, so every live memory gets one from the same model.
    for schema, table, column, name in (("consolidation", "memory_consolidation", "consolidation_strength",
                                         "consolidation_strength"),
                                        ("short_term_memory", "stm_memories", "strength", "stm_strength")):
        if n and {"memory_id", column} <= _columns(con, schema, table):
            found.setdefault("other_columns", []).append(f"{table}.{column}")
            result = con.execute(f"""
                select r.row_id, any_value(s.{column}) as value
                from snapshot_rows as r join {schema}.{table} as s on s.memory_id = r.id group by r.row_id
            """).fetchnumpy()
            values = np.full(n, np.nan, dtype=np.float64)
            values[result["row_id"].astype(np.int64)] = result["value"].astype(np.float64)
            out[name] = values
    access = _columns(con, "long_term_memory", "access_log")
    if n and {"memory_id", "accessed_at"} <= access:
        found["access_log"] = True
        result = con.execute(
            """
            select r.row_id, count(*) as accesses, max(a.accessed_at) as last_accessed_at
            from snapshot_rows as r join long_term_memory.access_log as a on a.memory_id = r.id
            group by r.row_id
            """
        ).fetch_arrow_table()
        counts = np.zeros(n, dtype=np.int64)
        counts[result.column("row_id").to_numpy()] = result.column("accesses").to_numpy()
        out["access_count"] = counts
        last = np.full(n, None, dtype=object)
        last[result.column("row_id").to_numpy()] = result.column("last_accessed_at").to_pylist()
        out["last_accessed_at"] = last
    return out, found


def strength_prior(created_at_s: np.ndarray, inputs: dict[str, np.ndarray],
                   params: dict | None = None) -> tuple[np.ndarray, float | None]:
    """The retrieval-strength signal in [0, 1] per memory (docs/recall.md, "strength"), with the dbt vars
    `recall_strength_weights`, `recall_recency_half_life_days` and `recall_practice_scale`:

    w_consolidation x consolidation (the first the memory has of: LTM retrieval_strength, LTM strength, its
        consolidation strength, its decayed short-term strength; else stability relative to the largest)
    + w_recency x recency (halves every half-life, measured from the newest memory in the snapshot: event time)
    + w_practice x practice (1 - exp(-accesses / scale), the testing effect).
    """
    from codex_dreams.params import biological_params

    params = params or biological_params()
    weights = params["recall_strength_weights"]
    n = len(created_at_s)
    if n == 0:
        return np.zeros(0, dtype=np.float32), None
    consolidation = np.zeros(n, dtype=np.float64)
    filled = np.zeros(n, dtype=bool)
    for name in ("retrieval_strength", "strength", "consolidation_strength", "stm_strength"):
        values = inputs.get(name)
        if values is not None:
            take = ~filled & ~np.isnan(values)
            consolidation[take] = np.clip(values[take], 0.0, 1.0)
            filled |= take
    stability = inputs.get("stability")
    if stability is not None:
        take = ~filled & ~np.isnan(stability) & (stability > 0)
        if take.any():
            consolidation[take] = np.clip(stability[take] / np.nanmax(stability[take]), 0.0, 1.0)
    reference = float(np.max(created_at_s))
    age_days = np.maximum(reference - created_at_s, 0.0) / 86400.0
    recency = np.power(0.5, age_days / float(params["recall_recency_half_life_days"]))
    accesses = inputs.get("access_count")
    practice = 1.0 - np.exp(-accesses / float(params["recall_practice_scale"])) if accesses is not None \
        else np.zeros(n)
    prior = (float(weights["consolidation"]) * consolidation + float(weights["recency"]) * recency
             + float(weights["practice"]) * practice)
    return np.clip(prior, 0.0, 1.0).astype(np.float32), reference


def _read_graph(con, n: int) -> tuple[dict[str, np.ndarray], dict]:
    """The association graph as CSR over row ids, both directions, each row's links strongest first."""
    empty = {"indptr": np.zeros(n + 1, dtype=np.int64), "indices": np.zeros(0, dtype=np.int32),
             "weights": np.zeros(0, dtype=np.float32), "types": np.zeros(0, dtype=np.int8)}
    columns = _columns(con, "consolidation", "associations")
    info = {"table": bool(columns), "links": 0, "link_types": list(LINK_TYPES)}
    if n == 0 or not {"memory_a", "memory_b", "strength"} <= columns:
        return empty, info
    link_type = "coalesce(s.link_type::varchar, 'unknown')" if "link_type" in columns else "'unknown'"
    result = con.execute(
        f"""
        select a.row_id as src, b.row_id as dst, s.strength::float as strength, {link_type} as link_type
        from consolidation.associations as s
        join snapshot_rows as a on a.id = s.memory_a
        join snapshot_rows as b on b.id = s.memory_b
        where s.strength > 0 and a.row_id <> b.row_id
        """
    ).fetch_arrow_table()
    if result.num_rows == 0:
        return empty, info
    src = result.column("src").to_numpy().astype(np.int64)
    dst = result.column("dst").to_numpy().astype(np.int64)
    strength = np.clip(result.column("strength").to_numpy().astype(np.float32), 0.0, 1.0)
    names = result.column("link_type").to_pylist()
    type_names = list(LINK_TYPES) + sorted({t for t in names if t not in LINK_TYPES})
    codes = {name: i for i, name in enumerate(type_names)}
    types = np.array([codes[t] for t in names], dtype=np.int8)
    # undirected: every link is followed from either end
    src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    strength, types = np.concatenate([strength, strength]), np.concatenate([types, types])
    order = np.lexsort((-strength, src))
    src, dst, strength, types = src[order], dst[order], strength[order], types[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    info.update(links=int(result.num_rows), link_types=type_names)
    return {"indptr": indptr, "indices": dst.astype(np.int32), "weights": strength, "types": types}, info


# ---- writing a version -----------------------------------------------------------------------------------

def _fts_pragma(table: str) -> str:
    return (f"pragma create_fts_index('{table}', 'row_id', '{LEXICAL_FIELD}', stemmer='{FTS_STEMMER}', "
            f"stopwords='{FTS_STOPWORDS}', ignore='{FTS_IGNORE}', strip_accents=1, lower=1, overwrite=1)")


def _lexical_config() -> dict:
    """What the index's postings depend on besides the texts: a previous index is reused only if it matches."""
    return {"index": f"fts_main_{FTS_TABLE}", "field": LEXICAL_FIELD, "stemmer": FTS_STEMMER,
            "stopwords": FTS_STOPWORDS, "ignore": FTS_IGNORE}


def _start_database(path: Path, table, extension_dir: Path | None, previous: SnapshotInfo | None = None):
    """snapshot.duckdb with the memories (`table`: row_id, id, content, created_at, metadata) and a BM25 index;
    returns the open connection (for `_finish_database`), the index's postings as CSR arrays and whether the
    previous snapshot's index was updated (True) or the index was built whole (False). Needs only raw.memories,
    so `build_snapshot` runs it in a thread while it reads the other signals from the store.

    The fts extension builds an index only whole (~0.2 s at 10k memories, growing with the store). So the
    published snapshot's database (`previous`) is copied and its index updated with what changed: the documents
    of removed or edited memories leave it, and the new or edited ones are indexed by the extension itself (a
    small index over them alone, merged in), so tokens, stop words and stems are exactly the extension's. Any
    previous snapshot that does not fit (another index configuration, too many changes, too many updates in a
    row, no memories table, an index the update cannot read) means a whole build."""
    import duckdb

    from codex_dreams.store import connect, load_extension

    copied = _copy_previous_database(previous, path)
    con = connect(path, extension_dir=extension_dir, wait_seconds=0)
    try:
        load_extension(con, "fts")
        con.register("snapshot_table", table)
        try:
            updated = copied and _update_index(con, table.num_rows)
        except duckdb.Error:  # the update reads the extension's own tables: if they change, build whole
            updated = False
        if copied and not updated:  # a whole build starts from an empty file, not from the copy's free blocks
            con.close()
            path.unlink()
            con = connect(path, extension_dir=extension_dir, wait_seconds=0)
            load_extension(con, "fts")
            con.register("snapshot_table", table)
        if not updated:
            con.execute("create table memories as select * from snapshot_table order by row_id")
            con.execute(_fts_pragma(FTS_TABLE))
        con.unregister("snapshot_table")
        n = table.num_rows
        num_docs, avgdl = con.execute(f"select num_docs, avgdl from fts_main_{FTS_TABLE}.stats").fetchone()
        terms = con.execute(f"select coalesce(max(termid) + 1, 0) from fts_main_{FTS_TABLE}.dict").fetchone()[0]
        postings = con.execute(
            f"""
            select t.termid, d.name as row_id, count(*)::float as tf
            from fts_main_{FTS_TABLE}.terms as t join fts_main_{FTS_TABLE}.docs as d on d.docid = t.docid
            group by t.termid, d.name
            order by t.termid, d.name
            """
        ).fetchnumpy()
        lengths = con.execute(f"select name, len from fts_main_{FTS_TABLE}.docs").fetchnumpy()
        termids = postings["termid"].astype(np.int64)
        term_indptr = np.zeros(int(terms) + 1, dtype=np.int64)  # termids may have gaps (removed terms)
        if len(termids):
            np.cumsum(np.bincount(termids, minlength=int(terms)), out=term_indptr[1:])
        doc_len = np.zeros(n, dtype=np.float32)
        doc_len[lengths["name"].astype(np.int64)] = lengths["len"].astype(np.float32)
    except BaseException:  # on success the connection goes to _finish_database, which closes it
        con.close()
        raise
    return con, {
        "term_indptr": term_indptr,
        "rows": postings["row_id"].astype(np.int32),
        "tf": postings["tf"].astype(np.float32),
        "doc_len": doc_len,
        "num_docs": np.array(int(num_docs or 0), dtype=np.int64),
        "avgdl": np.array(float(avgdl) if avgdl is not None else 0.0, dtype=np.float64),
    }, updated


# An index updated this many times in a row is built whole once (deleted rows leave free blocks in the file).
MAX_INDEX_UPDATES = 50
# More changed documents than this and a fifth of the memories: a whole build is as cheap as the update.
WHOLE_BUILD_CHANGES = 100


def _index_updates(previous: SnapshotInfo | None) -> int:
    """How many builds in a row updated the previous version's index (0: it was built whole)."""
    return int((previous.manifest.get("lexical") or {}).get("updates", 0)) if previous else 0


def _copy_previous_database(previous: SnapshotInfo | None, path: Path) -> bool:
    """Copy the published snapshot's database to `path` if its index can be updated; False if not."""
    lexical = (previous.manifest.get("lexical") or {}) if previous else {}
    if {key: lexical.get(key) for key in _lexical_config()} != _lexical_config() or \
            _index_updates(previous) >= MAX_INDEX_UPDATES:
        return False
    try:
        shutil.copyfile(previous.path / DATABASE_FILE, path)
        return True
    except OSError:
        path.unlink(missing_ok=True)
        return False


def _update_index(con, n: int) -> bool:
    """Bring the copied index up to date with `snapshot_table` (see `_start_database`); False (nothing changed
    in the database's index) when a whole build is the better choice."""
    index = f"fts_main_{FTS_TABLE}"
    if not con.execute("select count(*) from duckdb_tables() where schema_name = 'main' and table_name = ? ",
                       [FTS_TABLE]).fetchone()[0]:
        return False
    # A private copy in the version's temporary directory: a failure discards it with the directory, so the
    # statements need no transaction of their own. The extension indexes the new documents first.
    delta = "fts_main_index_added"
    try:
        # a document is kept when its memory's text is unchanged; it is then only renumbered (row ids follow time)
        con.execute("""
            create or replace temp table index_moves as
            select old.row_id as old_row, new.row_id as new_row
            from memories as old left join snapshot_table as new
                on new.id = old.id and new.search_text = old.search_text
        """)
        con.execute("""
            create or replace table index_added as
            select row_id, search_text from snapshot_table as new
            anti join memories as old on old.id = new.id and old.search_text = new.search_text
        """)
        removed = con.execute("select count(*) from index_moves where new_row is null").fetchone()[0]
        added = con.execute("select count(*) from index_added").fetchone()[0]
        if removed + added > max(WHOLE_BUILD_CHANGES, n // 5):
            return False
        if added:
            con.execute(_fts_pragma("index_added"))
        gone = f"(select d.docid from {index}.docs as d join index_moves as m on m.old_row = d.name " \
               "where m.new_row is null)"
        con.execute(f"""
            update {index}.dict as dict set df = dict.df - g.docs
            from (select termid, count(distinct docid) as docs from {index}.terms
                  where docid in {gone} group by termid) as g
            where dict.termid = g.termid
        """)
        con.execute(f"delete from {index}.terms where docid in {gone}")
        con.execute(f"delete from {index}.docs where docid in {gone}")
        con.execute(f"delete from {index}.dict where df = 0")
        con.execute(f"""
            update {index}.docs as d set name = m.new_row
            from index_moves as m where m.old_row = d.name and m.new_row <> m.old_row
        """)
        if added:
            # merged: termids of new terms follow the largest one, docids the largest one
            con.execute(f"""
                create or replace temp table index_new_terms as
                select (select coalesce(max(termid), -1) from {index}.dict)
                       + row_number() over (order by d.term) as termid,
                       d.term, d.df
                from {delta}.dict as d anti join {index}.dict as main on main.term = d.term
            """)
            con.execute(f"""
                update {index}.dict as main set df = main.df + d.df
                from {delta}.dict as d where d.term = main.term
            """)
            con.execute(f"insert into {index}.dict select termid, term, df from index_new_terms")
            offset = con.execute(f"select coalesce(max(docid), -1) + 1 from {index}.docs").fetchone()[0]
            con.execute(f"insert into {index}.docs select docid + ?, name, len from {delta}.docs", [offset])
            con.execute(f"""
                insert into {index}.terms
                select t.docid + ?, t.fieldid, main.termid
                from {delta}.terms as t
                join {delta}.dict as d on d.termid = t.termid
                join {index}.dict as main on main.term = d.term
            """, [offset])
        con.execute(f"""
            update {index}.stats set num_docs = s.num_docs, avgdl = s.avgdl
            from (select count(*) as num_docs, avg(len) as avgdl from {index}.docs) as s
        """)
        con.execute("create or replace table memories as select * from snapshot_table order by row_id")
    finally:
        con.execute(f"drop schema if exists {delta} cascade")
        for name in ("temp.index_moves", "main.index_added", "temp.index_new_terms"):
            con.execute(f"drop table if exists {name}")
    return True


def _finish_database(con, signals) -> None:
    """Add the per-memory signals (`signals`: row_id and the signal columns) to the snapshot's memories table,
    then checkpoint and close it."""
    try:
        con.register("snapshot_signals", signals)
        columns = [name for name in signals.column_names if name != "row_id"]
        types = dict(con.execute("select column_name, column_type from (describe snapshot_signals)").fetchall())
        for name in columns:
            con.execute(f'alter table memories add column "{name}" {types[name]}')
        if columns:
            assignments = ", ".join(f'"{name}" = s."{name}"' for name in columns)
            con.execute(f"update memories set {assignments} from snapshot_signals as s "
                        "where memories.row_id = s.row_id")
        con.unregister("snapshot_signals")
        con.execute("checkpoint")
    finally:
        con.close()


def write_strings(prefix: Path, column) -> None:
    """Strings as one UTF-8 blob (`<prefix>.bin`) + int64 offsets (`<prefix>_offsets.npy`), row-aligned.

    Read back memory-mapped by `StringColumn`: fetching k rows touches k slices. (A DuckDB `row_id IN (...)`
    lookup scans the whole table: ~10 ms at 100k memories.)
    """
    import pyarrow as pa

    array = column.combine_chunks().cast(pa.large_string()) if len(column) else pa.array([], pa.large_string())
    if len(array):
        array = pa.concat_arrays([array])  # offset 0, one buffer
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[: len(array) + 1].copy()
        data = array.buffers()[2]
        blob = memoryview(data)[int(offsets[0]):int(offsets[-1])] if data is not None else b""
        offsets -= offsets[0]
    else:
        offsets, blob = np.zeros(1, dtype=np.int64), b""
    np.save(prefix.with_name(prefix.name + "_offsets.npy"), offsets)
    prefix.with_name(prefix.name + ".bin").write_bytes(bytes(blob))


class StringColumn:
    """Row-aligned strings written by `write_strings`, memory-mapped."""

    def __init__(self, prefix: Path) -> None:
        self.offsets = np.load(prefix.with_name(prefix.name + "_offsets.npy"), mmap_mode="r")
        path = prefix.with_name(prefix.name + ".bin")
        self.data = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else np.zeros(0, np.uint8)

    def __getitem__(self, row: int) -> str:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        return self.data[start:end].tobytes().decode("utf-8")


def _new_version() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]


def build_snapshot(con, settings, *, keep: int = KEEP_VERSIONS, log=None) -> SnapshotInfo:
    """Read the store through `con` (read-only is enough), write a new version and publish it.

    Degrades gracefully: a store without embeddings, LTM tables, an access log or associations still yields a
    snapshot (those signals are then zero for every memory, and the manifest says what was missing).
    """
    import pyarrow as pa

    started = time.perf_counter()
    root = recall_dir(settings)
    root.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)  # the snapshot holds every memory's text
    memories = _read_memories(con)
    n = memories.num_rows
    row_ids = pa.array(np.arange(n, dtype=np.int32))
    version = _new_version()
    tmp = root / f".tmp-{version}"
    tmp.mkdir(mode=PRIVATE_DIR_MODE)
    try:
        return _build_version(con, settings, memories, row_ids, version, tmp, started, keep, log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build_version(con, settings, memories, row_ids, version: str, tmp: Path, started: float, keep: int, log
                   ) -> SnapshotInfo:
    import pyarrow as pa

    n = memories.num_rows
    root = tmp.parent
    previous = _published(settings, log)  # the published version, if intact: unchanged parts are taken from it
    # the lexical index needs only the memories: it is built (DuckDB, outside the GIL) while the signals are read
    base = pa.table({"row_id": row_ids, "id": memories.column("id"), "content": memories.column("content"),
                     "created_at": memories.column("created_at"), "metadata": memories.column("metadata"),
                     "search_text": memories.column("search_text")})
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recall-fts") as pool:
        database = pool.submit(_start_database, tmp / DATABASE_FILE, base, settings.extension_dir, previous)
        try:
            signals = _read_signals(con, settings, memories, row_ids, previous)
        except BaseException:
            with contextlib.suppress(BaseException):
                database.result()[0].close()
            raise
        snapshot_db, lexical, index_updated = database.result()
    model_key, embedding_model, embeddings, dim, embedded, versions, inputs, found, graph, graph_info = signals
    if embeddings is None:  # nothing embedded yet: dense recall is off for this snapshot
        dim = 0
        embeddings = np.zeros((n, 0), dtype=np.float32)
    created = memories.column("created_at").cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)
    created_s = created.astype("datetime64[us]").astype(np.int64).astype(np.float64) / 1e6
    prior, reference = strength_prior(created_s, inputs)

    columns = {"row_id": row_ids, "strength": pa.array(prior, pa.float32())}
    for name in ("retrieval_strength", "stability"):
        if name in inputs:
            columns[name] = pa.array(inputs[name], pa.float64(), from_pandas=True)
    for name in ("category", "cluster_id"):
        if name in inputs:
            columns[name] = pa.array(inputs[name].tolist(), pa.string())
    if "access_count" in inputs:
        columns["access_count"] = pa.array(inputs["access_count"], pa.int64())
        columns["last_accessed_at"] = pa.array(inputs["last_accessed_at"].tolist(), pa.timestamp("us"))
    _finish_database(snapshot_db, pa.table(columns))
    np.save(tmp / "embeddings.npy", np.ascontiguousarray(embeddings, dtype=np.float32))
    np.save(tmp / VERSIONS_FILE, versions)
    ids = np.array(memories.column("id").to_pylist(), dtype=str) if n else np.zeros(0, dtype="U1")
    np.save(tmp / "ids.npy", ids)
    np.save(tmp / "strength.npy", prior)
    np.save(tmp / EPISODE_FILE, inputs.get("episode", np.full(n, -1, dtype=np.int32)))
    np.save(tmp / "created_at.npy", created.astype("datetime64[us]").astype(np.int64))
    write_strings(tmp / "content", memories.column("content"))
    write_strings(tmp / "metadata", memories.column("metadata"))
    np.save(tmp / "embedded.npy", np.any(embeddings != 0, axis=1) if dim else np.zeros(n, dtype=bool))
    np.savez(tmp / "lexical.npz", **lexical)
    np.savez(tmp / "graph.npz", **graph)
    manifest = {
        "format": SNAPSHOT_FORMAT,
        "version": version,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "memories": n,
        "embedding": {"model_key": model_key, "model": embedding_model, "dim": int(dim), "embedded": embedded},
        "lexical": {**_lexical_config(), "terms": int(len(lexical["term_indptr"]) - 1),
                    "num_docs": int(lexical["num_docs"]), "avgdl": float(lexical["avgdl"]),
                    # how many builds in a row updated the previous index instead of building it whole
                    "updates": _index_updates(previous) + 1 if index_updated else 0},
        "graph": graph_info,
        "strength": {"reference_time": (datetime.fromtimestamp(reference, timezone.utc).isoformat()
                                         if reference is not None else None),
                     **found},
        "build_seconds": None,
    }
    manifest["checksums"] = {path.name: file_checksum(path) for path in sorted(tmp.iterdir())
                             if path.is_file() and path.name != MANIFEST_FILE}
    manifest["build_seconds"] = round(time.perf_counter() - started, 3)
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    final = root / version
    os.rename(tmp, final)
    _publish(root, version)
    removed = collect_garbage(settings, keep=keep)
    if log:
        log(f"recall snapshot {version}: {n} memories, {embedded} embedded (d={dim}), "
            f"{graph_info['links']} links, {manifest['build_seconds']} s; removed {len(removed)} old versions")
    return SnapshotInfo(version=version, path=final, manifest=manifest)


def _read_signals(con, settings, memories, row_ids, previous: SnapshotInfo | None = None) -> tuple:
    """What recall needs from the store besides the memories: embeddings, strength inputs, the graph.

    A temporary table of the snapshot's rows, not a registered Arrow view: an Arrow scan is estimated at ~1
    row, and the optimizer then joined the two sides of the association join as a cross product (28 GB of
    spill at 100k memories). Temporary tables work on a read-only connection too."""
    import pyarrow as pa

    n = memories.num_rows
    con.register("snapshot_rows_arrow", pa.table({"row_id": row_ids, "id": memories.column("id")}))
    try:
        con.execute("create or replace temp table snapshot_rows as select * from snapshot_rows_arrow")
    finally:
        con.unregister("snapshot_rows_arrow")
    try:
        model_key, embedding_model = _embedding_source(settings)
        embeddings, dim, embedded, versions = _read_embeddings(con, n, model_key, embedding_model, previous)
        inputs, found = _read_strength_inputs(con, n)
        graph, graph_info = _read_graph(con, n)
        inputs["episode"] = _read_episodes(con, n)
    finally:
        con.execute("drop table if exists temp.snapshot_rows")
    return model_key, embedding_model, embeddings, dim, embedded, versions, inputs, found, graph, graph_info


def _read_episodes(con, n: int) -> np.ndarray:
    """int32 [n]: each row's episode as a small integer (rows of one episode share it), -1 where the memory has
    no episode yet (short-term memory has not seen it). Rows follow event time, so a memory's neighbours in its
    episode are the rows next to it with the same number (recall's episode context)."""
    episode = np.full(n, -1, dtype=np.int32)
    if not _columns(con, "short_term_memory", "stm_memories"):
        return episode
    rows = con.execute("""
        select r.row_id, dense_rank() over (order by s.episode_id) - 1 as episode
        from snapshot_rows as r join short_term_memory.stm_memories as s on s.memory_id = r.id
        where s.episode_id is not null
    """).fetchnumpy()
    episode[rows["row_id"].astype(np.int64)] = rows["episode"].astype(np.int32)
    return episode


def _publish(root: Path, version: str) -> None:
    pointer = root / f".{CURRENT_FILE}-{uuid.uuid4().hex}"
    with open(pointer, "w", encoding="utf-8") as handle:
        handle.write(version + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(pointer, root / CURRENT_FILE)
    try:  # make the rename itself durable
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def collect_garbage(settings, *, keep: int = KEEP_VERSIONS) -> list[str]:
    """Remove all but the newest `keep` versions (never the current one) and stale temporary directories."""
    root = recall_dir(settings)
    if not root.exists():
        return []
    current = current_version(settings)
    versions = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    doomed = [v for v in versions[:-keep] if v != current] if keep > 0 else [v for v in versions if v != current]
    now = time.time()
    for path in root.iterdir():
        if path.name.startswith(".tmp-") and now - path.stat().st_mtime > _STALE_TMP_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(f".{CURRENT_FILE}-") and now - path.stat().st_mtime > _STALE_TMP_SECONDS:
            path.unlink(missing_ok=True)
    for name in doomed:
        shutil.rmtree(root / name, ignore_errors=True)
    return doomed


def build_from_store(settings, *, wait_seconds: float = 2.0) -> SnapshotInfo:
    """The fallback before any pipeline run published a snapshot: build one from the store if it can be opened.

    Raises SnapshotUnavailable when the store does not exist or another process holds it.
    """
    from codex_dreams.store import StoreBusyError, connect

    path = settings.database_path
    if not path.exists():
        raise SnapshotUnavailable(
            "no recall snapshot yet and no memory store; remember or import memories, then run "
            "`codex consolidate` or wait for the pipeline"
        )
    try:
        con = connect(path, read_only=True, extension_dir=settings.extension_dir, wait_seconds=wait_seconds)
    except StoreBusyError:
        raise SnapshotUnavailable(
            "no recall snapshot yet; run `codex consolidate` or wait for the pipeline "
            "(the memory store is busy, so one cannot be built now)"
        ) from None
    try:
        return build_snapshot(con, settings)
    finally:
        con.close()

