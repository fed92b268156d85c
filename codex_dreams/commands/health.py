"""`codex health`: is the memory system well? One check per part, each ok / warning / critical.

Overall: healthy (exit 0) when every check is ok, degraded (1) when any warns, unhealthy (2) when any is
critical. No check prints a password: URLs go through `redact_url`, errors are scrubbed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from codex_dreams.settings import Settings

OK, WARNING, CRITICAL = "ok", "warning", "critical"
EXIT_CODES = {"healthy": 0, "degraded": 1, "unhealthy": 2}
# More memories than this waiting in the inbox means the pipeline is not draining it (no daemon running?).
INBOX_BACKLOG_WARNING = 1_000


@dataclass
class Check:
    name: str
    status: str
    detail: str


def _store_checks(settings: Settings) -> list[Check]:
    from codex_dreams.sources import inbox
    from codex_dreams.store import StoreBusyError, connect

    checks = []
    pending = inbox.pending(settings.inbox_path)
    checks.append(Check("inbox", WARNING if pending > INBOX_BACKLOG_WARNING else OK,
                        f"{pending} memories waiting for the next run"))
    path = settings.database_path
    if not path.exists():
        checks.append(Check("store", WARNING, f"{path} does not exist yet (nothing ingested)"))
        return checks
    try:
        con = connect(path, read_only=True, extension_dir=settings.extension_dir, wait_seconds=2.0)
    except StoreBusyError:
        checks.append(Check("store", OK, f"{path} is busy: a pipeline run holds it"))
        return checks
    except Exception as error:  # a corrupt or unreadable file
        checks.append(Check("store", CRITICAL, f"cannot open {path}: {type(error).__name__}"))
        return checks
    try:
        from codex_dreams.store.schema import SCHEMA_VERSION

        version = con.execute("select max(version) from meta.schema_version").fetchone()[0]
        total = con.execute("select count(*) from raw.memories where deleted_at is null").fetchone()[0]
        status = OK if version == SCHEMA_VERSION else WARNING
        checks.append(Check("store", status, f"{path}: schema version {version} (code expects {SCHEMA_VERSION}), "
                                             f"{total} active memories"))
        checks.extend(_memory_health_alerts(con))
    except Exception as error:
        checks.append(Check("store", CRITICAL, f"{path} is not a Codex Dreams store: {type(error).__name__}"))
    finally:
        con.close()
    return checks


def _memory_health_alerts(con) -> list[Check]:
    from codex_dreams.store import relation_exists

    if not relation_exists(con, "monitoring", "memory_health"):
        return [Check("memory_health", OK, "no monitoring yet (the pipeline has not run)")]
    cursor = con.execute("select * from monitoring.memory_health")
    columns = [d[0] for d in cursor.description]
    checks = []
    for row in cursor.fetchall():
        record = dict(zip(columns, row))
        level = str(record.get("alert_level", "OK")).upper()
        status = {"OK": OK, "WARNING": WARNING, "CRITICAL": CRITICAL}.get(level, WARNING)
        name = record.get("check_name") or record.get("metric") or record.get("name") or "memory_health"
        detail = record.get("message") or record.get("detail") or ", ".join(
            f"{k}={v}" for k, v in record.items() if k not in ("alert_level",))
        checks.append(Check(f"memory_health.{name}", status, str(detail)))
    return checks


def _source_check(settings: Settings) -> list[Check]:
    if not settings.postgres_db_url:
        return []
    from codex_dreams.sources.postgres import SourceUnavailable, connect_postgres

    try:
        with connect_postgres(settings.postgres_db_url.get_secret_value()) as conn:
            conn.execute("select 1")
    except SourceUnavailable as error:
        return [Check("source.postgres", CRITICAL, str(error))]
    return [Check("source.postgres", OK, f"{settings.postgres_url_redacted} reachable")]


def _llm_check(settings: Settings) -> list[Check]:
    import httpx

    if settings.llm_provider == "offline":
        return [Check("llm", OK, "offline provider (no server needed)")]
    if settings.llm_provider == "ollama":
        url, headers = f"{settings.ollama_url}/api/tags", {}
    else:
        url = f"{settings.openai_base_url}/models"
        headers = ({"Authorization": f"Bearer {settings.openai_api_key.get_secret_value()}"}
                   if settings.openai_api_key else {})
    try:
        response = httpx.get(url, headers=headers, timeout=3.0)
        response.raise_for_status()
    except httpx.HTTPError as error:
        # Enrichment falls back to the offline provider, so an unreachable LLM degrades, it does not break.
        return [Check("llm", WARNING, f"{settings.llm_provider} at {url} unreachable ({type(error).__name__}); "
                                      "enrichment falls back to offline")]
    return [Check("llm", OK, f"{settings.llm_provider} at {url} reachable")]


def _rhythm_checks(settings: Settings) -> list[Check]:
    import dagster as dg

    from codex_dreams.automation.status import rhythm_status
    from codex_dreams.instance import ensure_instance

    ensure_instance(settings)
    checks = []
    with dg.DagsterInstance.get() as instance:
        for rhythm in rhythm_status(instance):
            last = rhythm["last_run"]
            if last is None:
                checks.append(Check(f"rhythm.{rhythm['name']}", OK, "has not run yet"))
                continue
            age = last["age_seconds"]
            age_text = f"{age / 60:.0f} min ago" if age is not None else "at an unknown time"
            status = WARNING if last["status"] == "FAILURE" else OK
            checks.append(Check(f"rhythm.{rhythm['name']}", status,
                                f"last run {last['status'].lower()} {age_text} ({last['run_id'][:8]})"))
    return checks


# A run that holds the store longer than this is reported (the longest healthy cycle takes minutes).
LONG_RUN_WARNING_SECONDS = 2 * 3600


def _run_checks(settings: Settings) -> list[Check]:
    """Runs whose process died (they freeze every later run until cleaned up) and runs holding the store for
    unusually long. Read only: `codex consolidate` and the daemon's watchdog do the clean-up."""
    import time

    import dagster as dg

    from codex_dreams.automation.watchdog import find_dead_runs
    from codex_dreams.instance import ensure_instance

    ensure_instance(settings)
    checks = []
    with dg.DagsterInstance.get() as instance:
        for dead in find_dead_runs(instance):
            checks.append(Check(f"run.{dead.run_id[:8]}", CRITICAL,
                                f"{dead.sentence()}; it blocks every later run. Fix: `codex consolidate --type "
                                "working` marks it failed and frees the store (the daemon's run_watchdog_sensor "
                                "does it within a minute)"))
        now = time.time()
        for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            run = record.dagster_run
            if run.run_id[:8] in {c.name.removeprefix("run.") for c in checks}:
                continue
            if record.start_time and now - record.start_time > LONG_RUN_WARNING_SECONDS:
                minutes = (now - record.start_time) / 60
                checks.append(Check(f"run.{run.run_id[:8]}", WARNING,
                                    f"run {run.run_id[:8]} of {run.job_name} has been running for {minutes:.0f} min "
                                    "and holds the store; if it is stuck, terminate it in the Dagster UI (Runs)"))
    return checks


def _enrichment_checks(settings: Settings, verbose: bool) -> list[Check]:
    """Too many fallbacks in the last enrichment run (its materialization); with --verbose, whether the configured
    model names are listed by the server (codex_dreams.enrichment.health)."""
    from codex_dreams.enrichment.health import enrichment_checks

    return [Check(name, status, detail) for name, status, detail in enrichment_checks(settings, verbose=verbose)]


def _snapshot_check(settings: Settings) -> list[Check]:
    """The published recall snapshot matches its checksums (read only; a damaged one is rebuilt by the next run)."""
    from codex_dreams.retrieval.snapshot import SnapshotDamaged, current_version, read_manifest, recall_dir, verify_files

    version = current_version(settings)
    if version is None:
        return [Check("recall_snapshot", OK, "none published yet (the first pipeline run publishes one)")]
    path = recall_dir(settings) / version
    try:
        verify_files(path, read_manifest(path))
    except SnapshotDamaged as damage:
        return [Check("recall_snapshot", CRITICAL,
                      f"{path} is damaged: {damage}; recall answers from the previous version meanwhile. Fix: "
                      "`codex consolidate --type working` rebuilds it from the memory store")]
    return [Check("recall_snapshot", OK, f"{version} intact")]


def run_health(settings: Settings, verbose: bool = False) -> dict:
    checks = [*_store_checks(settings), *_source_check(settings), *_llm_check(settings),
              *_rhythm_checks(settings), *_run_checks(settings), *_snapshot_check(settings)]
    checks += _enrichment_checks(settings, verbose)
    if any(c.status == CRITICAL for c in checks):
        overall = "unhealthy"
    elif any(c.status == WARNING for c in checks):
        overall = "degraded"
    else:
        overall = "healthy"
    shown = checks if verbose else [c for c in checks if c.status != OK or c.name in ("store", "llm")]
    return {"status": overall, "exit_code": EXIT_CODES[overall], "checks": [asdict(c) for c in shown]}
