"""Finding replicas across an organization (our extensions to the Replica API, used by the dashboard and
open to any client): a search with more filters than `GET /v1/replica`, and a stream of status changes.

`search` adds `environment_id` and a case-insensitive name `query` to the contract's status and source
filters; items are the contract's ReplicaListItem plus `environment_id`. `status_changes` lets one
connection watch every replica of an organization, which a page listing a thousand cannot do with one
event stream each (browsers allow six connections per origin, and an attached stream keeps a workspace
awake). It is pushed: a commit that changes what the list shows signals the organization on the event hub
(replica_status_feed.py; from other processes by PostgreSQL NOTIFY), and the stream then reads the store, which
every process writes, for rows changed since its last look and rows gone. It also reads it after
`safety_interval` quiet seconds, so a lost signal costs latency, never a change.

Each change carries `id:`, a cursor (the newest `updated_at` seen, in microseconds since the epoch); a stream
opened with that cursor first sends every replica changed since (`replica.created` for those created since),
with a margin for clocks and late commits: a change may come twice, and each carries the whole item. A replica
deleted since is reported too (`replica.deleted`), from the tombstone its deletion left; tombstones are kept a
day (replica_status_feed.TOMBSTONE_DAYS), so a client away longer should read the list again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas.errors import BadRequest
from replicas.events.fanout import EventHub
from replicas.events.notify import status_key
from replicas.services.principal import Principal
from replicas.services.replica_status_feed import ANY_ORGANIZATION
from replicas.services.replica_views import list_item
from replicas.services.workspaces import POOLED
from replicas.store.models import ReplicaTombstone, Workspace, aware


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


async def status_changes(sessions: async_sessionmaker[AsyncSession], hub: EventHub, principal: Principal,
                         after: int | None = None,
                         safety_interval: float = 15.0) -> AsyncIterator[tuple[str, dict[str, Any], int] | int]:
    """`(type, {"replica": item}, cursor)` for each change of the organization's replicas from now on (or since
    the cursor `after`): `replica.created`, `replica.updated` (the indexed item), `replica.deleted` (its id). A
    bare cursor first, so that a client knows where it stands before any change."""
    org = principal.organization_id
    watch = _StatusWatch(hub, org)
    try:
        known = await _look(sessions, org)
        cursor = max([_micros(updated) for updated in known.values()], default=0)
        if after is not None:
            since = after - RESUME_MARGIN_MICROSECONDS
            missed = [row_id for row_id, updated in known.items() if _micros(updated) > since]
            deleted = await _tombstones(sessions, org, since=since)
            cursor = max([cursor, after, *deleted.values()])
            for kind, item in await _items(sessions, missed, lambda row: _micros(row.created_at) > since):
                yield kind, {"replica": item}, cursor
            for row_id in deleted:
                yield "replica.deleted", {"replica": {"id": str(row_id)}}, cursor
        yield cursor
        while True:
            await watch.changed(safety_interval)
            current = await _look(sessions, org)
            changed = [row_id for row_id, updated in current.items() if known.get(row_id) != updated]
            cursor = max([cursor, *(_micros(updated) for updated in current.values())])
            for kind, item in await _items(sessions, changed, lambda row, seen=known: row.id not in seen):
                yield kind, {"replica": item}, cursor
            gone = known.keys() - current.keys()
            if gone:
                cursor = max([cursor, *(await _tombstones(sessions, org, ids=gone)).values()])
            for row_id in gone:
                yield "replica.deleted", {"replica": {"id": str(row_id)}}, cursor
            known = current
    finally:
        watch.close()


RESUME_MARGIN_MICROSECONDS = 10_000_000
SIGNAL_GAP_SECONDS = 0.05  # at most one look per gap: a burst of commits costs one read


class _StatusWatch:
    """The hub signals for one organization's replicas: its own, and those of commits whose organization is not
    known (bulk updates)."""

    def __init__(self, hub: EventHub, organization_id: uuid.UUID):
        self.hub = hub
        self.keys = (status_key(str(organization_id)), status_key(ANY_ORGANIZATION))
        self.subscriptions = [hub.subscribe(key) for key in self.keys]

    async def changed(self, timeout: float) -> None:
        """Return after a signal, or after `timeout` seconds without one."""
        waits = [asyncio.ensure_future(anext(subscription)) for subscription in self.subscriptions]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        await asyncio.sleep(SIGNAL_GAP_SECONDS)
        for index, subscription in enumerate(self.subscriptions):
            while not subscription.queue.empty():
                subscription.queue.get_nowait()
            if subscription.dropped:  # overflowed: signals are only wake-ups, so a new subscription loses nothing
                subscription.close()
                self.subscriptions[index] = self.hub.subscribe(self.keys[index])

    def close(self) -> None:
        for subscription in self.subscriptions:
            subscription.close()


def _micros(moment: datetime) -> int:
    return int(aware(moment).timestamp() * 1_000_000)


async def _look(sessions: async_sessionmaker[AsyncSession], org: uuid.UUID) -> dict[uuid.UUID, datetime]:
    """Every listed replica of the organization with its `updated_at`."""
    async with sessions() as session:
        return {row_id: aware(updated) for row_id, updated in await session.execute(
            select(Workspace.id, Workspace.updated_at).where(Workspace.organization_id == org,
                                                             Workspace.status != POOLED))}


async def _tombstones(sessions: async_sessionmaker[AsyncSession], org: uuid.UUID, *, since: int | None = None,
                      ids: set[uuid.UUID] | None = None) -> dict[uuid.UUID, int]:
    """The organization's deleted replicas (deleted after the cursor `since`, or among `ids`) with the time of
    their deletion as a cursor, oldest first."""
    where = [ReplicaTombstone.organization_id == org]
    if ids is not None:
        where.append(ReplicaTombstone.replica_id.in_(ids))
    async with sessions() as session:
        rows = await session.execute(select(ReplicaTombstone.replica_id, ReplicaTombstone.deleted_at).where(*where)
                                     .order_by(ReplicaTombstone.deleted_at))
        deleted = {row_id: _micros(deleted_at) for row_id, deleted_at in rows}
    return {row_id: at for row_id, at in deleted.items() if since is None or at > since}


async def _items(sessions: async_sessionmaker[AsyncSession], ids: list[uuid.UUID],
                 created: Callable[[Workspace], bool]) -> list[tuple[str, dict[str, Any]]]:
    """`(replica.created | replica.updated, indexed item)` for the rows `ids` still listed, oldest first."""
    if not ids:
        return []
    async with sessions() as session:
        rows = await session.scalars(select(Workspace).where(Workspace.id.in_(ids), Workspace.status != POOLED)
                                     .order_by(Workspace.updated_at, Workspace.id))
        return [("replica.created" if created(row) else "replica.updated", indexed_item(row)) for row in rows]
