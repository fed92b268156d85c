"""dbt wiring in one place: the project, its manifest, the translator, the in-process dbt runner (resource
`dbt`) and the dbt assets factory."""


import hashlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtProject,
    dbt_assets,
)
from dagster_duckdb import DuckDBResource

from codex_dreams.params import DBT_PROJECT_DIR
from codex_dreams.pools import DUCKDB_WRITER_POOL, STAGE_OWNERS



def dbt_executable() -> str:
    """The dbt next to this interpreter (the venv's), so no PATH setup is needed."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


@cache
def dbt_project() -> DbtProject:
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


PROJECT_FILE_PATTERNS = ("dbt_project.yml", "profiles.yml", "models/**/*", "macros/**/*", "tests/**/*")


def _project_files() -> list[Path]:
    return sorted(path for pattern in PROJECT_FILE_PATTERNS for path in DBT_PROJECT_DIR.glob(pattern)
                  if path.is_file())


def _newest_source_mtime() -> float:
    return max((path.stat().st_mtime for path in _project_files()), default=0.0)


@cache
def _project_fingerprint_at(newest_mtime: float) -> str:
    digest = hashlib.md5()
    for path in _project_files():
        digest.update(str(path.relative_to(DBT_PROJECT_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def project_fingerprint() -> str:
    """A hash of the dbt project's files: views are re-created when it changes (macros/view_materialization.sql)."""
    return _project_fingerprint_at(_newest_source_mtime())


def ensure_manifest() -> Path:
    """Parse the dbt project when its manifest is missing or older than any project file (a few seconds)."""
    manifest = dbt_project().manifest_path
    if manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime():
        return manifest
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    env.setdefault("DUCKDB_PATH", ":memory:")
    result = subprocess.run(
        [dbt_executable(), "parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--quiet"],
        env=env, capture_output=True, text=True,
    )
    if result.returncode != 0 or not manifest.exists():
        raise RuntimeError(f"dbt parse failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return manifest


class StageTranslator(DagsterDbtTranslator):
    """Group = the model's folder under models/ (working_memory, short_term_memory, ...)."""

    def get_asset_spec(self, manifest, unique_id, project):
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest["nodes"].get(unique_id) or manifest["sources"].get(unique_id) or {}
        fqn = node.get("fqn", [])
        if node.get("resource_type") == "model" and len(fqn) > 2:
            spec = spec.replace_attributes(group_name=fqn[1], owners=STAGE_OWNERS)
        return spec

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        # dagster-dbt reads a check's description from the test's meta.description only: use the test's own
        # dbt description, or for a column_contract the rules it checks, so no check is blank in the UI
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        node = manifest["nodes"].get(unique_id) or {}
        description = node.get("description") or contract_description(node)
        return spec._replace(description=description) if description else spec


# "{{ ref('stm_memories') }}", "{{ var('working_memory_capacity') }}", "{{ source('raw', 'memories') }}" in test
# arguments, shown by name (stm_memories, working_memory_capacity, raw.memories)
_JINJA_NAME = re.compile(r"\{\{\s*(?:ref|var|source)\(([^)]*)\)\s*\}\}")


def _jinja_name(match: re.Match) -> str:
    return ".".join(part.strip().strip("'\"") for part in match.group(1).split(","))


def contract_description(node: Mapping[str, Any]) -> str | None:
    """A readable summary of a column_contract test's rules (tests/generic/column_contract.sql), from its
    arguments in the manifest; None for any other test."""
    metadata = node.get("test_metadata") or {}
    if metadata.get("name") != "column_contract":
        return None
    kwargs = metadata.get("kwargs") or {}

    def text(value: Any) -> str:
        return _JINJA_NAME.sub(_jinja_name, str(value))

    rules = []
    if kwargs.get("unique"):
        rules.append("unique: " + ", ".join(map(text, kwargs["unique"])))
    if kwargs.get("not_null"):
        rules.append("not null: " + ", ".join(map(text, kwargs["not_null"])))
    rules += [f"{column} in [{text(low)}, {text(high)}]"
              for column, (low, high) in (kwargs.get("ranges") or {}).items()]
    rules += [f"{column} one of {', '.join(map(text, values))}"
              for column, values in (kwargs.get("accepted_values") or {}).items()]
    rules += [f"{column} references {text(target[0])}.{target[1]}"
              for column, target in (kwargs.get("references") or {}).items()]
    rules += [text(label) for label in (kwargs.get("row_rules") or {})]
    rules += [f"per {column}: {text(label)}" for column, labels in (kwargs.get("group_rules") or {}).items()
              for label in labels]
    model = (node.get("attached_node") or "").rsplit(".", 1)[-1] or "the model"
    return (f"Column contract of {model} (one query; a failure lists each broken rule with its offending rows): "
            + "; ".join(rules) + ".")


def stage_translator() -> StageTranslator:
    return StageTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


RESULT_EVENTS = frozenset({"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"})
# dbt keeps global state (flags, adapter registry, invocation context): one invocation at a time per process.
_DBT_LOCK = threading.Lock()
_MANIFESTS: dict[tuple, Any] = {}


class DbtRunnerResource(dg.ConfigurableResource):
    """Runs dbt inside the step's process through dbt's programmatic API (`dbtRunner`) instead of a `dbt`
    subprocess per step: no interpreter start and dbt import (~4 s), no re-parse (the parsed manifest is kept
    per process), so a 30-second rhythm pays for the SQL it runs, not for dbt's startup. Events are
    turned into Dagster materializations and asset-check results by dagster-dbt, exactly as for its CLI."""

    target_dir: str  # compiled SQL and partial-parse state of this store ($CODEX_HOME/dbt_target)
    log_dir: str  # dbt.log ($CODEX_HOME/logs)

    def _common_args(self) -> list[str]:
        return ["--project-dir", str(dbt_project().project_dir), "--profiles-dir", str(DBT_PROJECT_DIR),
                "--target-path", self.target_dir, "--log-path", self.log_dir, "--no-use-colors"]

    def _manifest(self, dbt_vars: str):
        """The parsed dbt Manifest for these vars, parsed once per process (partial parsing makes the first
        parse in a new process cheap too). The manifest depends on the store only through its catalog name
        (the file's stem, e.g. "memory"), so stores of the same name share it."""
        catalog = Path(os.environ.get("DUCKDB_PATH") or ":memory:").stem.lstrip(":").rstrip(":")
        key = (catalog, dbt_vars, _newest_source_mtime())
        if key not in _MANIFESTS:
            from dbt.cli.main import dbtRunner

            result = dbtRunner().invoke(["parse", *self._common_args(), "--vars", dbt_vars, "--quiet",
                                         "--no-write-json"])
            if not result.success:
                raise dg.Failure(description=f"dbt parse failed: {result.exception}")
            _MANIFESTS.clear()  # one store per process at a time; do not pile up manifests
            _MANIFESTS[key] = result.result
        return _MANIFESTS[key]

    def build(self, context: dg.AssetExecutionContext, *, dbt_vars: str, full_refresh: bool = False,
              skip_views: Mapping[str, dg.AssetKey] | None = None):
        """`dbt build` of the step's selection; yields Dagster events as dbt finishes each node, raises
        dg.Failure (with dbt's error lines) when a model or an error-severity test fails.

        `skip_views` (unique id -> asset key, from `current_views`) are left out of the invocation: their
        definition is what dbt would create, so they are reported as materialized without a dbt node; their
        tests still run (selected by name)."""
        from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
        from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

        skipped = {} if full_refresh else dict(skip_views or {})
        manifest = _manifest_json()
        selected = _selected_unique_ids(context)
        # a view's tests run as usual (what the view shows changed); a test that also reads a model outside
        # the step is left out, as indirect selection "cautious" does
        view_tests: dict[str, list[str]] = {}
        for node in manifest["nodes"].values():
            parents = set(node["depends_on"]["nodes"])
            if node["resource_type"] == "test" and parents <= selected:
                for unique_id in parents & set(skipped):
                    view_tests.setdefault(unique_id, []).append(node["name"])
        # the step's subset as dbt selection arguments, exactly as dagster-dbt's CLI resource computes it
        # (manifest and translator come from the assets definition)
        params = get_updated_cli_invocation_params_for_context(
            context=context, manifest={}, dagster_dbt_translator=stage_translator())
        if params.dbt_project and Path(params.dbt_project.project_dir) != dbt_project().project_dir:
            raise dg.Failure(description="the dbt selection is too large for command-line selection; "
                                         "select fewer dbt assets per run")
        selection_args, left_out = _without_views(
            params.selection_args, {u: ".".join(manifest["nodes"][u]["fqn"]) for u in skipped}, view_tests)
        skipped = {u: key for u, key in skipped.items() if u in left_out}
        args = ["build", *self._common_args(), "--vars", dbt_vars,
                # A rhythm builds one stage: skip tests that also touch a later stage's (maybe unbuilt) models.
                "--indirect-selection", params.indirect_selection or "cautious", *selection_args,
                # dbt's unit tests check the models' SQL, not the data: the test suite runs them
                # (tests/test_dbt_project.py), every rhythm would only repeat them
                "--exclude-resource-type", "unit_test",
                # results come as events; rewriting the 1 MB manifest.json on every rhythm is waste
                "--no-write-json", "--log-level-file", "info",
                # list the relations of the schemas this step builds, not of every schema of the store
                "--cache-selected-only"]
        if full_refresh:
            args.append("--full-refresh")
        Path(self.target_dir).mkdir(parents=True, exist_ok=True)
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)

        views = _CurrentViewOutputs(skipped, selected, manifest["parent_map"])
        with _DBT_LOCK:
            working_dir = os.getcwd()  # dbt chdirs into the project during a task
            try:
                yield from views.ready()
                events, errors, outcome = _start_build(self._manifest(dbt_vars), args)
                for raw_event in events:
                    if raw_event["info"]["level"] == "error":
                        errors.append(raw_event["info"]["msg"])
                    if raw_event["info"]["name"] in RESULT_EVENTS:
                        yield from DbtCoreCliEventMessage(raw_event=raw_event, event_history_metadata={}) \
                            .to_default_asset_events(manifest=params.manifest,
                                                     dagster_dbt_translator=params.dagster_dbt_translator,
                                                     context=context, target_path=Path(self.target_dir),
                                                     project=params.dbt_project)
                        node = raw_event["data"].get("node_info", {})
                        if node.get("node_status") in ("success", "pass"):
                            yield from views.ready(built=node.get("unique_id"))
            finally:
                os.chdir(working_dir)
        result = outcome.get("result")
        if "error" in outcome or result is None or not result.success:
            detail = "\n".join(errors) or str(outcome.get("error") or (result and result.exception) or "")
            raise dg.Failure(description=f"dbt build failed ({len(errors)} error(s)):\n{detail}".strip(),
                             metadata={"dbt_log": dg.MetadataValue.path(str(Path(self.log_dir) / "dbt.log"))})


def _without_views(selection_args: list[str], views: Mapping[str, str], tests: Mapping[str, list[str]]
                   ) -> tuple[list[str], set[str]]:
    """dagster-dbt's selection arguments with the given views (unique id -> their selector, the node's fqn)
    taken out of the explicit --select list and their tests (unique id -> test names) selected by name.
    Returns the arguments and the views taken out; a view selected only through a pattern (fqn:*) stays in
    (an --exclude would drop its tests with it)."""
    args, removed = list(selection_args), set()
    if "--select" not in args:
        return args, removed
    at = args.index("--select") + 1
    selected = args[at].split()
    for unique_id, selector in views.items():
        if selector in selected:
            selected.remove(selector)
            selected.extend(tests.get(unique_id, []))
            removed.add(unique_id)
    args[at] = " ".join(selected)
    return args, removed


class _CurrentViewOutputs:
    """The Outputs of the views left out of a dbt invocation, each yielded as soon as the models it depends on
    in this step are built: a multi-asset must yield its assets in dependency order, and a view that waits
    for the end would come after the models built on top of it."""

    def __init__(self, views: Mapping[str, dg.AssetKey], selected: set[str], parent_map: Mapping[str, list]):
        def ancestors(unique_id: str) -> set[str]:
            found, stack = set(), list(parent_map.get(unique_id, ()))
            while stack:
                parent = stack.pop()
                if parent not in found:
                    found.add(parent)
                    stack.extend(parent_map.get(parent, ()))
            return found & selected

        self._waiting = {unique_id: ancestors(unique_id) for unique_id in views}
        self._keys = dict(views)
        self._done: set[str] = set()

    def ready(self, built: str | None = None):
        if built:
            self._done.add(built)
        # fewest ancestors first: a view never precedes one of its own ancestors
        for unique_id in sorted(self._waiting, key=lambda u: (len(self._waiting[u]), u)):
            if self._waiting[unique_id] <= self._done:
                del self._waiting[unique_id]
                self._done.add(unique_id)
                yield dg.Output(None, output_name=self._keys[unique_id].to_python_identifier(),
                                metadata={"unique_id": unique_id, "status": "current view, not re-created"})


def _start_build(manifest, args: list[str]):
    """Run dbtRunner in a worker thread; return an iterator over its events (as dbt's JSON log dicts) that
    ends when dbt does, the list that collects error lines, and the outcome dict ("result" or "error").
    A thread, so that the step yields each node's result as it finishes (progress in the UI) and stays
    interruptible while waiting."""
    from dbt.cli.main import dbtRunner
    from dbt_common.events.functions import msg_to_dict

    events: queue.Queue = queue.Queue()
    done = object()
    outcome: dict = {}

    def on_event(message) -> None:
        if message.info.name in RESULT_EVENTS or message.info.level == "error":
            events.put(msg_to_dict(message))

    def work() -> None:
        try:
            outcome["result"] = dbtRunner(manifest=manifest, callbacks=[on_event]).invoke(args)
        except BaseException as error:  # reported by the caller, never lost in the thread
            outcome["error"] = error
        finally:
            _release_duckdb()
            events.put(done)

    worker = threading.Thread(target=work, name="dbt-build", daemon=True)
    worker.start()

    def drain():
        try:
            while True:
                try:
                    item = events.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is done:
                    return
                yield item
        except BaseException:  # the run is being stopped: stop dbt's query, wait a bounded time for dbt
            _interrupt_duckdb()
            worker.join(timeout=60)
            raise
        worker.join()

    return drain(), [], outcome


def _release_duckdb() -> None:
    """Close dbt-duckdb's connection: dbt-duckdb keeps it open across invocations, and the file must be
    released when the run ends (the run's own StoreResource instance stays open until then)."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        if environment is not None:
            environment.close()
        DuckDBConnectionManager.close_all_connections()


def _interrupt_duckdb() -> None:
    """On a run termination, stop the query dbt is running (best effort) so the step ends promptly."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager

        environment = DuckDBConnectionManager._ENV
        if environment is not None and getattr(environment, "conn", None) is not None:
            environment.conn.interrupt()
    except Exception:  # nothing to interrupt
        pass


def dbt_resource(settings) -> DbtRunnerResource:
    return DbtRunnerResource(target_dir=str(settings.dbt_target_dir), log_dir=str(settings.logs_dir))


class DbtBuildConfig(dg.Config):
    """Run config of the dbt models (Launchpad: ops.codex_dbt_models.config)."""

    full_refresh: bool = False  # rebuild incremental models from scratch (after changing their logic)


def dbt_vars() -> dict[str, str]:
    """dbt vars of a run: the active enrichment model key (the models prefer its enrichment rows) and the
    project's fingerprint."""
    from codex_dreams.enrichment.cache import active_model_key
    from codex_dreams.params import env_overrides
    from codex_dreams.settings import get_settings

    overrides = env_overrides()  # CODEX_PARAMS: the SQL models see the same parameters as the Python cycles
    fingerprint = project_fingerprint()
    if overrides:  # views embed the vars in their SQL: other parameters, another view fingerprint
        fingerprint += ":" + hashlib.md5(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:12]
    return {**overrides, "enrichment_model": active_model_key(get_settings()), "project_fingerprint": fingerprint}


def view_fingerprint(database: str, schema: str, name: str, variables: Mapping[str, str]) -> str:
    """The comment macros/view_materialization.sql stores on a view it creates: a hash of the project's files,
    the enrichment model var, the dbt version and the relation (all its compiled SQL depends on)."""
    from dbt.version import __version__ as dbt_version

    text = "|".join([variables.get("project_fingerprint", ""), variables.get("enrichment_model", ""), dbt_version,
                     f"{database}.{schema}.{name}"])
    return "codex-view:" + hashlib.md5(text.encode("utf-8")).hexdigest()


@cache
def _manifest_json_at(path: Path, mtime: float) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _manifest_json() -> dict:
    path = ensure_manifest()
    return _manifest_json_at(path, path.stat().st_mtime)


@cache
def _asset_keys_at(path: Path, mtime: float) -> dict[str, dg.AssetKey]:
    """unique id -> asset key of every model, as the translator names them."""
    manifest = _manifest_json_at(path, mtime)
    translator = stage_translator()
    return {unique_id: translator.get_asset_spec(manifest, unique_id, dbt_project()).key
            for unique_id, node in manifest["nodes"].items() if node["resource_type"] == "model"}


def _model_asset_keys() -> dict[str, dg.AssetKey]:
    path = ensure_manifest()
    return _asset_keys_at(path, path.stat().st_mtime)


def _selected_unique_ids(context: dg.AssetExecutionContext) -> set[str]:
    selected = set(context.selected_asset_keys)
    return {unique_id for unique_id, key in _model_asset_keys().items() if key in selected}


def current_views(context: dg.AssetExecutionContext, con, variables: Mapping[str, str]) -> dict[str, dg.AssetKey]:
    """The step's selected views whose stored fingerprint is the one dbt would write now (unique id -> asset
    key): one query for all of them, instead of one dbt node each that finds the same and does nothing."""
    manifest = _manifest_json()
    selected = _selected_unique_ids(context)
    views = {unique_id: node for unique_id, node in manifest["nodes"].items()
             if unique_id in selected and node["config"].get("materialized") == "view"}
    if not views:
        return {}
    database = con.execute("select current_database()").fetchone()[0]
    stored = {(schema, name): comment for schema, name, comment in con.execute(
        "select schema_name, view_name, comment from duckdb_views() where database_name = current_database()"
    ).fetchall()}
    keys = _model_asset_keys()
    return {unique_id: keys[unique_id] for unique_id, node in views.items()
            if stored.get((node["schema"], node["alias"] or node["name"]))
            == view_fingerprint(database, node["schema"], node["alias"] or node["name"], variables)}


def build_dbt_assets(select: str = "fqn:*", name: str = "codex_dbt_models") -> dg.AssetsDefinition:
    manifest = ensure_manifest()

    @dbt_assets(manifest=manifest, project=dbt_project(), select=select, name=name,
                dagster_dbt_translator=stage_translator(), pool=DUCKDB_WRITER_POOL)
    def _models(context: dg.AssetExecutionContext, config: DbtBuildConfig, dbt: DbtRunnerResource,
                duckdb: DuckDBResource):
        # profiles.yml reads DUCKDB_PATH: dbt writes the very file the Python assets use, with the same config
        # (extension directory included), so it shares the database instance the run holds open.
        os.environ["DUCKDB_PATH"] = str(duckdb.database)
        os.environ["CODEX_DUCKDB_EXTENSION_DIR"] = str(duckdb.connection_config.get("extension_directory", ""))
        variables = dbt_vars()
        with duckdb.get_connection() as con:
            unchanged = current_views(context, con, variables)
        yield from dbt.build(context, dbt_vars=json.dumps(variables), full_refresh=config.full_refresh,
                             skip_views=unchanged)

    return _models

