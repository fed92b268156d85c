"""Python asset checks of the working_memory group (the dbt models live in dbt_project/models/working_memory/).

The dbt models do the work (wm_memory_features -> wm_attention -> wm_buffer -> wm_current_window); these
checks guard the biological invariants from outside dbt and report, in Markdown, what a person wants to see
after a run: how many windows, how full, and how strongly attended and unattended memories were encoded.
The checks share one step and one read of the store (codex_dreams.stages.checks).
"""

import dagster as dg
import duckdb

from codex_dreams.params import biological_params
from codex_dreams.stages.checks import StoreCheck, stage_checks

WM_ATTENTION = dg.AssetKey(["working_memory", "wm_attention"])


def _markdown_table(headers: list[str], rows: list[tuple]) -> str:
    def cell(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def wm_attention_within_capacity(con: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    capacity = int(biological_params()["working_memory_capacity"])
    windows, memories, attended, fullest, over, bad_slots = con.execute(
        f"""
        with per_window as (
            select window_start, count(*) as members, count(*) filter (where attended) as attended,
                   count(*) filter (where attended and (slot is null or slot < 1 or slot > {capacity}))
                   + count(*) filter (where not attended and slot is not null) as bad_slots
            from working_memory.wm_attention
            group by window_start
        )
        select count(*), coalesce(sum(members), 0), coalesce(sum(attended), 0),
               coalesce(max(attended), 0), count(*) filter (where attended > {capacity}),
               coalesce(sum(bad_slots), 0)
        from per_window
        """
    ).fetchone()
    histogram = con.execute(
        """
        select members, count(*) as windows
        from (select window_start, count(*) as members from working_memory.wm_attention group by 1)
        group by members order by members
        """
    ).fetchall()
    passed = over == 0 and bad_slots == 0
    return dg.AssetCheckResult(
        passed=bool(passed),
        description=None if passed else f"{over} window(s) over capacity {capacity}, {bad_slots} bad slot(s)",
        metadata={
            "capacity": capacity,
            "windows": windows,
            "memories": memories,
            "attended": attended,
            "unattended": memories - attended,
            "fullest_window_attended": fullest,
            "windows_over_capacity": over,
            "memories_per_window": dg.MetadataValue.md(
                _markdown_table(["memories in window", "windows"], histogram)
            ),
        },
    )


def wm_encoding_strength_bounds(con: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    out_of_range, inverted = con.execute(
        """
        select
            (select count(*) from working_memory.wm_attention
             where encoding_strength is null or encoding_strength < 0 or encoding_strength > 1),
            (select count(*) from (
                select window_start from working_memory.wm_attention group by window_start
                having max(encoding_strength) filter (where not attended)
                       >= min(encoding_strength) filter (where attended)))
        """
    ).fetchone()
    distribution = con.execute(
        """
        select case when attended then 'attended' else 'unattended' end, count(*),
               min(encoding_strength), avg(encoding_strength), median(encoding_strength),
               max(encoding_strength)
        from working_memory.wm_attention group by 1 order by 1
        """
    ).fetchall()
    passed = out_of_range == 0 and inverted == 0
    return dg.AssetCheckResult(
        passed=bool(passed),
        description=None if passed else (
            f"{out_of_range} strength(s) outside [0, 1]; {inverted} window(s) encode unattended >= attended"
        ),
        metadata={
            "out_of_range": out_of_range,
            "windows_with_inverted_gating": inverted,
            "encoding_strength": dg.MetadataValue.md(
                _markdown_table(["", "memories", "min", "mean", "median", "max"], distribution)
            ),
        },
    )


assets: list = []
asset_checks: list = [stage_checks("working_memory_checks", [
    StoreCheck(dg.AssetCheckSpec(
        "wm_attention_within_capacity", asset=WM_ATTENTION,
        description="Miller's limit: no window attends more than working_memory_capacity memories, slots are 1..n."),
        wm_attention_within_capacity),
    StoreCheck(dg.AssetCheckSpec(
        "wm_encoding_strength_bounds", asset=WM_ATTENTION,
        description="Encoding strengths lie in [0, 1] and attention gates them: unattended < attended in every "
                    "window."),
        wm_encoding_strength_bounds),
])]
