"""`codex daemon`: the Dagster webserver and daemon as background processes owned by CODEX_HOME.

Each process runs in its own session (process group) with default signal handling, its PID file
(`$CODEX_HOME/run/<name>.json`, with the command and start time) and its log (`$CODEX_HOME/logs/<name>.log`).
`stop` signals exactly the process groups recorded in those files, after checking that the PID still
belongs to the process we started (PIDs are recycled).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from codex_dreams.errors import InputError, OperationalError
from codex_dreams.settings import Settings

PROCESS_NAMES = ("webserver", "daemon")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ServiceError(OperationalError):
    """The daemon could not be started or stopped; the message says why."""


@dataclass
class ProcessInfo:
    name: str
    pid: int | None
    alive: bool
    started_at: str | None
    uptime_seconds: float | None
    log: str
    command: list[str]


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def commands(host: str, port: int) -> dict[str, list[str]]:
    return {
        "webserver": [_bin("dagster-webserver"), "-m", "codex_dreams.definitions", "-h", host, "-p", str(port)],
        "daemon": [_bin("dagster-daemon"), "run", "-m", "codex_dreams.definitions"],
    }


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.json"


def log_file(settings: Settings, name: str) -> Path:
    return settings.logs_dir / f"{name}.log"


def _read_pid_file(settings: Settings, name: str) -> dict | None:
    path = _pid_file(settings, name)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None


def _pid_matches(record: dict) -> bool:
    """The PID is alive and is still the process we started (same executable in its command line)."""
    pid = record.get("pid")
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the signal probe
    expected = Path(record["command"][0]).name
    return any(Path(part.decode(errors="ignore")).name == expected for part in cmdline[:3])


def process_info(settings: Settings) -> list[ProcessInfo]:
    infos = []
    for name in PROCESS_NAMES:
        record = _read_pid_file(settings, name)
        alive = bool(record) and _pid_matches(record)
        started = record.get("started_at") if record else None
        uptime = None
        if alive and started:
            uptime = (datetime.now(timezone.utc) - datetime.fromisoformat(started)).total_seconds()
        infos.append(ProcessInfo(
            name=name, pid=record.get("pid") if record else None, alive=alive, started_at=started,
            uptime_seconds=uptime, log=str(log_file(settings, name)),
            command=record.get("command", []) if record else [],
        ))
    return infos


def endpoint(settings: Settings) -> tuple[str, int] | None:
    """Host and port of the running webserver, if any."""
    record = _read_pid_file(settings, "webserver")
    if record and _pid_matches(record):
        return record["host"], int(record["port"])
    return None


def start(settings: Settings, host: str = "127.0.0.1", port: int = 3000, wait_seconds: float = 120.0) -> list[ProcessInfo]:
    """Start webserver and daemon unless already running; wait until the webserver answers."""
    from codex_dreams.instance import ensure_instance

    running = [info for info in process_info(settings) if info.alive]
    if running:
        raise ServiceError(
            f"already running ({', '.join(f'{i.name} pid {i.pid}' for i in running)}); use `codex daemon restart`"
        )
    settings.ensure_dirs()
    dagster_home = ensure_instance(settings)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "CODEX_HOME": str(settings.codex_home.expanduser().resolve()),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    started = []
    for name, command in commands(host, port).items():
        log = log_file(settings, name).open("ab")
        # Own session: `stop` can signal the whole group; default handlers so SIGTERM ends it.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True, restore_signals=True)
        log.close()
        record = {"pid": process.pid, "pgid": process.pid, "command": command, "host": host, "port": port,
                  "started_at": datetime.now(timezone.utc).isoformat()}
        _pid_file(settings, name).write_text(json.dumps(record))
        started.append(name)
    if not _wait_for_webserver(host, port, wait_seconds):
        tail = "".join(read_logs(settings, lines=15))
        stop(settings)
        raise ServiceError(f"the webserver did not answer on http://{host}:{port} within {wait_seconds:.0f} s:\n{tail}")
    return process_info(settings)


def _wait_for_webserver(host: str, port: int, wait_seconds: float) -> bool:
    import httpx

    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{host}:{port}/server_info", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def stop(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Stop the recorded process groups (SIGTERM, then SIGKILL after `timeout`); returns what was stopped."""
    stopped = []
    for name in PROCESS_NAMES:
        record = _read_pid_file(settings, name)
        if not record:
            continue
        if _pid_matches(record):
            pgid = record.get("pgid", record["pid"])
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not _wait_gone(pgid, timeout):
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _wait_gone(pgid, 5.0)
            stopped.append(name)
        _pid_file(settings, name).unlink(missing_ok=True)
    return stopped


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies still count for killpg; reap our own children if they are ours
    try:
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.2)
    return not _group_alive(pgid)


def read_logs(settings: Settings, lines: int = 100, level: str | None = None) -> list[str]:
    """The last `lines` log lines of both processes, optionally only those at `level` or above."""
    if lines < 1:
        raise InputError("--lines must be at least 1")
    wanted = None
    if level:
        level = level.upper()
        if level not in LEVELS:
            raise InputError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")
        wanted = set(LEVELS[LEVELS.index(level):])
    collected: list[str] = []
    for name in PROCESS_NAMES:
        path = log_file(settings, name)
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines()[-max(lines * 20, 2000):]:
            if wanted is not None and not any(f" - {lvl} - " in line for lvl in wanted):
                continue
            collected.append(f"[{name}] {line}\n")
    return collected[-lines:]
