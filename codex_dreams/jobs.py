"""Jobs per biological rhythm (the names the schedules and sensors use)."""

import dagster as dg

jobs: list = []
