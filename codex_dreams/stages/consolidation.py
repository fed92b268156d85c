"""Python assets and checks of the consolidation group (the dbt models live in dbt_project/models/consolidation/)."""

import dagster as dg

assets: list = []
asset_checks: list = []
