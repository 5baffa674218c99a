"""Finding replicas across an organization (our extensions to the Replica API, used by the dashboard and
open to any client): a search with more filters than `GET /v1/replica`, and a stream of status changes.

`search` adds `environment_id` and a case-insensitive name `query` to the contract's status and source
filters; items are the contract's ReplicaListItem plus `environment_id`. `status_changes` lets one
connection watch every replica of an organization, which a page listing a thousand cannot do with one
event stream each (browsers allow six connections per origin, and an attached stream keeps a workspace
awake). It reads the store, which every control-plane process writes, so it also holds with several
processes on PostgreSQL: each `interval` it looks for rows changed since the last look and for rows gone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas.errors import BadRequest
from replicas.services.principal import Principal
from replicas.services.replica_views import list_item
from replicas.services.workspaces import POOLED
from replicas.store.models import Workspace, aware


def indexed_item(row: Workspace) -> dict[str, Any]:
    return {**list_item(row), "environment_id": str(row.environment_id) if row.environment_id else None}


def _uuid(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadRequest("Invalid request", f"{name}: {value!r} is not a valid id") from None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search(session: AsyncSession, principal: Principal, *, page: int, limit: int, status: str | None = None,
                 source: str | None = None, environment_id: str | None = None,
                 query: str | None = None) -> dict[str, Any]:
    """One page of the organization's replicas, newest first, as `GET /v1/replica` pages them."""
    where = [Workspace.organization_id == principal.organization_id, Workspace.status != POOLED]
    if status:
        where.append(Workspace.status == status)
    if source:
        where.append(Workspace.source == source)
    if environment_id:
        where.append(Workspace.environment_id == _uuid(environment_id, "environment_id"))
    if query and query.strip():
        where.append(func.lower(Workspace.name).like(f"%{_escape_like(query.strip().lower())}%", escape="\\"))
    total = await session.scalar(select(func.count()).select_from(Workspace).where(*where)) or 0
    rows = await session.scalars(select(Workspace).where(*where)
                                 .order_by(Workspace.created_at.desc(), Workspace.id)
                                 .offset((page - 1) * limit).limit(limit))
    return {"replicas": [indexed_item(row) for row in rows], "total": total, "page": page, "limit": limit,
            "total_pages": (total + limit - 1) // limit}


async def status_changes(sessions: async_sessionmaker[AsyncSession], principal: Principal,
                         interval: float = 1.0) -> AsyncIterator[dict[str, Any] | None]:
    """Events for the organization's replicas from now on: `replica.created`, `replica.updated` (with the
    indexed item) and `replica.deleted` (with its id); None after each quiet look."""
    org = principal.organization_id
    known: dict[uuid.UUID, datetime] = {}
    async with sessions() as session:
        for row_id, updated in await session.execute(
                select(Workspace.id, Workspace.updated_at).where(Workspace.organization_id == org,
                                                                 Workspace.status != POOLED)):
            known[row_id] = aware(updated)
    while True:
        await asyncio.sleep(interval)
        events: list[dict[str, Any]] = []
        async with sessions() as session:
            current = {row_id: aware(updated) for row_id, updated in await session.execute(
                select(Workspace.id, Workspace.updated_at).where(Workspace.organization_id == org,
                                                                 Workspace.status != POOLED))}
            changed = [row_id for row_id, updated in current.items() if known.get(row_id) != updated]
            if changed:
                for row in await session.scalars(select(Workspace).where(Workspace.id.in_(changed))):
                    kind = "replica.updated" if row.id in known else "replica.created"
                    events.append({"type": kind, "replica": indexed_item(row)})
        events += [{"type": "replica.deleted", "replica": {"id": str(row_id)}} for row_id in known.keys() - current]
        known = current
        if not events:
            yield None
        for event in events:
            yield event
