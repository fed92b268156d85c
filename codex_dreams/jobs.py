"""Jobs per biological rhythm (the names the schedules and sensors use).

| job | rhythm (seed) | runs |
|---|---|---|
| working_memory_job | every 30 s (sensor) | raw_memories, memory_enrichment, the working_memory group |
| short_term_memory_job | every 5 min | the short_term_memory group |
| hippocampal_consolidation_job | hourly | hippocampal_consolidation, then the refresh below |
| deep_sleep_job | 2-4 AM daily | deep_sleep_consolidation, then the refresh |
| rem_sleep_job | every 90 min | rem_sleep, then the refresh |
| homeostasis_job | Sunday 3 AM | synaptic_homeostasis, then the refresh |
| full_cycle_job | on demand (`codex demo`) | everything, in dependency order |

"The refresh" after a cycle: consolidation_tables (the state tables' report + invariant checks), the consolidation dbt models,
ltm_clusters, the long_term_memory dbt models, ltm_report and the monitoring views, so recall and the
dashboards see the cycle's result. A consolidation job does not rebuild working or short-term memory: it reads
what the faster rhythms last built.

Schedules tag their runs with `codex/cycle_key` (`cycle_key_tag(cycle_type, scheduled_time)`), so a retried
or duplicated tick applies its cycle once (the ledger); without the tag a cycle derives its key from the
event-time watermark.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from codex_dreams.stages.consolidation import CYCLE_ASSET_KEYS, STATE_TABLE_KEYS
from codex_dreams.stages.cycles import CYCLE_KEY_TAG, cycle_for
from codex_dreams.retrieval.asset import RECALL_SNAPSHOT
from codex_dreams.stages.long_term_memory import LTM_CLUSTERS

# Everything that refreshes after a cycle: the consolidation dbt models (the group minus the cycle assets),
# long-term memory (dbt + Python) and the monitoring views.
_CYCLES = dg.AssetSelection.assets(*CYCLE_ASSET_KEYS.values())
REFRESH_AFTER_CYCLE = (
    (dg.AssetSelection.groups("consolidation") - _CYCLES)
    | dg.AssetSelection.assets(*STATE_TABLE_KEYS, LTM_CLUSTERS)
    | dg.AssetSelection.groups("long_term_memory", "monitoring")
)


def _cycle_job(name: str, cycle_type: str, description: str) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        name=name,
        selection=dg.AssetSelection.assets(CYCLE_ASSET_KEYS[cycle_type]) | REFRESH_AFTER_CYCLE,
        description=description,
    )


working_memory_job = dg.define_asset_job(
    name="working_memory_job",
    # The recall snapshot is republished too, so a memory is searchable within one 30-second rhythm.
    selection=dg.AssetSelection.assets("raw_memories", RECALL_SNAPSHOT) | dg.AssetSelection.groups("working_memory"),
    description="Sensory input and working memory (30-second rhythm): drain the inbox / sync PostgreSQL, enrich "
                "new memories, rebuild the attention windows, republish the recall snapshot.",
)
short_term_memory_job = dg.define_asset_job(
    name="short_term_memory_job",
    selection=dg.AssetSelection.groups("short_term_memory"),
    description="Short-term memory (5-minute rhythm): episodes, decay, spatial and emotional context, co-activation.",
)
hippocampal_consolidation_job = _cycle_job(
    "hippocampal_consolidation_job", "hippocampal",
    "Hourly hippocampal consolidation (replay, Hebbian learning, forgetting, transfer), then long-term memory and "
    "monitoring refresh.",
)
deep_sleep_job = _cycle_job(
    "deep_sleep_job", "deep_sleep",
    "Deep-sleep consolidation (2-4 AM): larger replay and semantic links, then long-term memory and monitoring "
    "refresh.",
)
rem_sleep_job = _cycle_job(
    "rem_sleep_job", "rem_sleep",
    "REM sleep (every 90 minutes): creative cross-episode associations, then long-term memory and monitoring "
    "refresh.",
)
homeostasis_job = _cycle_job(
    "homeostasis_job", "homeostasis",
    "Weekly synaptic homeostasis (Sunday 3 AM): scale link strengths toward the target mean and prune, then "
    "long-term memory and monitoring refresh.",
)
full_cycle_job = dg.define_asset_job(
    name="full_cycle_job",
    selection=dg.AssetSelection.all(),
    description="Everything in dependency order: sensory input, enrichment, working and short-term memory, the "
                "four cycles (hippocampal -> deep sleep -> REM -> homeostasis), long-term memory, monitoring.",
)

jobs: list = [working_memory_job, short_term_memory_job, hippocampal_consolidation_job, deep_sleep_job,
              rem_sleep_job, homeostasis_job, full_cycle_job]

CYCLE_JOBS = {"hippocampal": "hippocampal_consolidation_job", "deep_sleep": "deep_sleep_job",
              "rem_sleep": "rem_sleep_job", "homeostasis": "homeostasis_job"}

# What a scheduled job reads and does not build itself: until it has been materialized once (on a fresh
# install, before the first memories went through working memory) the schedule skips its tick.
PREREQUISITE_OF_JOB = {
    "short_term_memory_job": dg.AssetKey(["working_memory", "wm_attention"]),
    **{job: dg.AssetKey(["short_term_memory", "stm_memories"]) for job in CYCLE_JOBS.values()},
}


def cycle_key_tag(cycle_type: str, scheduled_time: datetime) -> dict[str, str]:
    """The run tags a schedule sets for the cycle due at `scheduled_time` (aware times are converted to UTC):
    {"codex/cycle_key": "hippocampal:2026-11-25T14"}."""
    return {CYCLE_KEY_TAG: cycle_for(cycle_type, scheduled_time).cycle_key}
