"""Stored engine events: `workspace_events`, one row per (workspace, seq), and `workspaces.last_event_seq`.

An event is an engine envelope `{seq, id, ts, type, payload}`. Storing is idempotent: only events whose
seq is above the workspace's `last_event_seq` are inserted, in the same transaction that advances it, so a
pump that resumes from the stored seq (or is handed an overlapping batch) stores each event exactly once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.events.envelope import Envelope
from replicas.store.models import Workspace, WorkspaceEvent

log = logging.getLogger("replicas.events")


class WorkspaceGone(LookupError):
    """The workspace row no longer exists (deleted): there is nowhere to store its events."""


OnStored = Callable[[AsyncSession, uuid.UUID, list[dict[str, Any]]], Awaitable[None]]


def _chat_id(event: dict[str, Any]) -> str | None:
    payload = event.get("payload") or {}
    chat_id = payload.get("chatId") or (payload.get("chat") or {}).get("id")
    return str(chat_id)[:64] if chat_id else None


def _uuid(workspace_id: uuid.UUID | str) -> uuid.UUID:
    return workspace_id if isinstance(workspace_id, uuid.UUID) else uuid.UUID(str(workspace_id))


def envelope(row: WorkspaceEvent) -> Envelope:
    """The engine envelope of a stored event."""
    return Envelope(seq=row.seq, id=row.event_id, ts=row.ts, type=row.type, payload=row.payload)


async def last_seq(session: AsyncSession, workspace_id: uuid.UUID | str) -> int:
    """The highest stored seq of the workspace (0 when none); raises WorkspaceGone if it does not exist."""
    value = await session.scalar(select(Workspace.last_event_seq).where(Workspace.id == _uuid(workspace_id)))
    if value is None:
        raise WorkspaceGone(str(workspace_id))
    return value


async def store_events(session: AsyncSession, workspace_id: uuid.UUID | str,
                       events: Iterable[dict[str, Any]], on_stored: OnStored | None = None) -> list[Envelope]:
    """Store the events not stored yet and commit; returns them (in seq order), as they should be published.

    `on_stored(session, workspace_id, events)` runs inside the same transaction with the new events, so
    what it derives from them (projections, webhook deliveries) commits exactly once with them.

    The first statement is an UPDATE of the workspace row that returns the row: it takes the row lock on
    PostgreSQL and the write lock on SQLite before `last_event_seq` is read, so concurrent writers cannot
    interleave, and it loads the row into the session (`on_stored` gets it from there, without a query). The new
    events and the row's changes then go in one flush; the pump's store costs BEGIN, this UPDATE, the INSERT, the
    row's UPDATE, the notifications and COMMIT."""
    workspace_id = _uuid(workspace_id)
    try:
        row = (await session.execute(
            update(Workspace).where(Workspace.id == workspace_id)
            .values(last_event_seq=Workspace.last_event_seq, updated_at=Workspace.updated_at)
            .returning(Workspace).execution_options(populate_existing=True))).scalar_one_or_none()
        if row is None:
            raise WorkspaceGone(str(workspace_id))
        current = row.last_event_seq
        fresh: dict[int, dict[str, Any]] = {}
        for event in events:
            seq = int(event["seq"])
            if seq > current:
                fresh.setdefault(seq, event)
        stored = [fresh[seq] for seq in sorted(fresh)]
        if stored:
            if stored[0]["seq"] != current + 1:
                log.warning("workspace %s: event seq jumps from %d to %d", workspace_id, current, stored[0]["seq"])
            session.add_all(WorkspaceEvent(workspace_id=workspace_id, seq=e["seq"], event_id=str(e.get("id", "")),
                                           type=str(e["type"]), ts=str(e.get("ts", "")),
                                           payload=e.get("payload") or {}, chat_id=_chat_id(e)) for e in stored)
            row.last_event_seq = stored[-1]["seq"]
            if on_stored is not None:
                await on_stored(session, workspace_id, stored)
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    return [Envelope(seq=e["seq"], id=str(e.get("id", "")), ts=str(e.get("ts", "")), type=str(e["type"]),
                     payload=e.get("payload") or {}) for e in stored]


async def append_events(session: AsyncSession, workspace_id: uuid.UUID | str,
                        events: Iterable[dict[str, Any]]) -> int:
    """Store the events not stored yet (seq above `last_event_seq`) and commit; returns how many were new."""
    return len(await store_events(session, workspace_id, events))


async def read_events(session: AsyncSession, workspace_id: uuid.UUID | str, after: int = 0,
                      limit: int = 500) -> list[Envelope]:
    """Stored events with seq > `after`, oldest first, at most `limit`, as engine envelopes."""
    rows = await session.scalars(
        select(WorkspaceEvent).where(WorkspaceEvent.workspace_id == _uuid(workspace_id), WorkspaceEvent.seq > after)
        .order_by(WorkspaceEvent.seq).limit(limit))
    return [envelope(row) for row in rows]
