"""The recall engine: dense + lexical + associative recall over the published snapshot, fused and explained.

One query:
1. the query is embedded and scored against every memory (exact dot product on the memory-mapped unit
   vectors), and BM25-scored against every memory from the snapshot's fts index (`lexical.py`);
2. the best `candidates` rows of dense and of lexical recall enter fusion, each signal in [0, 1] for this
   query: dense = the cosine (negative counts 0), lexical = BM25 / the query's own BM25, i.e. the share of
   the query's term weight a memory matches (why not min-max or best-match scaling: docs/recall.md);
3. the best `seeds` preliminary hits (dense, lexical and strength fused) spread activation over the
   association graph (`graph.py`); what arrives is the associative signal (clipped to 1);
4. the strength signal is the snapshot's retrieval-strength prior (consolidation, recency, accesses);
5. score = (w_dense * dense + w_lexical * lexical + w_associative * associative + w_strength * strength) / sum(w);
   the best k are returned, each with its signals and, on request, an explanation (which signals and which
   links brought it);
6. the answer is logged for the testing effect (`log.py`); the pipeline applies it later.

Nothing here opens the memory store, except the one-time fallback when no snapshot was ever published.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, Sequence

import duckdb
import numpy as np

from codex_dreams.errors import InputError
from codex_dreams.retrieval import lexical as lexical_search
from codex_dreams.retrieval import log as recall_log
from codex_dreams.retrieval.config import DEFAULT_SHAPE, SIGNALS, RecallWeights, SearchShape, load_weights
from codex_dreams.retrieval.graph import ActivationPath, AssociationGraph, load_graph
from codex_dreams.retrieval.snapshot import (
    DATABASE_FILE,
    EPISODE_FILE,
    SnapshotDamaged,
    SnapshotUnavailable,
    StringColumn,
    build_from_store,
    current_version,
    read_manifest,
    recall_dir,
    verify_files,
)

MAX_QUERY_CHARS = 2_000
_EPOCH = datetime(1970, 1, 1)
_QUERY_CACHE_SIZE = 256


class InvalidQuery(InputError):
    """A query that cannot be answered as given (empty text, k out of range); the message says why."""


# ---- results -------------------------------------------------------------------------------------------

@dataclass
class RecalledMemory:
    rank: int
    memory_id: str
    content: str
    created_at: datetime  # naive UTC
    metadata: dict
    score: float
    signals: dict[str, float]
    explanation: dict

    def as_dict(self, *, explain: bool = False) -> dict:
        out = {
            "rank": self.rank,
            "memory_id": self.memory_id,
            "content": self.content,
            "created_at": self.created_at.isoformat(),
            "metadata": self.metadata,
            "score": round(self.score, 6),
            "signals": {name: round(value, 6) for name, value in self.signals.items()},
        }
        if explain:
            out["explanation"] = self.explanation
        return out


@dataclass
class RecallResponse:
    query_id: str
    text: str
    k: int
    snapshot: str
    results: list[RecalledMemory]
    warnings: list[str] = field(default_factory=list)
    explain: bool = False  # as_dict() includes the explanations by default
    id: object = None  # the caller's id for this query (batch input), else the query_id

    def __iter__(self) -> Iterator[RecalledMemory]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> RecalledMemory:
        return self.results[index]

    @property
    def memory_ids(self) -> list[str]:
        return [r.memory_id for r in self.results]

    def as_dict(self, *, explain: bool | None = None, id=None) -> dict:
        """One line of `codex query --json` (see codex_dreams/retrieval/query_result.schema.json)."""
        explain = self.explain if explain is None else explain
        out = {
            "id": id if id is not None else (self.id if self.id is not None else self.query_id),
            "query_id": self.query_id,
            "text": self.text,
            "k": self.k,
            "snapshot": self.snapshot,
            "results": [r.as_dict(explain=explain) for r in self.results],
        }
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


# ---- the opened snapshot ---------------------------------------------------------------------------------

class Snapshot:
    """One published version, opened read-only: arrays memory-mapped, the DuckDB file shared by cursors."""

    def __init__(self, path: Path, extension_dir: Path | None, shape: SearchShape = DEFAULT_SHAPE) -> None:
        from codex_dreams.store import connect, load_extension

        self.path = path
        self.manifest = read_manifest(path)
        verify_files(path, self.manifest)  # a damaged version is never read (the caller falls back)
        self.version = self.manifest["version"]
        self.n = int(self.manifest["memories"])
        # np.asarray: a plain ndarray over the same mapping (a np.memmap's matmul skips BLAS: ~150x slower)
        self.embeddings = np.asarray(np.load(path / "embeddings.npy", mmap_mode="r"))
        self.ids = np.asarray(np.load(path / "ids.npy", mmap_mode="r"))
        self.strength = np.load(path / "strength.npy")
        self.embedded = np.load(path / "embedded.npy")
        self.created_at = np.load(path / "created_at.npy", mmap_mode="r")
        episode_path = path / EPISODE_FILE
        # a version written before episode context: no memory has an episode (context is then 0)
        self.episode = np.load(episode_path) if episode_path.exists() else np.full(self.n, -1, dtype=np.int32)
        self.content = StringColumn(path / "content")
        self.metadata = StringColumn(path / "metadata")
        with np.load(path / "lexical.npz") as arrays:
            self.lexical = lexical_search.LexicalIndex({k: arrays[k] for k in arrays.files}, self.n,
                                                       k1=shape.bm25_k1, b=shape.bm25_b)
        with np.load(path / "graph.npz") as arrays:
            self.graph: AssociationGraph = load_graph(arrays, self.manifest["graph"]["link_types"])
        self._con = connect(path / DATABASE_FILE, read_only=True, extension_dir=extension_dir, wait_seconds=5)
        load_extension(self._con, "fts")
        # Recall's only DuckDB query (the query terms) is tiny: one thread is faster, markedly so on a busy box
        self._con.execute("set threads = 1")

    @property
    def dim(self) -> int:
        return int(self.manifest["embedding"]["dim"])

    @property
    def embedding_model(self) -> str | None:
        return self.manifest["embedding"]["model"]

    def cursor(self):
        return self._con.cursor()

    def _same_episode(self, rows: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Whether each `other` row exists and shares its episode with the `rows` row beside it."""
        inside = (other >= 0) & (other < self.n)
        same = np.zeros(len(rows), dtype=bool)
        same[inside] = (self.episode[other[inside]] == self.episode[rows[inside]]) & (self.episode[rows[inside]] >= 0)
        return same

    def episode_neighbours(self, rows: np.ndarray, window: int) -> np.ndarray:
        """Rows up to `window` memories before or after each of `rows` in event time, in the same episode."""
        rows = np.asarray(rows, dtype=np.int64)
        found = [np.zeros(0, dtype=np.int64)]
        for offset in range(1, window + 1):
            for other in (rows - offset, rows + offset):
                found.append(other[self._same_episode(rows, other)])
        return np.unique(np.concatenate(found))

    def episode_context(self, rows: np.ndarray, base: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
        """For sorted candidate `rows` with scores `base`: the best score among each row's episode neighbours
        (within `window`, themselves candidates), and the row it came from (-1: none)."""
        rows = np.asarray(rows, dtype=np.int64)
        context = np.zeros(len(rows))
        source = np.full(len(rows), -1, dtype=np.int64)
        for offset in range(1, window + 1):
            for other in (rows - offset, rows + offset):
                at = np.minimum(np.searchsorted(rows, other), max(len(rows) - 1, 0))
                found = self._same_episode(rows, other) & (rows[at] == other)
                better = found & (base[at] > context)
                context[better] = base[at[better]]
                source[better] = other[better]
        return context, source

    def memory_id(self, row: int) -> str:
        return str(self.ids[row])

    def fetch(self, rows: Sequence[int]) -> dict[int, tuple]:
        """row -> (id, content, created_at, metadata dict), from the memory-mapped columns."""
        out = {}
        for row in rows:
            row = int(row)
            metadata = self.metadata[row]
            out[row] = (self.memory_id(row), self.content[row],
                        _EPOCH + timedelta(microseconds=int(self.created_at[row])),
                        json.loads(metadata) if metadata else {})
        return out

    def close(self) -> None:
        self._con.close()


# ---- the engine ------------------------------------------------------------------------------------------

def _top_rows(values: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Row ids of the `n` largest values (only where mask), best first, ties by row id."""
    rows = np.flatnonzero(mask) if mask is not None else np.arange(len(values))
    if len(rows) > n:
        rows = rows[np.argpartition(-values[rows], n - 1)[:n]]
    return rows[np.lexsort((rows, -values[rows]))]


@dataclass
class _Query:
    key: object  # the caller's id for this query (batch) or None
    text: str
    query_id: str


class Recaller:
    """Answers queries from the current snapshot; reopens when a new one is published. Thread-safe."""

    def __init__(self, settings, *, weights: RecallWeights | None = None, shape: SearchShape = DEFAULT_SHAPE,
                 fallback_wait_seconds: float = 2.0) -> None:
        self.settings = settings
        self.weights = weights or load_weights()
        self.shape = shape
        self.fallback_wait_seconds = fallback_wait_seconds
        self._snapshot: Snapshot | None = None
        self._lock = threading.RLock()
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._embedding_model: str | None | bool = False  # False: not looked up yet
        self.fallback_warning: str | None = None  # set while answering from an earlier, intact version
        self._damaged_version: str | None = None  # the published version found damaged (not re-read per query)

    # -- snapshot handling --
    def snapshot(self) -> Snapshot:
        version = current_version(self.settings)
        current = self._snapshot
        if current is not None and version in (current.version, self._damaged_version):
            return current
        with self._lock:
            version = current_version(self.settings)
            if self._snapshot is not None and version in (self._snapshot.version, self._damaged_version):
                return self._snapshot
            if version is None:
                version = build_from_store(self.settings, wait_seconds=self.fallback_wait_seconds).version
            opened = self._open(version)
            self._snapshot = opened  # the previous one closes when its last user lets go of it
            return opened

    def _open(self, version: str) -> Snapshot:
        """Open the published version; if it is damaged (and was not just replaced), the newest earlier version
        that is intact, with a warning on every answer until the pipeline publishes a sound one."""
        root = recall_dir(self.settings)
        self.fallback_warning, self._damaged_version = None, None
        for _ in range(3):
            try:
                return Snapshot(root / version, self.settings.extension_dir, self.shape)
            except (SnapshotDamaged, FileNotFoundError, duckdb.Error) as error:
                now_current = current_version(self.settings)
                if now_current is not None and now_current != version:  # replaced while opening: take the new one
                    version = now_current
                    continue
                damage = str(error) if isinstance(error, SnapshotDamaged) else f"{type(error).__name__}: {error}"
                break
        else:
            raise SnapshotUnavailable("the recall snapshot kept changing while it was opened; try again")
        earlier = sorted((p.name for p in root.iterdir()
                          if p.is_dir() and not p.name.startswith(".") and p.name < version), reverse=True)
        for candidate in earlier:
            try:
                opened = Snapshot(root / candidate, self.settings.extension_dir, self.shape)
            except (SnapshotDamaged, FileNotFoundError, duckdb.Error):
                continue
            self._damaged_version = version
            self.fallback_warning = (
                f"the recall snapshot {version} is damaged ({damage}); answering from the previous version "
                f"{candidate}; the next pipeline run (`codex consolidate --type working`) rebuilds it")
            return opened
        raise SnapshotUnavailable(
            f"the recall snapshot {root / version} is damaged ({damage}) and no earlier version is intact; run "
            "`codex consolidate --type working` to rebuild it from the memory store")

    def close(self) -> None:
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None

    # -- embeddings --
    def _active_embedding_model(self) -> str | None:
        if self._embedding_model is False:
            try:
                from codex_dreams.enrichment import active_embedding_model
                self._embedding_model = active_embedding_model(self.settings)
            except ImportError:
                self._embedding_model = None
        return self._embedding_model

    def _embed(self, texts: list[str], snap: Snapshot, warnings: list[str]) -> np.ndarray | None:
        """Unit query vectors [len(texts), d], or None when dense recall is off for this snapshot."""
        if snap.dim == 0 or snap.n == 0:
            if snap.n:
                warnings.append("no memory has an embedding yet, so dense recall is off; if enrichment has run, its "
                                "embedding model failed (see `codex health` and the memory_enrichment run's log)")
            return None
        model = self._active_embedding_model()
        if model is None or model != snap.embedding_model:
            warnings.append(
                f"the snapshot's embeddings are from {snap.embedding_model!r} but the configured model is "
                f"{model!r}; dense recall is off until the next pipeline run")
            return None
        with self._lock:
            found = {t: self._vectors[t] for t in dict.fromkeys(texts) if t in self._vectors}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            from codex_dreams.enrichment import EmbeddingUnavailable, embed_texts

            try:
                vectors = np.asarray(embed_texts(missing, self.settings), dtype=np.float32)
            except EmbeddingUnavailable as error:
                warnings.append(f"the embedding model is unavailable ({error}); dense recall is off")
                return None
            found.update(zip(missing, vectors))
            with self._lock:  # a small LRU of query vectors: repeated queries skip the model
                for text in missing:
                    self._vectors[text] = found[text]
                    self._vectors.move_to_end(text)
                while len(self._vectors) > _QUERY_CACHE_SIZE:
                    self._vectors.popitem(last=False)
        matrix = np.stack([found[t] for t in texts])
        if matrix.shape[1] != snap.dim:
            warnings.append(f"query vectors have {matrix.shape[1]} dimensions, the snapshot {snap.dim}; "
                            "dense recall is off until the next pipeline run")
            return None
        return matrix

    # -- public --
    def recall(self, text: str, k: int = 10, *, explain: bool = False, log: bool = True) -> RecallResponse:
        return self.recall_many([(None, text)], k, explain=explain, log=log)[0]

    def recall_many(self, queries: Sequence[tuple[object, str]], k: int = 10, *, explain: bool = False,
                    log: bool = True) -> list[RecallResponse]:
        """Answer several queries (embedded in one batch); results equal one `recall` per query."""
        k = validate_k(k, self.shape.max_k)
        items = [_Query(key, validate_text(text), uuid.uuid4().hex) for key, text in queries]
        if not items:
            return []
        snap = self.snapshot()
        warnings: list[str] = [self.fallback_warning] if self.fallback_warning else []
        vectors = self._embed([item.text for item in items], snap, warnings)
        responses = []
        for i, item in enumerate(items):
            dense = None
            if vectors is not None:
                # einsum, not `@`: as fast at 100k rows (memory-bound), and it never wakes OpenBLAS's thread pool,
                # whose spinning threads slowed the DuckDB lookups that follow by ~10 ms on 2 cores
                dense = np.einsum("ij,j->i", snap.embeddings, vectors[i])
            # Sequential on purpose: on a worker thread the lexical search lost more to GIL hand-offs (up to
            # the 5 ms switch interval each) than it gained by overlapping the embedding.
            lexical_scores, self_score = self._lexical(snap, item.text)
            results = self._fuse(snap, dense, lexical_scores, self_score, k)
            responses.append(RecallResponse(query_id=item.query_id, text=item.text, k=k, snapshot=snap.version,
                                            results=results, warnings=list(warnings), explain=explain,
                                            id=item.key))
        if log:
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            try:
                recall_log.append(recall_log.log_path(self.settings), [
                    (r.query_id, now, [(m.memory_id, m.score) for m in r.results]) for r in responses])
            except Exception as error:  # the answer stands; only the testing effect is lost
                for response in responses:
                    response.warnings.append(f"this recall was not logged ({type(error).__name__}: {error})")
        return responses

    def _lexical(self, snap: Snapshot, text: str) -> tuple[np.ndarray, float]:
        cursor = snap.cursor()
        try:
            return snap.lexical.search(cursor, text)
        finally:
            cursor.close()

    # -- fusion --
    def _fuse(self, snap: Snapshot, dense: np.ndarray | None, lexical: np.ndarray, self_score: float,
              k: int) -> list[RecalledMemory]:
        n = snap.n
        if n == 0:
            return []
        shape, w = self.shape, self.weights
        depth = min(n, max(shape.candidates, 4 * k))

        # Signals in [0, 1] for this query: dense = the cosine (negative counts 0); lexical = BM25 / the
        # query's own BM25 (the share of the query's term weight matched; see lexical.py).
        dense_rows = np.zeros(0, dtype=np.int64)
        if dense is not None and snap.embedded.any():
            dense_rows = _top_rows(dense, depth, snap.embedded)
        lexical_hits = lexical_search.top(lexical, depth)
        strength_all = snap.strength

        def dense_of(rows: np.ndarray) -> np.ndarray:
            if dense is None:
                return np.zeros(len(rows))
            return np.clip(dense[rows].astype(np.float64), 0.0, 1.0)

        def lexical_of(rows: np.ndarray) -> np.ndarray:
            return np.clip(lexical[rows] / self_score, 0.0, 1.0) if self_score > 0 else np.zeros(len(rows))

        candidates = np.union1d(dense_rows, lexical_hits.rows)
        activation: dict[int, float] = {}
        paths: dict[int, list[ActivationPath]] = {}
        if w.associative > 0 and snap.graph and len(candidates):
            pre_total = w.dense + w.lexical + w.strength
            c_dense, c_lexical = dense_of(candidates), lexical_of(candidates)
            prelim = ((w.dense * c_dense + w.lexical * c_lexical + w.strength * strength_all[candidates])
                      / pre_total) if pre_total > 0 else np.ones(len(candidates))
            relevant = (c_dense > 0) | (c_lexical > 0)
            order = np.lexsort((candidates, -prelim))
            seed_rows = [int(candidates[i]) for i in order if relevant[i]][:shape.seeds]
            if seed_rows:
                # A seed spreads its own preliminary score (absolute, in [0, 1]): a memory reached through a
                # link of strength w gets at most w * decay of what brought its seed, so it ranks below it
                # unless it is relevant itself.
                seeds = {row: float(prelim[np.searchsorted(candidates, row)]) for row in seed_rows}
                activation, paths = snap.graph.spread(seeds, hops=shape.hops, decay=shape.hop_decay,
                                                      fan_out=shape.fan_out, frontier=shape.frontier,
                                                      type_factors={"creative": w.creative})
                if activation:
                    candidates = np.union1d(candidates, np.fromiter(activation, dtype=np.int64))
        def base_values(rows: np.ndarray) -> dict[str, np.ndarray]:
            return {"dense": dense_of(rows), "lexical": lexical_of(rows),
                    "associative": np.array([min(1.0, activation.get(int(r), 0.0)) for r in rows], dtype=np.float64),
                    "strength": strength_all[rows].astype(np.float64)}

        base_total = w.total - w.context

        def base_mean(values: dict[str, np.ndarray]) -> np.ndarray:
            # the score without episode context, in [0, 1]: what a memory brings its episode neighbours
            if base_total <= 0:
                return np.zeros(len(values["dense"]))
            return sum(getattr(w, name) * values[name] for name in values) / base_total

        if w.context > 0 and len(candidates):
            # Episode context: the neighbours of the best hits in their episode join the candidates, so a memory
            # next to a strong match is found even when it shares no word with the query.
            base = base_mean(base_values(candidates))
            seeds = candidates[np.lexsort((candidates, -base))[:shape.context_seeds]]
            seeds = seeds[base[np.searchsorted(candidates, seeds)] > 0]
            candidates = np.union1d(candidates, snap.episode_neighbours(seeds, shape.context_window))
        values = base_values(candidates)
        base = base_mean(values)
        if w.context > 0:
            context, context_from = snap.episode_context(candidates, base, shape.context_window)
        else:
            context, context_from = np.zeros(len(candidates)), np.full(len(candidates), -1, dtype=np.int64)
        values["context"] = context

        total = w.total
        parts = {name: getattr(w, name) * values[name] / total for name in SIGNALS}
        score = sum(parts[name] for name in SIGNALS)
        order = np.lexsort((candidates, -values["dense"], -score))[:k]

        dense_rank = {int(r): i + 1 for i, r in enumerate(dense_rows)}
        lexical_rank = {int(r): i + 1 for i, r in enumerate(lexical_hits.rows)}
        picked = [int(candidates[i]) for i in order]
        rows = snap.fetch(picked)
        results = []
        for rank, i in enumerate(order, start=1):
            row = int(candidates[i])
            memory_id, content, created_at, metadata = rows[row]
            signals = {name: float(values[name][i]) for name in SIGNALS}
            contributions = {name: float(parts[name][i]) for name in SIGNALS}
            neighbour = int(context_from[i])
            explanation = self._explain(snap, row, signals, contributions, dense, lexical, dense_rank,
                                        lexical_rank, paths.get(row, []), neighbour if neighbour >= 0 else None)
            results.append(RecalledMemory(rank=rank, memory_id=memory_id, content=content, created_at=created_at,
                                          metadata=metadata, score=float(score[i]), signals=signals,
                                          explanation=explanation))
        return results

    def _explain(self, snap, row, signals, contributions, dense, lexical, dense_rank, lexical_rank,
                 paths: list[ActivationPath], neighbour: int | None = None) -> dict:
        brought_by = []
        if row in dense_rank:
            brought_by.append("dense")
        if row in lexical_rank:
            brought_by.append("lexical")
        if paths:
            brought_by.append("associative")
        if neighbour is not None and signals["context"] > 0:
            brought_by.append("context")
        links = [
            {
                "seed": snap.memory_id(path.seed),
                "activation": round(path.activation, 6),
                "path": [{"from": snap.memory_id(link.source), "to": snap.memory_id(link.target),
                          "link_type": link.link_type, "strength": round(float(link.strength), 6)}
                         for link in path.links],
            }
            for path in paths[:3]
        ]
        parts = []
        if "dense" in brought_by:
            parts.append(f"dense rank {dense_rank[row]} (cosine {float(dense[row]):.3f})")
        if "lexical" in brought_by:
            parts.append(f"lexical rank {lexical_rank[row]} (BM25 {float(lexical[row]):.2f})")
        for link in links[:1]:
            hops = " -> ".join(f"{step['link_type']} {step['strength']:.2f}" for step in link["path"])
            parts.append(f"associative via {link['seed']} ({hops})")
        if "context" in brought_by:
            parts.append(f"episode context: next to {snap.memory_id(neighbour)} ({signals['context']:.2f})")
        if signals["strength"] > 0:
            parts.append(f"strength {signals['strength']:.2f}")
        return {
            "brought_by": brought_by,
            "contributions": {name: round(value, 6) for name, value in contributions.items()},
            "dense": ({"rank": dense_rank[row], "cosine": round(float(dense[row]), 6)}
                      if row in dense_rank else None),
            "lexical": ({"rank": lexical_rank[row], "bm25": round(float(lexical[row]), 6)}
                        if row in lexical_rank else None),
            "links": links,
            "context": ({"from": snap.memory_id(neighbour), "score": round(signals["context"], 6)}
                        if "context" in brought_by else None),
            "summary": "; ".join(parts),
        }


def validate_text(text) -> str:
    if not isinstance(text, str):
        raise InvalidQuery("the query text must be a string")
    text = text.strip()
    if not text:
        raise InvalidQuery("the query text is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidQuery(f"the query text is {len(text):,} characters; the limit is {MAX_QUERY_CHARS:,}")
    if "\x00" in text:
        raise InvalidQuery("the query text must not contain NUL characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: the answer could not even be printed
            raise InvalidQuery("the query text is not valid Unicode text") from None
    return text


def validate_k(k, max_k: int = DEFAULT_SHAPE.max_k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidQuery(f"k must be a whole number, not {k!r}")
    if not 1 <= int(k) <= max_k:
        raise InvalidQuery(f"k must be between 1 and {max_k} (got {k})")
    return int(k)


# ---- process-wide engines --------------------------------------------------------------------------------

_RECALLERS: dict[tuple, Recaller] = {}
_RECALLERS_LOCK = threading.Lock()


def recaller_for(settings, weights: RecallWeights | None = None) -> Recaller:
    """A cached engine per (CODEX_HOME, store, provider, weights): the snapshot and the model stay loaded."""
    weights = weights or load_weights()
    key = (str(recall_dir(settings)), str(settings.database_path), settings.llm_provider,
           settings.embedding_model, settings.openai_embedding_model, tuple(weights.as_dict().values()))
    with _RECALLERS_LOCK:
        engine = _RECALLERS.get(key)
        if engine is None:
            engine = _RECALLERS[key] = Recaller(settings, weights=weights)
        return engine
