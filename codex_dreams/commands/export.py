"""`codex export`: a stage's table to json, jsonl, csv or parquet.

Rows stream from DuckDB in Arrow batches (bounded memory) into a temporary file next to the target, which is
renamed into place only when complete: an interrupted export leaves no half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pyarrow as pa

from codex_dreams.errors import InputError
from codex_dreams.store import relation_exists

FORMATS = ("json", "jsonl", "csv", "parquet")
# stage name -> (schema, table, order by)
STAGES: dict[str, tuple[str, str, str]] = {
    "raw": ("raw", "memories", "created_at, id"),
    "working_memory": ("working_memory", "wm_attention", "created_at, memory_id"),
    "short_term_memory": ("short_term_memory", "stm_memories", "created_at, memory_id"),
    "long_term_memory": ("long_term_memory", "ltm_memories", "created_at, memory_id"),
    "associations": ("consolidation", "associations", "memory_a, memory_b"),
    "insights": ("long_term_memory", "insights", "created_at"),
}
BATCH_ROWS = 50_000


class ExportError(InputError):
    """The export cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class ExportResult:
    path: str
    format: str
    stage: str
    rows: int


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)



def validate_request(fmt: str, stage: str, output: Path, force: bool) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if stage not in STAGES:
        raise ExportError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    if output.exists() and output.is_dir():
        raise ExportError(f"{output} is a directory; give a file path")
    if output.exists() and not force:
        raise ExportError(f"{output} exists; pass --force to overwrite it")
    if not output.parent.exists():
        raise ExportError(f"directory {output.parent} does not exist")


def export_stage(con, stage: str, fmt: str, output: Path, *, force: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """Write the stage's rows to `output`; `progress(done, total)` is called after each batch."""
    output = Path(output)
    validate_request(fmt, stage, output, force)
    schema, table, order = STAGES[stage]
    if not relation_exists(con, schema, table):
        raise ExportError(f"stage {stage} has no data yet ({schema}.{table} does not exist); run the pipeline first")
    # identifiers come from the fixed STAGES table above, never from user input
    relation = f'"{schema}"."{table}"'
    total = con.execute(f"select count(*) from {relation}").fetchone()[0]
    reader = con.execute(f"select * from {relation} order by {order}").fetch_record_batch(BATCH_ROWS)
    handle, temp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    os.close(handle)
    temp = Path(temp_name)
    written = 0
    try:
        written = _WRITERS[fmt](reader, temp, lambda n: progress(n, total) if progress else None)
        os.replace(temp, output)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return ExportResult(path=str(output), format=fmt, stage=stage, rows=written)


def _write_parquet(reader: pa.RecordBatchReader, path: Path, advance) -> int:
    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(str(path), reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
            advance(rows)
    return rows


def _write_csv(reader: pa.RecordBatchReader, path: Path, advance) -> int:
    import pyarrow.csv as pacsv

    # Lists and JSON become text so every column is representable in CSV.
    rows = 0
    writer = None
    try:
        for batch in reader:
            batch = _flatten_for_csv(batch)
            if writer is None:
                writer = pacsv.CSVWriter(str(path), batch.schema)
            writer.write_batch(batch)
            rows += batch.num_rows
            advance(rows)
        if writer is None:  # no rows: still write the header
            pacsv.write_csv(pa.table({name: pa.array([], pa.string()) for name in reader.schema.names}), str(path))
    finally:
        if writer is not None:
            writer.close()
    return rows


def _flatten_for_csv(batch: pa.RecordBatch) -> pa.RecordBatch:
    columns, names = [], []
    for name, column in zip(batch.schema.names, batch.columns):
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_struct(column.type) \
                or pa.types.is_map(column.type):
            column = pa.array([None if v is None else json.dumps(v, default=_json_default)
                               for v in column.to_pylist()], pa.string())
        columns.append(column)
        names.append(name)
    return pa.RecordBatch.from_arrays(columns, names=names)


def _rows(batch: pa.RecordBatch):
    for row in batch.to_pylist():
        for key in ("metadata",):
            if isinstance(row.get(key), str):
                try:
                    row[key] = json.loads(row[key])
                except json.JSONDecodeError:
                    pass
        yield row


def _write_jsonl(reader: pa.RecordBatchReader, path: Path, advance) -> int:
    rows = 0
    with path.open("w", encoding="utf-8") as out:
        for batch in reader:
            for row in _rows(batch):
                out.write(json.dumps(row, default=_json_default, ensure_ascii=False))
                out.write("\n")
            rows += batch.num_rows
            advance(rows)
    return rows


def _write_json(reader: pa.RecordBatchReader, path: Path, advance) -> int:
    rows = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("[")
        for batch in reader:
            for row in _rows(batch):
                out.write(",\n" if rows else "\n")
                out.write(json.dumps(row, default=_json_default, ensure_ascii=False))
                rows += 1
            advance(rows)
        out.write("\n]\n")
    return rows


_WRITERS = {"parquet": _write_parquet, "csv": _write_csv, "jsonl": _write_jsonl, "json": _write_json}
