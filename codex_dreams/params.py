"""The biological parameters, read from the dbt project's vars: one place for SQL and Python alike."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"


@lru_cache(maxsize=1)
def _dbt_vars() -> dict:
    with (DBT_PROJECT_DIR / "dbt_project.yml").open() as handle:
        return dict(yaml.safe_load(handle).get("vars", {}))


def biological_params(overrides: dict | None = None) -> dict:
    """The dbt vars (with the seed's defaults), optionally overridden for one run."""
    params = dict(_dbt_vars())
    if overrides:
        unknown = set(overrides) - set(params)
        if unknown:
            raise KeyError(f"unknown biological parameter(s): {', '.join(sorted(unknown))}")
        params.update(overrides)
    return params
