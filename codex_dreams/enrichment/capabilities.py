"""What an OpenAI-compatible server accepts as `response_format`, remembered per base URL and model.

Servers differ: OpenAI, vLLM, LM Studio and llama.cpp's own server take `json_schema`; llama-cpp-python's
server refuses it (HTTP 500, "type must be one of text or json_object") and takes `{"type": "json_object",
"schema": ...}`; others take only a plain `json_object`. The client finds out once (providers.OpenAIProvider)
and remembers the answer here: in the process, and in `$CODEX_HOME/llm_capabilities.json`, so the next run
does not pay for refused requests again. Delete the file (or the entry) to negotiate afresh.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

from codex_dreams.settings import redact_url

logger = logging.getLogger(__name__)

FILE_NAME = "llm_capabilities.json"
# The order of preference: the first form the server accepts is the one used.
STRUCTURED_OUTPUT_FORMS = ("json_schema", "json_object+schema", "json_object")

_LOCK = threading.Lock()
_MEMO: dict[tuple[str, str], str | None] = {}  # (file, server key) -> form; per file, so CODEX_HOMEs never mix


def _server_key(base_url: str, model: str) -> str:
    return f"{redact_url(base_url.rstrip('/'))}|{model}"  # no password ever lands in the file


class CapabilityMemo:
    """Remembered structured-output forms under one CODEX_HOME (`path` None: in this provider only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._local: dict[str, str | None] = {}

    def _read_file(self) -> dict:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            logger.warning("ignoring unreadable %s; structured output is negotiated afresh", self.path)
            return {}
        servers = data.get("servers") if isinstance(data, dict) else None
        return servers if isinstance(servers, dict) else {}

    def get(self, base_url: str, model: str) -> str | None:
        key = _server_key(base_url, model)
        if self.path is None:
            return self._local.get(key)
        memo_key = (str(self.path), key)
        with _LOCK:
            if memo_key not in _MEMO:
                entry = self._read_file().get(key)
                form = entry.get("structured_output") if isinstance(entry, dict) else None
                _MEMO[memo_key] = form if form in STRUCTURED_OUTPUT_FORMS else None
            return _MEMO[memo_key]

    def put(self, base_url: str, model: str, form: str | None) -> None:
        """Remember `form` (None forgets) for this server and model."""
        key = _server_key(base_url, model)
        if self.path is None:
            self._local[key] = form
            return
        with _LOCK:
            _MEMO[(str(self.path), key)] = form
            servers = self._read_file()
            if form is None:
                servers.pop(key, None)
            else:
                servers[key] = {"structured_output": form,
                                "learned_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Written whole and renamed: a reader never sees half a file.
                with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=self.path.parent, delete=False,
                                                 prefix=".llm_capabilities.", suffix=".tmp") as handle:
                    json.dump({"servers": servers}, handle, indent=2, sort_keys=True)
                os.replace(handle.name, self.path)
            except OSError as error:  # remembering is an optimisation: the next run negotiates again
                logger.warning("could not write %s (%s)", self.path, type(error).__name__)
