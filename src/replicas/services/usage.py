"""Metering: minutes each workspace was awake, by size and source (spec §7.6, §10 #33).

A `UsageSession` opens when a workspace becomes active and closes when it sleeps, is archived, fails or
is deleted. Each session counts its seconds rounded **up** to whole minutes; a session still open
counts up to now. `GET /v1/usage` reports per replica, and totals by size and by source.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

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
