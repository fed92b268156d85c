"""The real all-MiniLM-L6-v2 int8 ONNX model: quality, determinism, shape, lazy loading."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from codex_dreams.enrichment import embed_texts

PARAPHRASES = [
    ("A man is playing a guitar on stage.", "Someone is strumming a guitar in front of an audience."),
    ("The cat is sleeping on the sofa.", "A kitten is napping on the couch."),
    ("I need to buy groceries tomorrow.", "Tomorrow I have to go food shopping."),
    ("The flight to Berlin was cancelled.", "Our plane to Berlin got cancelled."),
    ("She started learning Japanese last year.", "Last year she began studying the Japanese language."),
    ("The meeting was moved to Thursday afternoon.", "We rescheduled the meeting for Thursday after lunch."),
    ("My knee hurts after running.", "Running makes my knee painful."),
    ("We adopted a puppy from the shelter.", "We got a young dog from the animal shelter."),
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)  # vectors are unit length


def test_paraphrases_score_far_above_unrelated_pairs(minilm):
    left = minilm.embed([a for a, _ in PARAPHRASES])
    right = minilm.embed([b for _, b in PARAPHRASES])
    paraphrase = _cos(left, right)
    unrelated = _cos(left, np.roll(right, 3, axis=0))  # each sentence against another pair's paraphrase
    assert paraphrase.mean() - unrelated.mean() > 0.3
    assert paraphrase.min() > unrelated.max()


def test_vectors_are_unit_float32_and_deterministic(minilm):
    texts = [a for a, _ in PARAPHRASES]
    first = minilm.embed(texts)
    second = minilm.embed(texts)
    assert first.dtype == np.float32 and first.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, second)


def test_batching_and_padding_do_not_change_a_vector(minilm):
    texts = ["short", "a much longer sentence about the garden project and the trip to Lisbon next month"]
    together = minilm.embed(texts)
    alone = np.vstack([minilm.embed([text]) for text in texts])
    assert np.allclose(together, alone, atol=1e-4)


def test_long_text_is_truncated_not_rejected(minilm):
    vector = minilm.embed(["word " * 2000])
    assert vector.shape == (1, 384) and np.isfinite(vector).all()


def test_embed_texts_offline_uses_minilm(make_settings, minilm):
    settings = make_settings()
    vectors = embed_texts(["I need to buy groceries tomorrow."], settings)
    assert np.array_equal(vectors, minilm.embed(["I need to buy groceries tomorrow."]))
    assert embed_texts([], settings).shape == (0, 384)


def test_importing_the_package_and_asset_does_not_load_the_model():
    code = (
        "import sys, codex_dreams.enrichment, codex_dreams.enrichment.asset\n"
        "from codex_dreams.enrichment import embeddings\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported'\n"
        "assert embeddings._EMBEDDER is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
