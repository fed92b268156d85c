"""Python assets and checks of the long_term_memory group (the dbt models live in dbt_project/models/long_term_memory/)."""

import dagster as dg

assets: list = []
asset_checks: list = []
