"""End to end: `codex daemon` runs the webserver and daemon; the 30-second sensor picks up new memories; runs
launched while the full cycle runs queue instead of failing on the DuckDB lock; `stop` leaves nothing behind."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CODEX = str(Path(sys.executable).with_name("codex"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _codex(*args, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([CODEX, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _runs(instance_home: Path):
    import dagster as dg

    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        return [(r.dagster_run.job_name, r.dagster_run.status.value, r.dagster_run.tags.get("codex/rhythm"),
                 r.create_timestamp.timestamp(), r.dagster_run.tags.get("codex/worker_pid"))
                for r in instance.get_run_records()]


def _processes_of(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
            if state != "Z":
                alive.append(pid)
        except (OSError, IndexError):
            pass
    return alive


def _group_members(pgids) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_daemon_runs_the_rhythms_and_stops_cleanly(tmp_path, monkeypatch):
    home = tmp_path / "home"
    port = _free_port()
    env = {**os.environ, "CODEX_HOME": str(home), "POSTGRES_DB_URL": "", "CODEX_LLM_PROVIDER": "offline",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for name in ("DUCKDB_PATH", "DAGSTER_HOME"):
        env.pop(name, None)
    monkeypatch.chdir(tmp_path)

    started = _codex("daemon", "start", "--port", str(port), env=env)
    assert started.returncode == 0, started.stderr + started.stdout
    pid_records = [json.loads((home / "run" / f"{name}.json").read_text()) for name in ("webserver", "daemon")]
    pgids = {record["pgid"] for record in pid_records}
    try:
        status = _codex("daemon", "status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["running"] is True
        assert {r["name"] for r in report["rhythms"]} >= {"working_memory_sensor", "rem_sleep_schedule"}
        assert all(r["next_tick"] for r in report["rhythms"] if r["kind"] == "schedule")

        # The 30-second sensor sees new memories and launches working memory, which succeeds within 2 minutes.
        remembered_at, wall = time.monotonic(), time.time()
        assert _codex("remember", "Walked Biscuit along the river at dusk", env=env, timeout=60).returncode == 0
        first_success = None
        while time.monotonic() - remembered_at < 120:
            runs = _runs(home / "dagster_home")
            if any(r[0] == "working_memory_job" and r[1] == "SUCCESS" and r[2] == "working_memory_sensor"
                   and r[3] >= wall - 1 for r in runs):
                first_success = time.monotonic() - remembered_at
                break
            time.sleep(2)
        assert first_success is not None, _runs(home / "dagster_home")

        # A long run holds the store while the sensor fires again: runs queue, none fails on the lock.
        consolidate = subprocess.Popen([CODEX, "consolidate", "--type", "all", "--json"], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(3):
            remembered = _codex("remember", f"Daemon test memory {i}: Sam booked the Porto train",
                                env=env, timeout=60)
            assert remembered.returncode == 0, remembered.stderr
            time.sleep(10)
        out, err = consolidate.communicate(timeout=600)
        assert consolidate.returncode == 0, err + out
        summary = json.loads(out)
        assert summary["where"] == "daemon" and summary["status"] == "SUCCESS"

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = _runs(home / "dagster_home")
            sensor_runs = [r for r in runs if r[2] == "working_memory_sensor"]
            if len(sensor_runs) >= 2 and not any(
                    r[1] in ("QUEUED", "STARTING", "STARTED", "NOT_STARTED") for r in runs):
                break
            time.sleep(3)
        runs = _runs(home / "dagster_home")
        assert len([r for r in runs if r[2] == "working_memory_sensor"]) >= 2, runs
        assert any(r[0] == "full_cycle_job" for r in runs)
        assert all(r[1] == "SUCCESS" for r in runs), runs
        # every run, launched by the daemon or by the CLI, recorded its worker process (for the run watchdog)
        assert all(r[4] for r in runs), runs
        logs = _codex("daemon", "logs", "--lines", "2000", env=env)
        assert "Could not set lock" not in logs.stdout
    finally:
        stopped = _codex("daemon", "stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert "Stopped" in stopped.stdout
    deadline = time.monotonic() + 20
    while _group_members(pgids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _group_members(pgids) == []
    assert not (home / "run" / "webserver.json").exists()
    after = _codex("daemon", "status", env=env)
    assert after.returncode == 3


def test_the_daemon_survives_its_own_parts(tmp_path, monkeypatch):
    """Kill the dagster-daemon alone, then the webserver alone: status names the part that is down, a
    consolidation queued for a dead daemon is canceled at once with a sentence (never a silent wait), and
    `codex daemon restart` brings everything back."""
    home = tmp_path / "home"
    port = _free_port()
    env = {**os.environ, "CODEX_HOME": str(home), "POSTGRES_DB_URL": "", "CODEX_LLM_PROVIDER": "offline",
           "CODEX_RHYTHMS": "off", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for name in ("DUCKDB_PATH", "DAGSTER_HOME"):
        env.pop(name, None)
    monkeypatch.chdir(tmp_path)

    def pgid(name: str) -> int:
        return json.loads((home / "run" / f"{name}.json").read_text())["pgid"]

    def kill(name: str) -> None:
        group = pgid(name)
        os.killpg(group, 9)
        deadline = time.monotonic() + 30
        while _group_members({group}) and time.monotonic() < deadline:
            time.sleep(0.2)

    assert _codex("daemon", "start", "--port", str(port), env=env).returncode == 0
    try:
        kill("daemon")
        status = _codex("daemon", "status", env=env)
        assert status.returncode == 1
        assert "daemon is down" in status.stderr and "codex daemon restart" in status.stderr
        assert "webserver is down" not in status.stderr

        queued = _codex("consolidate", "--type", "working", "--json", env=env, timeout=120)
        assert queued.returncode == 1
        assert "daemon is not running" in queued.stderr and len(queued.stderr.strip().splitlines()) == 1
        assert not any(r[1] in ("QUEUED", "STARTING", "STARTED") for r in _runs(home / "dagster_home"))

        restarted = _codex("daemon", "restart", "--port", str(port), env=env)
        assert restarted.returncode == 0, restarted.stderr
        assert json.loads(_codex("daemon", "status", "--json", env=env).stdout)["running"] is True

        kill("webserver")
        status = _codex("daemon", "status", env=env)
        assert status.returncode == 1 and "webserver is down" in status.stderr
        assert _codex("daemon", "restart", "--port", str(port), env=env).returncode == 0
        assert json.loads(_codex("daemon", "status", "--json", env=env).stdout)["running"] is True
    finally:
        _codex("daemon", "stop", env=env)
