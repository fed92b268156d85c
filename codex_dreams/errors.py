"""The project's error families. The CLI turns any of them into one line on stderr and the exit code below,
so every module raises one of these (or a subclass) for a condition a user can act on."""


class CodexError(Exception):
    exit_code = 1


class InputError(CodexError, ValueError):
    """Bad input or configuration: nothing was changed (exit 2)."""

    exit_code = 2


class OperationalError(CodexError, RuntimeError):
    """The input was fine but something the command needs is unavailable (exit 1)."""

    exit_code = 1


class StoreBusyError(OperationalError):
    """Another process holds the DuckDB file."""


class SourceUnavailable(OperationalError):
    """PostgreSQL could not be reached or read; the message carries no password."""


class InboxUnavailable(OperationalError):
    """The sensory-register inbox (SQLite under CODEX_HOME) cannot be opened or written."""
