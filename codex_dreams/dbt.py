"""dbt wiring in one place: the project, its manifest, the translator and the dbt assets factory."""


import os
import shutil
import subprocess
import sys
from functools import cache, cached_property
from pathlib import Path

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from dagster_duckdb import DuckDBResource

from codex_dreams.params import DBT_PROJECT_DIR

DUCKDB_WRITER_POOL = "duckdb_writer"
STAGE_OWNERS = ["team:codex-dreams"]


def dbt_executable() -> str:
    """The dbt next to this interpreter (the venv's), so no PATH setup is needed."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


@cache
def dbt_project() -> DbtProject:
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _newest_source_mtime() -> float:
    newest = 0.0
    for pattern in ("dbt_project.yml", "profiles.yml", "models/**/*", "macros/**/*", "tests/**/*"):
        for path in DBT_PROJECT_DIR.glob(pattern):
            if path.is_file():
                newest = max(newest, path.stat().st_mtime)
    return newest


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


def stage_translator() -> StageTranslator:
    return StageTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


class CodexDbtCliResource(DbtCliResource):
    """DbtCliResource that knows its dbt version without running `dbt --version` (~3 s per step): dbt-core
    is installed in this very environment, so its version is the package's."""

    @cached_property
    def _cli_version(self):
        from dbt.version import __version__
        from packaging import version

        return version.parse(__version__)


def keep_partial_parse(invocation_target: Path) -> None:
    """Publish a run's partial-parse state to the project's target dir, so the next run (same store path and
    vars, hence the same profile) parses incrementally instead of from scratch."""
    produced = invocation_target / "partial_parse.msgpack"
    if not produced.exists():
        return
    destination = dbt_project().project_dir / "target" / "partial_parse.msgpack"
    temporary = destination.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(produced, temporary)
    os.replace(temporary, destination)


def dbt_resource() -> DbtCliResource:
    return CodexDbtCliResource(project_dir=dbt_project(), profiles_dir=str(DBT_PROJECT_DIR),
                          dbt_executable=dbt_executable())


class DbtBuildConfig(dg.Config):
    """Run config of the dbt models (Launchpad: ops.codex_dbt_models.config)."""

    full_refresh: bool = False  # rebuild incremental models from scratch (after changing their logic)


def build_args(config: DbtBuildConfig) -> list[str]:
    """`dbt build` arguments: the active enrichment model key as a var, and an optional full refresh."""
    import json

    from codex_dreams.enrichment.cache import active_model_key
    from codex_dreams.settings import get_settings

    args = ["build", "--vars", json.dumps({"enrichment_model": active_model_key(get_settings())}),
            # A rhythm builds one stage: skip tests that also touch a later stage's (maybe unbuilt) models.
            "--indirect-selection", "cautious"]
    if config.full_refresh:
        args.append("--full-refresh")
    return args


def build_dbt_assets(select: str = "fqn:*", name: str = "codex_dbt_models") -> dg.AssetsDefinition:
    manifest = ensure_manifest()

    @dbt_assets(manifest=manifest, project=dbt_project(), select=select, name=name,
                dagster_dbt_translator=stage_translator(), pool=DUCKDB_WRITER_POOL)
    def _models(context: dg.AssetExecutionContext, config: DbtBuildConfig, dbt: DbtCliResource,
                duckdb: DuckDBResource):
        # profiles.yml reads DUCKDB_PATH: dbt writes the very file the Python assets use.
        os.environ["DUCKDB_PATH"] = str(duckdb.database)
        invocation = dbt.cli(build_args(config), context=context)
        yield from invocation.stream()
        keep_partial_parse(invocation.target_path)

    return _models

