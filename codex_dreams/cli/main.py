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

from codex_dreams.settings import SettingsError, get_settings

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
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn):
    """Turn the project's known errors into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from codex_dreams.sources.importers import ImportFormatError
        from codex_dreams.sources.ingest import ImportRefused
        from codex_dreams.sources.postgres import SourceUnavailable
        from codex_dreams.sources.records import InvalidMemory
        from codex_dreams.store import StoreBusyError

        try:
            return fn(*args, **kwargs)
        except (InvalidMemory, ImportFormatError, ImportRefused, SettingsError) as error:
            _fail(str(error), EXIT_BAD_INPUT)
        except (StoreBusyError, SourceUnavailable) as error:
            _fail(str(error), EXIT_FAILURE)

    return wrapper


def _print_json(payload) -> None:
    sys.stdout.write(json.dumps(payload, default=str, ensure_ascii=False) + "\n")


@app.command()
@handle_errors
def remember(
    text: str = typer.Argument(..., help="The memory, as text."),
    at: Optional[str] = typer.Option(None, "--at", help="When it happened (ISO 8601; default now, UTC)."),
    meta: Optional[str] = typer.Option(None, "--meta", help='Metadata as a JSON object, e.g. \'{"place": "Lisbon"}\'.'),
    as_json: bool = typer.Option(False, "--json", help="Print the stored memory as JSON."),
):
    """Record one memory. It is durable when this returns; the next pipeline run processes it."""
    from codex_dreams.sources.ingest import destination, remember as remember_memory

    settings = get_settings()
    record = remember_memory(text, at=at, metadata=meta, settings=settings)
    if as_json:
        _print_json({
            "id": record.id, "content": record.content, "created_at": record.created_at.isoformat(),
            "metadata": record.metadata, "destination": destination(settings),
        })
    else:
        console.print(f"Remembered [bold]{record.id}[/] at {record.created_at.isoformat()}Z", highlight=False)


@app.command("import")
@handle_errors
def import_(
    path: Path = typer.Argument(..., help="File to import (.jsonl, .csv or a LoCoMo .json)."),
    fmt: str = typer.Option("auto", "--format", help="auto, jsonl, csv or locomo."),
    strict: bool = typer.Option(False, "--strict", help="Refuse the whole file if any line is bad."),
    as_json: bool = typer.Option(False, "--json", help="Print the import report as JSON."),
):
    """Import memories from a file. Bad lines are reported and skipped (or, with --strict, nothing is imported)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from codex_dreams.sources.ingest import ImportRefused, import_path

    settings = get_settings()
    show_progress = not as_json and sys.stderr.isatty()
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, disable=not show_progress, transient=True) as bar:
        task = bar.add_task(f"Reading {path.name}", total=None)
        try:
            report = import_path(path, fmt=fmt, strict=strict, settings=settings,
                                 progress=lambda n: bar.advance(task, n))
        except ImportRefused as refused:
            if as_json:
                _print_json(refused.report.as_dict())
            for line, error in refused.report.rejected[:20]:
                err_console.print(f"line {line}: {error}", highlight=False)
            raise
    if as_json:
        _print_json(report.as_dict())
        return
    for line, error in report.rejected[:20]:
        err_console.print(f"[yellow]skipped[/] line {line}: {error}", highlight=False)
    if len(report.rejected) > 20:
        err_console.print(f"... and {len(report.rejected) - 20} more skipped lines")
    where = "PostgreSQL" if report.destination == "postgres" else "the inbox"
    console.print(f"Imported {report.written} memories ({report.format}) into {where}; "
                  f"{len(report.rejected)} lines skipped.", highlight=False)
    if report.destination == "embedded":
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
        for key, value in described.items():
            console.print(f"{key}={'' if value is None else value}", highlight=False)


def main() -> None:  # pragma: no cover - console entry point
    app()
