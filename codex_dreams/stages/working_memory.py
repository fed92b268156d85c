"""Python assets and checks of the working_memory group (the dbt models live in dbt_project/models/working_memory/)."""

import dagster as dg

assets: list = []
asset_checks: list = []
