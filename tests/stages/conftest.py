"""Fixtures shared by the stage tests; the helpers themselves live in `scenario.py` (import them directly:
`from scenario import Memory, at, write_memories, materialize_stages`)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `import scenario` from any test module here

import scenario  # noqa: E402
from scenario import isolated_stage_env  # noqa: E402


@pytest.fixture
def scripted(settings):
    """Write scripted memories into this test's store: `scripted([Memory(...), ...])` -> count."""

    def _write(memories, **kwargs):
        return scenario.write_memories(settings, memories, **kwargs)

    return _write


@pytest.fixture(scope="module")
def module_stage_env(tmp_path_factory):
    """(settings, resources) of a fresh store shared by one test module."""
    with isolated_stage_env(tmp_path_factory.mktemp("stage_store") / "codex_home") as env:
        pass  # the settings and resources carry explicit paths: no environment is needed afterwards
    return env


@pytest.fixture(scope="session")
def stream_store(tmp_path_factory):
    """(settings, result) after materializing working_memory + short_term_memory over the scripted stream."""
    from scenario import materialize_stages, stream_script, write_memories

    with isolated_stage_env(tmp_path_factory.mktemp("stream") / "codex_home") as (settings, resources):
        write_memories(settings, stream_script())
        result = materialize_stages(resources, "working_memory", "short_term_memory")
    return settings, result
