"""Metering: minutes each workspace was awake, by size and source (spec §7.6, §10 #33).

A `UsageSession` opens when a workspace becomes active and closes when it sleeps, is archived, fails or
is deleted. Each session counts its seconds rounded **up** to whole minutes; a session still open
counts up to now. `GET /v1/usage` reports per replica, and totals by size and by source;
`GET /v1/usage/daily` (`daily_report`) splits the same minutes over the UTC days they were spent in.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.errors import BadRequest
from replicas.store.models import UsageSession, Workspace, aware, iso, utcnow


async def open_session(session: AsyncSession, row: Workspace) -> None:
    """Start counting (idempotent: a workspace has at most one open session)."""
    existing = await session.scalar(select(UsageSession.id).where(UsageSession.workspace_id == row.id,
                                                                  UsageSession.ended_at.is_(None)))
    if existing is None:
        session.add(UsageSession(organization_id=row.organization_id, workspace_id=row.id,
                                 workspace_name=row.name, user_id=row.user_id, size=row.size, source=row.source,
                                 started_at=utcnow()))


async def close_sessions(session: AsyncSession, workspace_id: uuid.UUID) -> None:
    await session.execute(update(UsageSession).where(UsageSession.workspace_id == workspace_id,
                                                     UsageSession.ended_at.is_(None))
                          .values(ended_at=utcnow()).execution_options(synchronize_session=False))



def billed_minutes(started_at: datetime, ended_at: datetime | None, now: datetime) -> int:
    seconds = max(0.0, (aware(ended_at or now) - aware(started_at)).total_seconds())
    return math.ceil(seconds / 60) if seconds > 0 else 0


async def report(session: AsyncSession, organization_id: uuid.UUID, since: datetime | None,
                 until: datetime | None) -> dict[str, Any]:
    """Minutes per replica (sessions that started in [since, until)), with totals by size and source."""
    query = select(UsageSession).where(UsageSession.organization_id == organization_id)
    if since is not None:
        query = query.where(UsageSession.started_at >= since)
    if until is not None:
        query = query.where(UsageSession.started_at < until)
    now = utcnow()
    replicas: dict[uuid.UUID, dict[str, Any]] = {}
    by_size: dict[str, int] = defaultdict(int)
    by_source: dict[str, int] = defaultdict(int)
    for row in await session.scalars(query.order_by(UsageSession.started_at)):
        minutes = billed_minutes(row.started_at, row.ended_at, now)
        entry = replicas.setdefault(row.workspace_id, {
            "replica_id": str(row.workspace_id), "name": row.workspace_name, "size": row.size,
            "source": row.source, "minutes": 0, "sessions": 0, "first_started_at": iso(row.started_at),
            "active": False})
        entry["minutes"] += minutes
        entry["sessions"] += 1
        entry["active"] = entry["active"] or row.ended_at is None
        by_size[row.size] += minutes
        by_source[row.source] += minutes
    return {"usage": list(replicas.values()), "total_minutes": sum(by_size.values()),
            "by_size": dict(by_size), "by_source": dict(by_source),
            "since": iso(since), "until": iso(until)}


MAX_DAYS = 366
DEFAULT_DAYS = 30


def minutes_by_day(started_at: datetime, ended_at: datetime | None, now: datetime) -> dict[date, int]:
    """A stretch's billed minutes split over the UTC days it spans. Each day gets the whole minutes the stretch
    had reached by the day's end less those it had at its start (both rounded up), so the days add up to
    `billed_minutes` exactly: a stretch from 23:30 to 00:45:30 is 30 minutes on the first day, 46 on the next."""
    start, end = aware(started_at), aware(ended_at or now)
    days: dict[date, int] = {}
    cursor = start
    while cursor < end:
        piece_end = min(end, datetime.combine(cursor.date() + timedelta(days=1), time(), tzinfo=UTC))
        minutes = (math.ceil((piece_end - start).total_seconds() / 60)
                   - math.ceil((cursor - start).total_seconds() / 60))
        if minutes:
            days[cursor.date()] = minutes
        cursor = piece_end
    return days


def day_window(since: datetime | None, until: datetime | None, now: datetime) -> tuple[date, date]:
    """The UTC days [first, last] that [since, until) touches: by default the last DEFAULT_DAYS days up to today.
    Naive times are UTC. 400 when the window is empty or longer than MAX_DAYS."""
    def utc(value: datetime) -> datetime:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    end = utc(until) if until is not None else now
    last = (end - timedelta(microseconds=1)).date()
    first = utc(since).date() if since is not None else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise BadRequest("Invalid request", "since: must be before until")
    if (last - first).days + 1 > MAX_DAYS:
        raise BadRequest("Invalid request", f"since: the window may span at most {MAX_DAYS} days")
    return first, last


async def daily_report(session: AsyncSession, organization_id: uuid.UUID, since: datetime | None,
                       until: datetime | None) -> dict[str, Any]:
    """Awake minutes per UTC day (every day of the window, zeros included), by size and by source."""
    now = utcnow()
    first, last = day_window(since, until, now)
    window_start = datetime.combine(first, time(), tzinfo=UTC)
    window_end = datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)
    days = {first + timedelta(days=n): {"minutes": 0, "by_size": defaultdict(int), "by_source": defaultdict(int)}
            for n in range((last - first).days + 1)}
    query = select(UsageSession).where(UsageSession.organization_id == organization_id,
                                       UsageSession.started_at < window_end,
                                       or_(UsageSession.ended_at.is_(None), UsageSession.ended_at > window_start))
    for row in await session.scalars(query):
        for day, minutes in minutes_by_day(row.started_at, row.ended_at, now).items():
            if (bucket := days.get(day)) is not None:
                bucket["minutes"] += minutes
                bucket["by_size"][row.size] += minutes
                bucket["by_source"][row.source] += minutes
    series = [{"date": day.isoformat(), "minutes": bucket["minutes"], "by_size": dict(bucket["by_size"]),
               "by_source": dict(bucket["by_source"])} for day, bucket in sorted(days.items())]
    return {"days": series, "total_minutes": sum(d["minutes"] for d in series),
            "since": first.isoformat(), "until": last.isoformat()}
