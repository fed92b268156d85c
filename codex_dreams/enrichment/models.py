"""The enrichment of one memory: the pydantic model every provider's answer must pass, and its JSON schema.

The same model validates an LLM's JSON (out-of-range numbers and missing core fields are rejected, never
clamped: the caller retries once and then falls back to the offline provider) and is what the offline
heuristics produce, so every row in `enriched.memory_enrichment` has one shape whoever produced it.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_LIST_ITEMS = 20
MAX_ITEM_CHARS = 120
MAX_PHRASE_CHARS = 200


class InvalidOutputError(ValueError):
    """A provider answered, but not with a valid enrichment (bad JSON, missing field, value out of range)."""


def _clean_list(values: list[str]) -> list[str]:
    # LLMs repeat themselves and pad lists; keep the first spelling of each item, trimmed and bounded.
    seen: set[str] = set()
    cleaned: list[str] = []
    for value in values:
        text = " ".join(value.split())[:MAX_ITEM_CHARS]
        if text and text.casefold() not in seen:
            seen.add(text.casefold())
            cleaned.append(text)
        if len(cleaned) == MAX_LIST_ITEMS:
            break
    return cleaned


class Enrichment(BaseModel):
    """What enrichment adds to a memory. Scores are bounded; goal/task/action are null when absent."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    entities: list[str] = Field(description="Named people, organisations, products and named places.")
    topics: list[str] = Field(description="One to five short lowercase key phrases: what the memory is about.")
    sentiment: float = Field(ge=-1.0, le=1.0, description="Valence from -1 (very negative) to 1 (very positive).")
    emotional_salience: float = Field(ge=0.0, le=1.0, description="How emotionally charged, whatever the sign.")
    importance: float = Field(ge=0.0, le=1.0, description="How likely the person needs this memory later.")
    goal: str | None = Field(default=None, description="The longer-term aim behind the memory, or null.")
    task: str | None = Field(default=None, description="The concrete thing to do or being done, or null.")
    action: str | None = Field(default=None, description="The main action taken, a short verb phrase, or null.")
    locations: list[str] = Field(
        default_factory=list, description="Named places (allocentric): cities, venues, addresses, rooms."
    )
    egocentric_locations: list[str] = Field(
        default_factory=list,
        description="Places relative to the speaker or a landmark: 'to my left', 'two blocks north of the station'.",
    )

    @field_validator("entities", "topics", "locations", "egocentric_locations")
    @classmethod
    def _bounded_list(cls, values: list[str]) -> list[str]:
        return _clean_list(values)

    @field_validator("goal", "task", "action")
    @classmethod
    def _phrase(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = " ".join(value.split())[:MAX_PHRASE_CHARS]
        return text or None


def _strip_schema(node: Any) -> Any:
    # Titles and defaults only add tokens to the grammar; strict JSON-schema servers reject "default".
    if isinstance(node, dict):
        return {key: _strip_schema(value) for key, value in node.items() if key not in ("title", "default")}
    if isinstance(node, list):
        return [_strip_schema(value) for value in node]
    return node


_REQUEST_SCHEMA: dict | None = None


def enrichment_json_schema() -> dict:
    """The JSON schema sent to the LLM (`format` for Ollama, `response_format.json_schema` for OpenAI).

    Every property is required and no others are allowed, as OpenAI's strict mode demands; nullable fields
    stay nullable. Validation of the answer is a little more lenient (see `Enrichment`).
    """
    global _REQUEST_SCHEMA
    if _REQUEST_SCHEMA is None:
        schema = _strip_schema(Enrichment.model_json_schema())
        schema["required"] = list(schema["properties"])
        schema["additionalProperties"] = False
        _REQUEST_SCHEMA = schema
    return copy.deepcopy(_REQUEST_SCHEMA)


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_enrichment(answer: str | dict) -> Enrichment:
    """Validate an LLM answer (JSON text or an already decoded object); InvalidOutputError if it is not valid."""
    if isinstance(answer, str):
        fenced = _FENCE.match(answer)  # some models wrap JSON in a Markdown fence despite `format`
        text = fenced.group(1) if fenced else answer
        try:
            answer = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidOutputError(f"answer is not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(answer, dict):
        raise InvalidOutputError(f"answer is a JSON {type(answer).__name__}, not an object")
    try:
        return Enrichment.model_validate(answer)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "answer"
        raise InvalidOutputError(f"{where}: {first.get('msg', 'invalid')}") from None


@dataclass(frozen=True)
class EnrichedText:
    """One text enriched by `enrich_texts` (single-shot use, nothing stored)."""

    text: str
    enrichment: Enrichment
    provider: str  # who produced the enrichment fields: "offline", "ollama" or "openai"
    fallback_reason: str | None
    embedding: np.ndarray | None  # unit-length float32, None if the remote embedding failed
    embedding_model: str | None
    latency_ms: float
