"""`codex dev` starts the Dagster UI on the project, the stage groups are visible over GraphQL, and it stops
cleanly on SIGTERM with no process left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

STAGE_GROUPS = {"working_memory", "short_term_memory", "consolidation", "long_term_memory"}
GROUPS_QUERY = "{ assetNodes { groupName assetKey { path } } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_with_marker(marker: str) -> list[int]:
    """Pids whose environment carries the marker: the UI and everything it started, whatever their group."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except (OSError, PermissionError):
            continue
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def wait_until(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find leftover processes")
def test_codex_dev_serves_the_stage_groups_and_stops_cleanly(tmp_path):
    port = free_port()
    marker = f"codex-ui-test-{uuid.uuid4().hex}"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "CODEX_HOME": str(tmp_path / "codex_home"), "POSTGRES_DB_URL": "",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DAGSTER_DISABLE_TELEMETRY": "1",
           "CODEX_UI_TEST_MARKER": marker,
           # rhythms off: a schedule tick (every 5 min) must not launch a run that outlives this UI check
           "CODEX_RHYTHMS": "off"}
    env.pop("DAGSTER_HOME", None)
    log = (tmp_path / "dev.log").open("w")
    proc = subprocess.Popen(
        [str(bin_dir / "codex"), "dev", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def server_up():
            if proc.poll() is not None:
                raise AssertionError(f"codex dev exited with {proc.returncode}:\n"
                                     f"{(tmp_path / 'dev.log').read_text()[-3000:]}")
            try:
                return httpx.get(f"{base}/server_info", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        def log_tail() -> str:
            return (tmp_path / "dev.log").read_text(errors="replace")[-3000:]

        assert wait_until(server_up, timeout=120), f"the UI did not come up in 120 s:\n{log_tail()}"

        last = {}

        def groups():
            # The code location loads in its own process after the webserver is up: poll until it answers.
            response = httpx.post(f"{base}/graphql", json={"query": GROUPS_QUERY}, timeout=10)
            last["response"] = response.text[:2000]
            nodes = (response.json().get("data") or {}).get("assetNodes") or []
            return {node["groupName"] for node in nodes}

        found = wait_until(groups, timeout=90, interval=1)
        assert found and STAGE_GROUPS <= found, f"{found}\n{last.get('response')}\n{log_tail()}"
        assert "sensory_input" in found
        assert (tmp_path / "codex_home" / "dagster_home" / "dagster.yaml").exists()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            # a loaded 2-core CI machine can take a while to stop the daemon's threads and the code server
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # children (daemon, webserver, code server) get a moment to exit after their parent
        gone = wait_until(lambda: not processes_with_marker(marker), timeout=60)
        leftover = [] if gone else processes_with_marker(marker)
        described = {pid: _command_line(pid) for pid in leftover}
        for pid in leftover:  # clean up, then fail below
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
    assert leftover == [], f"processes left behind after SIGTERM: {described}"

    def group_gone() -> bool:  # exited children may linger briefly as zombies until init reaps them
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert wait_until(group_gone, timeout=30), "the process group of codex dev is still alive"
