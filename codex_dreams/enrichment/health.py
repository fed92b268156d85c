"""What `codex health` says about enrichment: did the last run fall back to the heuristics too often (read from
its materialization in the Dagster instance: no store access, no server call), and, with --verbose, are the
configured model names among those the server lists (a llama.cpp-style server answers under any name, so a
wrong name is otherwise never noticed)."""

from __future__ import annotations

import posixpath

from codex_dreams.settings import Settings

OK, WARNING = "ok", "warning"  # the statuses of codex_dreams.commands.health
LIST_TIMEOUT_S = 3.0


def last_run_check(settings: Settings) -> tuple[str, str, str] | None:
    """(name, status, detail) from the enrichment asset's latest materialization, or None if it never ran (or
    ran for another configuration)."""
    import dagster as dg

    from codex_dreams.enrichment.asset import ASSET_NAME
    from codex_dreams.enrichment.cache import active_model_key
    from codex_dreams.instance import ensure_instance

    ensure_instance(settings)
    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_materializations(dg.AssetKey(ASSET_NAME), limit=1, ascending=False).records
    if not records or records[0].asset_materialization is None:
        return None
    metadata = {name: value.value for name, value in records[0].asset_materialization.metadata.items()}
    if metadata.get("model_key") != active_model_key(settings):
        return None
    alert = metadata.get("fallback_alert")
    if alert:
        return "enrichment", WARNING, str(alert)
    return "enrichment", OK, (f"last run: {metadata.get('llm_answers', 0)} LLM answers, "
                              f"{metadata.get('fallbacks', 0)} fallbacks, {metadata.get('http_errors', 0)} HTTP "
                              f"errors, {metadata.get('embeddings_pending', 0)} embeddings pending")


def _is_listed(model: str, names: list[str], provider: str) -> bool:
    listed = {name for name in names if name}
    listed |= {posixpath.basename(name) for name in listed}  # llama.cpp lists the GGUF file's path
    if provider == "ollama" and ":" not in model:
        return model in listed or f"{model}:latest" in listed  # Ollama's implicit tag
    return model in listed


def model_check(settings: Settings) -> tuple[str, str, str] | None:
    """(name, status, detail): are the chat and embedding models listed by their servers? None when the server
    does not answer (the `llm` check already says so) or the provider is offline."""
    from codex_dreams.enrichment.models import InvalidOutputError
    from codex_dreams.enrichment.providers import ProviderError, TransientHTTPError, build_remote_provider
    from codex_dreams.enrichment.resilience import CircuitOpenError, ResilienceOptions

    if settings.llm_provider == "offline":
        return None
    if settings.llm_provider == "ollama":
        wanted = [("chat", "OLLAMA_MODEL", settings.ollama_model), ("embedding", "EMBEDDING_MODEL",
                                                                     settings.embedding_model)]
    else:
        wanted = [("chat", "OPENAI_MODEL", settings.openai_model),
                  ("embedding", "OPENAI_EMBEDDING_MODEL", settings.openai_embedding_model)]
    missing, found = [], []
    with build_remote_provider(settings, ResilienceOptions(max_attempts=1), timeout=LIST_TIMEOUT_S) as provider:
        listings: dict[str, list[str]] = {}
        for server, variable, model in wanted:
            url = (provider.chat_server if server == "chat" else provider.embedding_server).base_url
            try:
                if url not in listings:
                    listings[url] = provider.list_models(server)
            except TransientHTTPError:
                return None
            except (ProviderError, CircuitOpenError, InvalidOutputError) as error:
                return "llm.models", WARNING, f"could not list the server's models: {error}"
            names = listings[url]
            if _is_listed(model, names, settings.llm_provider):
                found.append(f"{variable} {model!r}")
            else:
                shown = ", ".join(repr(name) for name in names[:8]) or "nothing"
                missing.append(f"{variable} {model!r} is not among the models the server lists ({shown})")
    if missing:
        return "llm.models", WARNING, ("; ".join(missing) + ". A server may answer under any name, so the answers "
                                       "come from whichever model it serves: set the name it lists")
    return "llm.models", OK, " and ".join(found) + " are listed by the server"


def enrichment_checks(settings: Settings, *, verbose: bool) -> list[tuple[str, str, str]]:
    checks = [last_run_check(settings)]
    if verbose:
        checks.append(model_check(settings))
    return [check for check in checks if check is not None]
