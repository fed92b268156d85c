"""The `codex` command.

Every command prints one clear error line (no traceback) on bad input or a failure, exits 2 for bad input
and 1 for a failure, and offers `--json` where a script may read the output.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from codex_dreams.settings import get_settings

app = typer.Typer(
    name="codex",
    help="Codex Dreams: a biologically-inspired long-term memory (Dagster + dbt + DuckDB).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def _fail(message: str, code: int) -> None:
    from rich.markup import escape  # messages quote user input: '[/]' must print, not be parsed as markup

    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn):
    """Turn the project's known errors into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from codex_dreams.errors import CodexError  # light: the hot `remember` path imports no DuckDB here

        try:
            return fn(*args, **kwargs)
        except CodexError as error:
            _fail(str(error), error.exit_code)

    return wrapper


class _OneLineUsageErrors(typer.core.TyperCommand):
    """Bad options or option values end in one error line and exit 2, not in Click's usage panel."""

    _usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except self._usage_error as error:
            _fail(f"{error.format_message()} (see `codex {ctx.info_name} --help`)", EXIT_BAD_INPUT)


def _print_json(payload) -> None:
    sys.stdout.write(json.dumps(payload, default=str, ensure_ascii=False) + "\n")


@app.callback()
def _private_files() -> None:
    # Runs before every command. Everything under CODEX_HOME is private (memories, the Dagster instance, logs):
    # files 0600, directories 0700. A umask, because most of those files are created by DuckDB, SQLite, Dagster
    # and dbt, and by the daemon's processes, which inherit it; see codex_dreams.settings.use_private_file_modes.
    from codex_dreams.settings import use_private_file_modes

    use_private_file_modes()


@app.command(cls=_OneLineUsageErrors)
@handle_errors
def remember(
    text: str = typer.Argument(..., help="The memory, as text."),
    at: Optional[str] = typer.Option(None, "--at", help="When it happened (ISO 8601; default now, UTC)."),
    meta: Optional[str] = typer.Option(None, "--meta", help='Metadata as a JSON object, e.g. \'{"place": "Lisbon"}\'.'),
    as_json: bool = typer.Option(False, "--json", help="Print the stored memory as JSON."),
):
    """Record one memory. It is durable when this returns; the next pipeline run processes it."""
    from codex_dreams.sources.ingest import destination
    from codex_dreams.sources.ingest import remember as remember_memory

    settings = get_settings()
    record = remember_memory(text, at=at, metadata=meta, settings=settings)
    if as_json:
        _print_json({
            "id": record.id, "content": record.content, "created_at": record.created_at.isoformat(),
            "metadata": record.metadata, "destination": destination(settings),
        })
    else:
        console.print(f"Remembered [bold]{record.id}[/] at {record.created_at.isoformat()}Z", highlight=False)


@app.command("import", cls=_OneLineUsageErrors)
@handle_errors
def import_(
    path: Path = typer.Argument(..., help="File to import (.jsonl, .csv or a LoCoMo .json)."),
    fmt: str = typer.Option("auto", "--format", help="auto, jsonl, csv or locomo."),
    strict: bool = typer.Option(False, "--strict", help="Refuse the whole file if any line is bad."),
    as_json: bool = typer.Option(False, "--json", help="Print the import report as JSON."),
):
    """Import memories from a file. Bad lines are reported and skipped (or, with --strict, nothing is imported)."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from codex_dreams.sources.ingest import ImportRefused, import_path

    settings = get_settings()
    show_progress = not as_json and sys.stderr.isatty()
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, disable=not show_progress, transient=True) as bar:
        task = bar.add_task(f"Reading {escape(path.name)}", total=None)
        try:
            report = import_path(path, fmt=fmt, strict=strict, settings=settings,
                                 progress=lambda n: bar.advance(task, n))
        except ImportRefused as refused:
            if as_json:
                _print_json(refused.report.as_dict())
            # The error line names the first bad line; the others follow, one line each.
            err_console.print(f"[bold red]Error:[/] {escape(str(refused))}", highlight=False, soft_wrap=True)
            for line, error in refused.report.rejected[1:20]:
                err_console.print(f"line {line}: {escape(error)}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    if as_json:
        _print_json(report.as_dict())
        return
    for line, error in report.rejected[:20]:
        err_console.print(f"[yellow]skipped[/] line {line}: {escape(error)}", highlight=False, soft_wrap=True)
    if len(report.rejected) > 20:
        err_console.print(f"... and {len(report.rejected) - 20} more skipped lines")
    where = ("PostgreSQL" if report.destination == "postgres"
             else "the inbox" if report.via_inbox or not report.written else "the store")
    console.print(f"Imported {report.written} memories ({report.format}) into {where}; "
                  f"{len(report.rejected)} lines skipped.", highlight=False)
    if report.destination == "embedded" and report.written:
        if report.stored is None:
            console.print("The store is busy: they will be stored by the next pipeline run.")
        else:
            console.print(f"{report.stored} new memories are in the store.")


@app.command()
@handle_errors
def demo(
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Load the packaged demo memories and run the whole pipeline once, printing what each stage did."""
    from codex_dreams.pipeline import load_demo_memories, run_full_cycle

    settings = get_settings()
    loaded = load_demo_memories(settings)
    if not as_json:
        console.print(f"Demo memories: {loaded.written} read, {loaded.stored} new in {settings.database_path}",
                      highlight=False)
    summary = run_full_cycle(settings, log=None if as_json else console.print)
    if as_json:
        _print_json({"demo_memories": loaded.written, "new_memories": loaded.stored, **summary})
        return
    from rich.table import Table

    table = Table(title="Pipeline run")
    table.add_column("stage")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for row in summary["tables"]:
        table.add_row(row["stage"], row["table"], str(row["rows"]))
    console.print(table)
    console.print(f"Run {summary['run_id']} {summary['status']} in {summary['seconds']:.1f} s.", highlight=False)
    if summary["status"] != "SUCCESS":
        raise typer.Exit(EXIT_FAILURE)


@app.command()
@handle_errors
def dev(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface for the web UI."),
    port: int = typer.Option(3000, "--port", help="Port for the web UI."),
):
    """Start `dagster dev` (web UI + daemon) on this project, with DAGSTER_HOME under CODEX_HOME."""
    from codex_dreams.instance import ensure_instance

    settings = get_settings()
    settings.ensure_dirs()
    ensure_instance(settings)
    dagster = str(Path(sys.executable).with_name("dagster"))
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    console.print(f"Dagster UI on http://{host}:{port} (DAGSTER_HOME={settings.dagster_home_path})",
                  highlight=False)
    os.execv(dagster, [dagster, "dev", "-m", "codex_dreams.definitions", "-h", host, "-p", str(port)])


@app.command()
@handle_errors
def config(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")):
    """Show the effective settings (secrets redacted)."""
    described = get_settings().describe()
    if as_json:
        _print_json(described)
    else:
        for key, value in described.items():  # plain text: a path like /data/[x] must print as is
            console.print(f"{key}={'' if value is None else value}", highlight=False, markup=False,
                          soft_wrap=True)


@app.command()
@handle_errors
def export(
    output: Path = typer.Option(..., "--output", "-o", help="File to write."),
    fmt: str = typer.Option("json", "--format", help="json, jsonl, csv or parquet."),
    stage: str = typer.Option("raw", "--stage",
                              help="raw, working_memory, short_term_memory, long_term_memory, associations or insights."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
):
    """Export a stage's table. The file appears only when complete; an existing file needs --force."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from codex_dreams.commands.export import ExportError, export_stage, validate_request
    from codex_dreams.store import open_store

    try:
        validate_request(fmt, stage, output, force)
        settings = get_settings()
        with open_store(settings) as con, Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
            console=err_console, disable=as_json or not sys.stderr.isatty(), transient=True,
        ) as bar:
            task = bar.add_task(f"Exporting {stage}", total=None)
            result = export_stage(con, stage, fmt, output, force=force,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total))
    except ExportError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    if as_json:
        _print_json({"path": result.path, "format": result.format, "stage": result.stage, "rows": result.rows})
    else:
        console.print(f"Exported {result.rows} rows of {result.stage} to {result.path} ({result.format}).",
                      highlight=False)


@app.command()
@handle_errors
def health(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every check, not only problems."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
):
    """Store, source, LLM, rhythms and memory-health alerts. Exit 0 healthy, 1 degraded, 2 unhealthy."""
    from codex_dreams.commands.health import run_health

    report = run_health(get_settings(), verbose=verbose)
    if as_json:
        _print_json(report)
    else:
        colours = {"ok": "green", "warning": "yellow", "critical": "red"}
        for check in report["checks"]:
            colour = colours[check["status"]]
            console.print(f"[{colour}]{check['status']:>8}[/] {check['name']}: {check['detail']}", highlight=False)
        console.print(f"Overall: [bold]{report['status']}[/]")
    raise typer.Exit(report["exit_code"])


@app.command()
@handle_errors
def metrics(
    period: str = typer.Option("24h", "--period", help="How far back: e.g. 30m, 24h, 7d, 2w."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
):
    """Memories ingested, enriched, attended, episodes, links, recalls and run durations over a period."""
    from codex_dreams.commands.metrics import PeriodError, collect_metrics

    try:
        report = collect_metrics(get_settings(), period)
    except PeriodError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    if as_json:
        _print_json(report)
        return
    from rich.table import Table

    console.print(f"Since {report['since']} ({period}):", highlight=False)
    store = report.get("store", {})
    if "error" in store:
        console.print(f"  store: {store['error']}", highlight=False)
    for key in ("memories_ingested", "memories_enriched", "memories_attended", "episodes", "cycles", "recalls"):
        if store.get(key) is not None:
            console.print(f"  {key.replace('_', ' ')}: {store[key]}", highlight=False)
    cycles = store.get("cycles") or 0
    for key, value in sorted(store.get("consolidation_sums", {}).items()):
        console.print(f"  consolidation {key.replace('_', ' ')}: {value:g} (sum over {cycles} cycles)",
                      highlight=False)
    for cycle_type, last in sorted((store.get("consolidation_last_cycle") or {}).items()):
        last = dict(last)
        key = last.pop("cycle_key", "?")
        state = ", ".join(f"{name.replace('_', ' ')} {value:g}" for name, value in sorted(last.items()))
        console.print(f"  after the last {cycle_type.replace('_', ' ')} cycle ({key}): {state or '-'}",
                      highlight=False)
    table = Table(title="Runs")
    for column in ("stage", "runs", "ok", "failed", "mean s", "max s"):
        table.add_column(column)
    for stage, entry in sorted(report["runs"].items()):
        table.add_row(stage, str(entry["runs"]), str(entry["succeeded"]), str(entry["failed"]),
                      f"{entry['mean_seconds'] or 0:.1f}", f"{entry['max_seconds'] or 0:.1f}")
    console.print(table)


@app.command()
@handle_errors
def insights(
    days: int = typer.Option(14, "--days", help="How many days before the newest memory to look at."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
):
    """Patterns across recent episodes and clusters: topics, people, places, mood, central memories.

    Stored in long_term_memory.insights with the memories each rests on. With an LLM configured it also
    writes a few narrative insights.
    """
    from codex_dreams.commands.insights import generate_insights

    if days < 1:
        _fail("--days must be at least 1", EXIT_BAD_INPUT)
    report = generate_insights(get_settings(), days=days)
    if as_json:
        _print_json(report)
        return
    if not report["insights"]:
        console.print("No memories yet: nothing to reflect on.")
        return
    console.print(f"Insights for {report['period_start'][:10]} .. {report['period_end'][:10]}:", highlight=False)
    for insight in report["insights"]:
        console.print(f"\n[bold]{insight['title']}[/] [dim]({insight['kind']}, "
                      f"{len(insight['evidence'])} memories)[/]", highlight=False)
        console.print(insight["body"], highlight=False)




def _progress_printer(status, as_json: bool):
    """Progress goes to the spinner; waits and clean-ups (lines that must not vanish) also to stderr once each."""
    said: set[str] = set()

    def show(text: str) -> None:
        if not as_json:
            status.update(text)
        lasting = text.startswith("Cleaned up") or "waits" in text or "waiting" in text or "Waiting" in text
        if lasting and text not in said:
            said.add(text)
            err_console.print(text, highlight=False)

    return show


@app.command()
@handle_errors
def consolidate(
    cycle: str = typer.Option("all", "--type", help="working, short_term, hippocampal, deep_sleep, rem_sleep, "
                                                    "homeostasis or all."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
    wait: float = typer.Option(900.0, "--wait", min=0, help="Seconds to wait while another run holds the memory "
                                                          "store before giving up (exit 1)."),
    reenrich_fallbacks: bool = typer.Option(False, "--reenrich-fallbacks",
                                            help="With --type working or all: ask the LLM again for memories whose "
                                                 "enrichment fell back to the offline heuristics."),
):
    """Run a rhythm's job now, recorded in the Dagster instance (it appears in the UI).

    When `codex daemon` is running, the run is queued there (so it never overlaps another run on the store);
    otherwise it runs in this process. A run whose process was killed is first marked failed and its hold on
    the store released; while another live run holds the store, this says which one and waits (see --wait).
    """
    from codex_dreams.commands.consolidate import JOBS_BY_CYCLE, run_consolidation

    if cycle not in JOBS_BY_CYCLE:
        _fail(f"unknown --type {cycle!r}; choose one of {', '.join(JOBS_BY_CYCLE)}", EXIT_BAD_INPUT)
    if reenrich_fallbacks and cycle not in ("working", "all"):
        _fail("--reenrich-fallbacks needs --type working or all (the runs that enrich)", EXIT_BAD_INPUT)
    from codex_dreams.enrichment.asset import REENRICH_FALLBACKS_TAG

    settings = get_settings()
    job_name = JOBS_BY_CYCLE[cycle]
    with console.status(f"Running {job_name} ...", spinner="dots") as status:
        summary = run_consolidation(settings, job_name, wait_seconds=wait,
                                    on_progress=_progress_printer(status, as_json),
                                    tags={REENRICH_FALLBACKS_TAG: "true"} if reenrich_fallbacks else None)
    if as_json:
        _print_json(summary)
    else:
        for step in summary["steps"]:
            mark = "[green]ok[/]" if step["status"] == "SUCCESS" else f"[red]{step['status'].lower()}[/]"
            console.print(f"  {mark} {step['name']} ({step['seconds']:.1f} s)", highlight=False)
        console.print(f"{job_name} {summary['status']} in {summary['seconds']:.1f} s "
                      f"(run {summary['run_id']}, {summary['where']}).", highlight=False)
        for failure in summary["failures"]:
            err_console.print(f"[red]failed[/] {failure}", highlight=False)
    if summary["status"] != "SUCCESS":
        raise typer.Exit(EXIT_FAILURE)


daemon_app = typer.Typer(help="Run the Dagster webserver and daemon in the background (schedules and sensors on).",
                         no_args_is_help=True)
app.add_typer(daemon_app, name="daemon")


@daemon_app.command("start")
@handle_errors
def daemon_start(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface for the web UI."),
    port: int = typer.Option(3000, "--port", help="Port for the web UI."),
):
    """Start the webserver and the daemon (returns once the UI answers)."""
    from codex_dreams import service

    settings = get_settings()
    with console.status("Starting Dagster webserver and daemon ..."):
        infos = service.start(settings, host=host, port=port)
    for info in infos:
        console.print(f"{info.name}: pid {info.pid}, log {info.log}", highlight=False)
    console.print(f"UI on http://{host}:{port}", highlight=False)


@daemon_app.command("stop")
@handle_errors
def daemon_stop():
    """Stop exactly the processes `codex daemon start` started."""
    from codex_dreams import service

    stopped = service.stop(get_settings())
    console.print(f"Stopped {', '.join(stopped)}." if stopped else "Not running.")


@daemon_app.command("restart")
@handle_errors
def daemon_restart(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(3000, "--port"),
):
    """Stop, then start again."""
    from codex_dreams import service

    settings = get_settings()
    service.stop(settings)
    infos = service.start(settings, host=host, port=port)
    console.print(", ".join(f"{i.name} pid {i.pid}" for i in infos) + f"; UI on http://{host}:{port}",
                  highlight=False)


@daemon_app.command("status")
@handle_errors
def daemon_status(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")):
    """Processes and uptime, the rhythms' next ticks and their last runs."""
    import dataclasses

    import dagster as dg

    from codex_dreams import service
    from codex_dreams.automation.status import rhythm_status
    from codex_dreams.instance import ensure_instance

    settings = get_settings()
    ensure_instance(settings)
    processes = service.process_info(settings)
    with dg.DagsterInstance.get() as instance:
        rhythms = rhythm_status(instance)
    running = all(p.alive for p in processes)
    if as_json:
        _print_json({"running": running, "processes": [dataclasses.asdict(p) for p in processes],
                     "rhythms": rhythms})
    else:
        from rich.table import Table

        for p in processes:
            state = f"[green]running[/] pid {p.pid}, up {p.uptime_seconds:.0f} s" if p.alive else "[red]stopped[/]"
            console.print(f"{p.name}: {state}", highlight=False)
        down = [p.name for p in processes if not p.alive]
        if down and len(down) < len(processes):
            what = {"daemon": "schedules and sensors are not running (no rhythm fires)",
                    "webserver": "the UI and `codex consolidate` submissions are unavailable"}
            for name in down:
                err_console.print(f"{name} is down: {what.get(name, 'it is not running')}; "
                                  "`codex daemon restart` brings it back", highlight=False, soft_wrap=True)
        table = Table(title="Rhythms")
        for column in ("rhythm", "cadence", "next tick", "last run"):
            table.add_column(column)
        for r in rhythms:
            last = r["last_run"]
            table.add_row(r["name"], r["cadence"], r["next_tick"] or "-",
                          f"{last['status']} {last['started_at']}" if last else "-")
        console.print(table)
    if not running:
        raise typer.Exit(EXIT_FAILURE if any(p.alive for p in processes) else 3)


@daemon_app.command("logs")
@handle_errors
def daemon_logs(
    lines: int = typer.Option(100, "--lines", "-n", help="How many lines to show."),
    level: Optional[str] = typer.Option(None, "--level", help="Only lines at this level or above (INFO, WARNING, ERROR)."),
):
    """The last log lines of the webserver and the daemon."""
    from codex_dreams import service

    for line in service.read_logs(get_settings(), lines=lines, level=level):
        sys.stdout.write(line)


@app.command(cls=_OneLineUsageErrors)
@handle_errors
def query(
    text: Optional[str] = typer.Option(None, "--text", "-t", help="What to recall, in your own words."),
    file: Optional[Path] = typer.Option(
        None, "--file", "-f",
        help='Batch mode: a JSONL file with one {"id": ..., "text": ...} per line ("-" reads stdin).'),
    k: int = typer.Option(10, "--k", "-k", help="How many memories to return (1 to 1000)."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per query (codex_dreams/retrieval/query_result.schema.json)."),
    explain: bool = typer.Option(False, "--explain", help="Say which signals and which links brought each memory."),
):
    """Recall memories: dense vectors + BM25 + spreading activation over associations, weighted by strength.

    Answers from the snapshot the pipeline publishes after each run, so it never waits on a running pipeline.
    Every answer is logged; the next run strengthens what was recalled (the testing effect).
    """
    from codex_dreams.retrieval.engine import InvalidQuery
    from codex_dreams.retrieval.snapshot import SnapshotUnavailable

    try:
        from codex_dreams.retrieval.cli import run_query

        run_query(text=text, path=file, k=k, as_json=as_json, explain=explain, settings=get_settings(),
                  console=console, err_console=err_console)
    except InvalidQuery as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except SnapshotUnavailable as error:
        _fail(str(error), EXIT_FAILURE)


def main() -> None:  # pragma: no cover - console entry point
    app()
