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


PARAMS_ENV = "CODEX_PARAMS"


def env_overrides() -> dict:
    """Overrides of the dbt vars from `CODEX_PARAMS` (a JSON object, e.g. '{"gradual_forgetting_rate": 1.0}'),
    applied to the SQL models (passed to dbt as --vars) and the Python cycles alike; {} when unset. A value that
    is not a JSON object, or names an unknown parameter, raises SettingsError with one sentence."""
    import json
    import os

    from codex_dreams.settings import SettingsError

    text = os.environ.get(PARAMS_ENV, "").strip()
    if not text:
        return {}
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        raise SettingsError(f"Invalid setting {PARAMS_ENV}: not JSON ({error.msg}).") from None
    if not isinstance(overrides, dict):
        raise SettingsError(f"Invalid setting {PARAMS_ENV}: expected a JSON object of dbt vars.")
    unknown = set(overrides) - set(_dbt_vars())
    if unknown:
        raise SettingsError(f"Invalid setting {PARAMS_ENV}: unknown parameter(s) {', '.join(sorted(unknown))} "
                            "(see the vars in dbt_project/dbt_project.yml).")
    return overrides


def biological_params(overrides: dict | None = None) -> dict:
    """The dbt vars (with the seed's defaults), with `CODEX_PARAMS` applied, optionally overridden for one run."""
    params = {**_dbt_vars(), **env_overrides()}
    if overrides:
        unknown = set(overrides) - set(params)
        if unknown:
            raise KeyError(f"unknown biological parameter(s): {', '.join(sorted(unknown))}")
        params.update(overrides)
    return params
