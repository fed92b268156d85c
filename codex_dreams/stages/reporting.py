"""What the consolidation and long-term-memory assets report: Markdown tables a person reads in the Dagster UI
(strength histograms, forgetting curves) and the per-asset timings in `meta.stage_runs`."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Mapping, Sequence

import dagster as dg
import duckdb

from codex_dreams.pools import STAGE_OWNERS

BAR_WIDTH = 30

# meta.stage_runs is written by every asset (record_stage_run) and by dbt's on-run-end hook, and read by the
# monitoring view memory_pipeline_metrics. Declared here so the UI shows it in the monitoring group with what it
# holds; without a spec Dagster made it a bare stub in a `default` group whose lineage was an empty graph.
# An external asset: nothing materializes it on its own, and group selections of jobs leave it out.
STAGE_RUNS = dg.AssetSpec(
    ["meta", "stage_runs"], group_name="monitoring", kinds={"duckdb"}, owners=STAGE_OWNERS,
    description="meta.stage_runs: one row per stage run, written by every Python asset (record_stage_run) and by "
                "dbt's on-run-end hook for every model it builds: stage, asset, run id, wall-clock start and "
                "finish, rows. monitoring.memory_pipeline_metrics reads it for processing times.",
)


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def histogram_md(con: duckdb.DuckDBPyConnection, values_sql: str, *, what: str = "links", bins: int = 10,
                 params: Sequence | None = None) -> str:
    """A Markdown histogram over [0, 1] of the single column `values_sql` selects (the last bin includes 1)."""
    rows = con.execute(
        f"""
        select least(cast(floor(v * {bins}) as integer), {bins - 1}) as bin, count(*)
        from ({values_sql}) as t(v)
        where v is not null
        group by 1 order by 1
        """,
        params or [],
    ).fetchall()
    counts = dict(rows)
    total = sum(counts.values())
    lines = [f"| strength | {what} | share | |", "|---|---:|---:|---|"]
    peak = max(counts.values(), default=0)
    for b in range(bins):
        n = counts.get(b, 0)
        low, high = b / bins, (b + 1) / bins
        bracket = "]" if b == bins - 1 else ")"
        bar = "█" * (round(BAR_WIDTH * n / peak) if peak else 0)
        share = f"{100 * n / total:.1f}%" if total else "–"
        lines.append(f"| [{low:.1f}, {high:.1f}{bracket} | {n} | {share} | {bar} |")
    lines.append(f"| **all** | **{total}** | | |")
    return "\n".join(lines)


def link_forgetting_curve_md(params: Mapping) -> str:
    """How a link fades when it is never reactivated: w(t) = w_0 * rate^(t / period), t in event-time hours,
    and when it is pruned (however often the cycles run)."""
    rate = float(params["gradual_forgetting_rate"])
    cortical = float(params["cortical_forgetting_rate"])
    weak = float(params["weak_connection_threshold"])
    period = float(params["forgetting_period_hours"])
    hours = (0, 1, 2, 5, 10, 24, 48, 72, 168)

    def until_pruned(w0: float, r: float) -> str:
        if w0 < weak:
            return "0 h"
        if r >= 1:
            return "never"
        return f"{math.log(weak / w0) / math.log(r) * period:.0f} h"

    header = "| hours without reactivation | " + " | ".join(str(n) for n in hours) + " | pruned after |"
    lines = [header, "|---" * (len(hours) + 2) + "|"]
    for label, w0, r in (("hippocampal link, w0 = 1.0", 1.0, rate), ("hippocampal link, w0 = 0.2", 0.2, rate),
                         ("cortical link (both in LTM), w0 = 1.0", 1.0, cortical),
                         ("cortical link (both in LTM), w0 = 0.2", 0.2, cortical)):
        cells = " | ".join(f"{w0 * r ** (n / period):.3f}" if w0 * r ** (n / period) >= weak else "pruned"
                           for n in hours)
        lines.append(f"| {label} | {cells} | {until_pruned(w0, r)} |")
    lines.append(f"\nrate {rate} per {period:g} h of event time, however often the cycles run; cortical rate "
                 f"{cortical}; links below {weak} are pruned.")
    return "\n".join(lines)


def retention_curve_md(params: Mapping) -> str:
    """The long-term forgetting curve R(t) = exp(-t / S), S = base_days * (1 + rehearsals)."""
    base = float(params["ltm_base_stability_days"])
    days = ((1 / 24, "1 h"), (1, "1 day"), (7, "1 week"), (30, "30 days"), (90, "90 days"), (365, "1 year"))
    lines = ["| rehearsals (replays + 2 x recalls) | stability S (days) | "
             + " | ".join(label for _, label in days) + " |",
             "|---" * (len(days) + 2) + "|"]
    for rehearsals in (0, 1, 3, 10, 30):
        stability = base * (1 + rehearsals)
        cells = " | ".join(f"{math.exp(-t / stability):.3f}" for t, _ in days)
        lines.append(f"| {rehearsals} | {stability:g} | {cells} |")
    lines.append("\nR = retention after t days without use (replay or recall); each rehearsal adds "
                 f"{base:g} day(s) of stability (spacing and testing effects).")
    return "\n".join(lines)


def table_md(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def record_stage_run(con: duckdb.DuckDBPyConnection, *, stage: str, asset: str, run_id: str | None,
                     started_at: datetime, finished_at: datetime, rows: int | None) -> None:
    """One row in meta.stage_runs (read by monitoring.memory_pipeline_metrics)."""
    con.execute(
        "insert into meta.stage_runs (stage, asset, run_id, started_at, finished_at, rows, runner) "
        "values (?, ?, ?, ?, ?, ?, 'dagster')",
        [stage, asset, run_id, started_at, finished_at, rows],
    )
