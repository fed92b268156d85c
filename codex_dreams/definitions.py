"""Assembles the Definitions: stage assets (dbt + Python), checks, jobs, schedules, sensors, resources."""

from __future__ import annotations

import dagster as dg

from codex_dreams.dbt import build_dbt_assets
from codex_dreams.resources import build_resources
from codex_dreams.stages import sensory_input


def build_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[sensory_input.raw_memories, build_dbt_assets()],
        resources=build_resources(),
    )


defs = build_definitions()
