"""The Python API mirrors the CLI for agents that embed the library."""

import pytest

import codex_dreams as codex
from codex_dreams.errors import InputError
from codex_dreams.sources.records import InvalidMemory


def test_remember_import_and_export_through_the_api(settings, tmp_path):
    record = codex.remember("Agent note: user prefers window seats", at="2026-11-01T10:00:00Z",
                            metadata={"kind": "agent_note"})
    assert record.created_at.isoformat() == "2026-11-01T10:00:00"
    source = tmp_path / "notes.jsonl"
    source.write_text('{"content": "Booked seat 14A", "created_at": "2026-11-01T10:05:00Z"}\n{"content": ""}\n')
    report = codex.import_file(source)
    assert report.accepted == 1 and report.rejected == [(2, "content is empty")]
    result = codex.export(tmp_path / "raw.jsonl", fmt="jsonl")
    assert result.rows == 2
    assert "window seats" in (tmp_path / "raw.jsonl").read_text()


def test_api_errors_are_the_cli_errors(settings):
    with pytest.raises(InvalidMemory, match="content is empty"):
        codex.remember("   ")
    with pytest.raises(InputError, match="unknown cycle 'nap'"):
        codex.consolidate("nap")
    with pytest.raises(InputError, match="period"):
        codex.metrics("forever")
    assert codex.health()["status"] in ("healthy", "degraded")


def test_api_functions_stay_callable_after_every_subpackage_is_loaded():
    """A submodule named like an API function would replace it on the package once imported."""
    import importlib
    import pkgutil

    for module in pkgutil.walk_packages(codex.__path__, "codex_dreams."):
        importlib.import_module(module.name)

    for name in codex.__all__:
        assert callable(getattr(codex, name)), name
