"""Shared by the benchmarks: machine facts and printing one JSON result."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager


def machine_info() -> dict:
    import duckdb

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "duckdb": duckdb.__version__,
    }


def percentiles_ms(seconds: list[float]) -> dict:
    ordered = sorted(seconds)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {
        "n": len(ordered),
        "p50_ms": round(pick(0.50) * 1000, 3),
        "p95_ms": round(pick(0.95) * 1000, 3),
        "p99_ms": round(pick(0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


@contextmanager
def timer(into: dict, key: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        into[key] = time.perf_counter() - started


def emit(name: str, results: dict) -> None:
    """Print the benchmark's one JSON object on stdout."""
    payload = {"benchmark": name, "machine": machine_info(), **results}
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    sys.stdout.flush()
