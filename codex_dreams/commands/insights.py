"""`codex insights`: patterns across recent episodes and clusters, stored with their provenance.

Offline (always available) the insights are extractive: the recurring topics (with their trend against the
previous period), the people and places that recur, the mood trend (slope of daily mean sentiment), the
central memories (highest retrieval strength, else salience), the largest clusters and the most salient
episodes — each citing the memories it rests on. With an LLM provider configured, the same findings are also
handed to the LLM to phrase a few narrative insights; if it fails, the extractive ones stand.

"Recent" is event time: the `days` before the newest memory, so an imported diary gets insights about its
own last weeks. Insights go to `long_term_memory.insights`; re-running for the same period replaces them.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from codex_dreams.settings import Settings
from codex_dreams.store import relation_exists

INSIGHTS_DDL = """
create table if not exists long_term_memory.insights (
    insight_id varchar primary key,
    created_at timestamp not null,      -- when generated (UTC)
    period_start timestamp not null,    -- event-time period the insight covers
    period_end timestamp not null,
    kind varchar not null,              -- topics | people | places | mood | central | cluster | episode | narrative
    title varchar not null,
    body varchar not null,
    evidence varchar[] not null,        -- memory ids the insight rests on
    provenance json not null            -- method, provider/model, parameters
)
"""
DEFAULT_DAYS = 14
TOP = 5


@dataclass
class Insight:
    kind: str
    title: str
    body: str
    evidence: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)



def _recent_memories(con, start: datetime, end: datetime) -> list[dict]:
    """Active memories in [start, end] with their enrichment (stm_memories when built, else enrichment)."""
    if relation_exists(con, "short_term_memory", "stm_memories"):
        sql = """
            select s.memory_id, s.content, s.created_at, s.episode_id, s.sentiment, s.salience,
                   s.topics, s.entities, s.locations
            from short_term_memory.stm_memories s
            where s.created_at between ? and ?
            order by s.created_at
        """
    else:
        sql = """
            with latest as (
                select * from enriched.memory_enrichment
                qualify row_number() over (partition by memory_id order by enriched_at desc) = 1
            )
            select m.id as memory_id, m.content, m.created_at, null as episode_id, e.sentiment,
                   0.5 * coalesce(e.importance, 0.5) + 0.5 * coalesce(e.emotional_salience, 0) as salience,
                   e.topics, e.entities, e.locations
            from raw.memories m left join latest e on e.memory_id = m.id
            where m.deleted_at is null and m.created_at between ? and ?
            order by m.created_at
        """
    cursor = con.execute(sql, [start, end])
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row)) for row in cursor.fetchall()]


def _count_terms(memories: list[dict], column: str) -> tuple[Counter, dict[str, list[str]]]:
    counts: Counter = Counter()
    evidence: dict[str, list[str]] = {}
    for memory in memories:
        seen = set()
        for term in memory.get(column) or []:
            key = str(term).strip()
            if not key or key.lower() in seen:
                continue
            seen.add(key.lower())
            counts[key] += 1
            evidence.setdefault(key, []).append(memory["memory_id"])
    return counts, evidence


def _topic_insight(recent: list[dict], previous: list[dict]) -> Insight | None:
    counts, evidence = _count_terms(recent, "topics")
    before, _ = _count_terms(previous, "topics")
    recurring = [(t, n) for t, n in counts.most_common(50) if n >= 2][:TOP]
    if not recurring:
        return None
    parts = []
    for topic, n in recurring:
        was = before.get(topic, 0)
        trend = "new" if was == 0 else ("rising" if n > was else ("falling" if n < was else "steady"))
        parts.append(f"{topic} ({n} memories, {trend})")
    return Insight("topics", "Recurring topics", "Most on your mind: " + "; ".join(parts) + ".",
                   [mid for topic, _ in recurring for mid in evidence[topic][:3]])


def _recurring(recent: list[dict], column: str, kind: str, title: str, lead: str,
               exclude: set[str] | None = None) -> Insight | None:
    counts, evidence = _count_terms(recent, column)
    exclude = {e.lower() for e in (exclude or set())}
    top = [(t, n) for t, n in counts.most_common(50) if n >= 2 and t.lower() not in exclude][:TOP]
    if not top:
        return None
    return Insight(kind, title, lead + ", ".join(f"{t} ({n}×)" for t, n in top) + ".",
                   [mid for t, _ in top for mid in evidence[t][:2]])


def _mood_insight(recent: list[dict]) -> Insight | None:
    by_day: dict = {}
    for memory in recent:
        if memory.get("sentiment") is None:
            continue
        by_day.setdefault(memory["created_at"].date(), []).append(memory)
    if len(by_day) < 3:
        return None
    days = sorted(by_day)
    means = np.array([np.mean([m["sentiment"] for m in by_day[d]]) for d in days])
    x = np.array([(d - days[0]).days for d in days], dtype=float)
    slope = float(np.polyfit(x, means, 1)[0]) if np.ptp(x) > 0 else 0.0
    trend = "improving" if slope > 0.01 else ("declining" if slope < -0.01 else "steady")
    best, worst = days[int(means.argmax())], days[int(means.argmin())]
    best_memory = max(by_day[best], key=lambda m: m["sentiment"])
    worst_memory = min(by_day[worst], key=lambda m: m["sentiment"])
    body = (f"Mood is {trend} over {len(days)} days (mean sentiment {means.mean():+.2f}, slope {slope:+.3f}/day). "
            f"Brightest day {best}: \"{best_memory['content'][:120]}\". "
            f"Hardest day {worst}: \"{worst_memory['content'][:120]}\".")
    return Insight("mood", f"Mood {trend}", body, [best_memory["memory_id"], worst_memory["memory_id"]])


def _central_insight(con, recent: list[dict]) -> Insight | None:
    ids = [m["memory_id"] for m in recent]
    if not ids:
        return None
    if relation_exists(con, "long_term_memory", "ltm_memories"):
        rows = con.execute(
            "select memory_id, content, retrieval_strength from long_term_memory.ltm_memories "
            "where memory_id in (select unnest(?::varchar[])) order by retrieval_strength desc, memory_id limit ?",
            [ids, TOP],
        ).fetchall()
        measure = "retrieval strength"
    else:
        ranked = sorted(recent, key=lambda m: (-(m.get("salience") or 0), m["memory_id"]))[:TOP]
        rows = [(m["memory_id"], m["content"], m.get("salience") or 0) for m in ranked]
        measure = "salience"
    if not rows:
        return None
    body = "The memories that hold the most weight right now:\n" + "\n".join(
        f"- {content[:140]} ({measure} {score:.2f})" for _, content, score in rows)
    return Insight("central", "Central memories", body, [r[0] for r in rows])


def _cluster_insights(con, recent: list[dict]) -> list[Insight]:
    if not relation_exists(con, "long_term_memory", "memory_clusters"):
        return []
    ids = [m["memory_id"] for m in recent]
    by_id = {m["memory_id"]: m for m in recent}
    rows = con.execute(
        "select cluster_id, list(memory_id order by memory_id) from long_term_memory.memory_clusters "
        "where memory_id in (select unnest(?::varchar[])) group by cluster_id order by count(*) desc, cluster_id limit 3",
        [ids],
    ).fetchall()
    insights = []
    for cluster_id, members in rows:
        if len(members) < 3:
            continue
        topics, _ = _count_terms([by_id[m] for m in members], "topics")
        label = ", ".join(t for t, _ in topics.most_common(3)) or "mixed"
        representative = max((by_id[m] for m in members), key=lambda m: m.get("salience") or 0)
        insights.append(Insight(
            "cluster", f"Cluster {cluster_id}: {label}",
            f"{len(members)} recent memories gather around {label}, e.g. \"{representative['content'][:140]}\".",
            members[:10]))
    return insights


def _episode_insight(con, start: datetime, end: datetime) -> Insight | None:
    if not relation_exists(con, "short_term_memory", "stm_episodes"):
        return None
    rows = con.execute(
        "select episode_id, started_at, memory_count, goal, mood, salience, peak_memory_id "
        "from short_term_memory.stm_episodes where started_at between ? and ? "
        "order by salience desc, episode_id limit 3", [start, end]).fetchall()
    total = con.execute("select count(*) from short_term_memory.stm_episodes where started_at between ? and ?",
                        [start, end]).fetchone()[0]
    if not rows:
        return None
    lines = [f"- {started:%a %d %b %H:%M}: {count} memories, mood {mood or 'neutral'}"
             + (f", goal: {goal}" if goal else "") for _, started, count, goal, mood, _, _ in rows]
    return Insight("episode", "Most salient episodes",
                   f"{total} episodes in the period; the most salient:\n" + "\n".join(lines),
                   [r[6] for r in rows if r[6]])


def extract_insights(con, days: int = DEFAULT_DAYS) -> tuple[list[Insight], datetime, datetime]:
    newest = con.execute("select max(created_at) from raw.memories where deleted_at is null").fetchone()[0]
    if newest is None:
        return [], datetime.min, datetime.min
    end = newest
    start = end - timedelta(days=days)
    recent = _recent_memories(con, start, end)
    previous = _recent_memories(con, start - timedelta(days=days), start - timedelta(microseconds=1))
    places_counts, _ = _count_terms(recent, "locations")
    candidates = [
        _topic_insight(recent, previous),
        _recurring(recent, "entities", "people", "People around you", "Who keeps coming up: ",
                   exclude=set(places_counts)),
        _recurring(recent, "locations", "places", "Places", "Where life happened: "),
        _mood_insight(recent),
        _central_insight(con, recent),
        *_cluster_insights(con, recent),
        _episode_insight(con, start, end),
    ]
    provenance = {"method": "offline-extractive", "days": days, "memories": len(recent)}
    insights = [i for i in candidates if i is not None]
    for insight in insights:
        insight.provenance = {**provenance, **insight.provenance}
    return insights, start, end


def _insight_id(kind: str, title: str, start: datetime, end: datetime) -> str:
    return hashlib.md5(f"{kind}|{title}|{start.isoformat()}|{end.isoformat()}".encode()).hexdigest()


def store_insights(con, insights: list[Insight], start: datetime, end: datetime) -> None:
    """Replace the insights of this period in one transaction."""
    con.execute(INSIGHTS_DDL)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    con.execute("begin transaction")
    try:
        con.execute("delete from long_term_memory.insights where period_start = ? and period_end = ?", [start, end])
        for insight in insights:
            con.execute(
                "insert into long_term_memory.insights values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_insight_id(insight.kind, insight.title, start, end), now, start, end, insight.kind,
                 insight.title, insight.body, insight.evidence, json.dumps(insight.provenance)],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def generate_insights(settings: Settings, days: int = DEFAULT_DAYS) -> dict:
    """Compute, store and return the insights of the recent period."""
    from codex_dreams.store import open_store

    if days < 1:
        raise ValueError("--days must be at least 1")
    with open_store(settings, wait_seconds=30.0) as con:
        insights, start, end = extract_insights(con, days)
    if not insights:
        return {"period_start": None, "period_end": None, "insights": []}
    insights.extend(_narrate(settings, insights))  # HTTP, with no store connection held
    with open_store(settings, wait_seconds=30.0) as con:
        store_insights(con, insights, start, end)
    return {
        "period_start": start.isoformat(), "period_end": end.isoformat(),
        "insights": [{**asdict(i), "insight_id": _insight_id(i.kind, i.title, start, end)} for i in insights],
    }


def _narrate(settings: Settings, findings: list[Insight]) -> list[Insight]:
    """LLM-phrased insights from the extractive findings; none offline or when the LLM fails."""
    if settings.llm_provider == "offline":
        return []
    from codex_dreams.enrichment.models import InvalidOutputError
    from codex_dreams.enrichment.providers import ProviderError, build_remote_provider
    from codex_dreams.enrichment.resilience import CircuitOpenError

    evidence = sorted({mid for f in findings for mid in f.evidence})
    prompt = ("From these findings about a person's recent memories, write up to 3 short insights "
              "(patterns, tensions, suggestions). Findings:\n" +
              "\n".join(f"[{f.kind}] {f.title}: {f.body}" for f in findings))
    try:
        with build_remote_provider(settings) as provider:
            answer = provider.complete_json(prompt, NARRATIVE_SCHEMA)
    except (ProviderError, InvalidOutputError, CircuitOpenError):
        return []  # the extractive insights stand on their own
    narratives = []
    for item in (answer or {}).get("insights", [])[:3]:
        if isinstance(item, dict) and isinstance(item.get("title"), str) and isinstance(item.get("body"), str):
            narratives.append(Insight("narrative", item["title"][:200], item["body"][:2000], evidence[:20],
                                      {"method": "llm", "provider": settings.llm_provider}))
    return narratives


NARRATIVE_SCHEMA = {
    "type": "object",
    "properties": {"insights": {"type": "array", "items": {
        "type": "object", "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
        "required": ["title", "body"]}}},
    "required": ["insights"],
}
