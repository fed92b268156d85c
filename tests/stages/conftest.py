"""Fixtures shared by the stage tests; the helpers themselves live in `scenario.py` (import them directly:
`from scenario import Memory, at, write_memories, materialize_stages`)."""

import pytest

import scenario


@pytest.fixture
def scripted(settings):
    """Write scripted memories into this test's store: `scripted([Memory(...), ...])` -> count."""

    def _write(memories, **kwargs):
        return scenario.write_memories(settings, memories, **kwargs)

    return _write
