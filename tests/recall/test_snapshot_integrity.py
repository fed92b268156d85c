"""A damaged recall snapshot is never read: its files carry checksums, checked on open and before a build reuses
them. Recall answers from the previous intact version with a warning, health names the damaged file, and the
next build is whole from the store (damaged vectors are not carried over)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from recall_store import CORPUS, M, publish, write_store
from typer.testing import CliRunner

from codex_dreams.cli.main import app
from codex_dreams.commands.health import run_health
from codex_dreams.retrieval.engine import Recaller
from codex_dreams.retrieval.snapshot import (
    SnapshotDamaged,
    SnapshotUnavailable,
    current_version,
    read_manifest,
    recall_dir,
    verify_files,
)

runner = CliRunner()


@pytest.fixture
def two_versions(settings, corpus_vectors):
    """Two published versions: the corpus, then the corpus plus one memory (the current one)."""
    write_store(settings, CORPUS, corpus_vectors, [])
    first = publish(settings)
    write_store(settings, [M("extra", "Repotted the fern on the kitchen windowsill.", 9)], None, [])
    second = publish(settings)
    return settings, first, second


def _overwrite_middle(path, size=4096):
    with path.open("r+b") as handle:
        handle.seek(max(0, path.stat().st_size // 2))
        handle.write(os.urandom(size))


def _snapshot_check(settings):
    return next(c for c in run_health(settings, verbose=True)["checks"] if c["name"] == "recall_snapshot")


def test_random_bytes_over_the_vectors_fall_back_warn_and_are_not_carried_into_the_next_version(two_versions):
    settings, first, second = two_versions
    _overwrite_middle(second.path / "embeddings.npy")
    with pytest.raises(SnapshotDamaged, match="embeddings.npy"):
        verify_files(second.path, read_manifest(second.path))

    response = Recaller(settings).recall("ferry tickets to Hydra", 3)
    assert response.snapshot == first.version
    assert any("damaged" in w and "embeddings.npy" in w for w in response.warnings)
    check = _snapshot_check(settings)
    assert check["status"] == "critical" and "embeddings.npy" in check["detail"]

    clean = dict(zip(np.load(first.path / "ids.npy"), np.load(first.path / "embeddings.npy")))
    rebuilt = publish(settings)  # the next run: built whole, every vector read from the store
    assert current_version(settings) == rebuilt.version
    vectors = dict(zip(np.load(rebuilt.path / "ids.npy"), np.load(rebuilt.path / "embeddings.npy")))
    for memory_id, vector in clean.items():
        np.testing.assert_allclose(vectors[memory_id], vector, atol=1e-6)
    assert _snapshot_check(settings)["status"] == "ok"
    assert Recaller(settings).recall("ferry tickets to Hydra", 3).warnings == []


def test_a_truncated_database_is_rebuilt_whole_by_the_next_run(two_versions):
    settings, _, second = two_versions
    database = second.path / "snapshot.duckdb"
    with database.open("r+b") as handle:
        handle.truncate(database.stat().st_size // 3)
    rebuilt = publish(settings)
    assert rebuilt.manifest["lexical"]["updates"] == 0  # built whole, not updated from the copy
    top = Recaller(settings).recall("ferry tickets to Hydra", 1)[0]
    assert top.memory_id == "ferry"


def test_a_missing_file_with_no_intact_earlier_version_is_one_clear_sentence(settings, corpus_vectors):
    write_store(settings, CORPUS, corpus_vectors, [])
    only = publish(settings)
    (only.path / "ids.npy").unlink()
    with pytest.raises(SnapshotUnavailable) as raised:
        Recaller(settings).recall("ferry", 1)
    message = str(raised.value)
    assert "ids.npy is missing" in message and "codex consolidate" in message and "try again" not in message
    result = runner.invoke(app, ["query", "--text", "ferry"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "ids.npy is missing" in result.stderr


def test_a_garbage_manifest_is_one_clear_sentence(settings, corpus_vectors):
    write_store(settings, CORPUS, corpus_vectors, [])
    only = publish(settings)
    (only.path / "manifest.json").write_bytes(os.urandom(300))
    result = runner.invoke(app, ["query", "--text", "ferry"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "manifest.json" in result.stderr
    assert "Traceback" not in result.output
    assert _snapshot_check(settings)["status"] == "critical"
    assert json.loads(json.dumps(run_health(settings)))["status"] == "unhealthy"
    assert recall_dir(settings).exists()
