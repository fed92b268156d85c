"""The rhythm catalogue (schedules/rhythms.yaml) as validated Python objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from codex_dreams.errors import InputError

CATALOGUE_PATH = Path(__file__).resolve().parents[2] / "schedules" / "rhythms.yaml"


class CatalogueError(InputError):
    """The rhythm catalogue is malformed; the message names the rhythm and field."""


@dataclass(frozen=True)
class Rhythm:
    name: str
    kind: str  # schedule | sensor
    job: str
    description: str
    cron: tuple[str, ...] = ()
    interval_seconds: int | None = None
    backlog_threshold: int | None = None


@dataclass(frozen=True)
class Catalogue:
    timezone: str
    rhythms: tuple[Rhythm, ...]

    def by_name(self, name: str) -> Rhythm:
        for rhythm in self.rhythms:
            if rhythm.name == name:
                return rhythm
        raise KeyError(name)


def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    raw = yaml.safe_load(path.read_text())
    rhythms = []
    for entry in raw.get("rhythms", []):
        name = entry.get("name") or "<unnamed>"
        kind = entry.get("kind")
        if kind not in ("schedule", "sensor"):
            raise CatalogueError(f"rhythm {name}: kind must be schedule or sensor")
        if not entry.get("job"):
            raise CatalogueError(f"rhythm {name}: job is required")
        cron = entry.get("cron") or ()
        cron = (cron,) if isinstance(cron, str) else tuple(cron)
        if kind == "schedule" and not cron:
            raise CatalogueError(f"rhythm {name}: a schedule needs cron")
        if kind == "sensor" and not entry.get("interval_seconds"):
            raise CatalogueError(f"rhythm {name}: a sensor needs interval_seconds")
        rhythms.append(Rhythm(
            name=name, kind=kind, job=entry["job"], description=" ".join(str(entry.get("description", "")).split()),
            cron=cron, interval_seconds=entry.get("interval_seconds"),
            backlog_threshold=entry.get("backlog_threshold"),
        ))
    return Catalogue(timezone=raw.get("timezone", "UTC"), rhythms=tuple(rhythms))
