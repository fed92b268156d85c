"""Python assets and checks of the short_term_memory group (the dbt models live in dbt_project/models/short_term_memory/)."""

import dagster as dg

assets: list = []
asset_checks: list = []
