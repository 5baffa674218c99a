"""Events on a replica with no workspace behind it, for the dashboard's live-stream tests and its benchmark: a
replica row (in `error`, which nothing wakes) with one chat, and events stored and published exactly as the event
pump does with an engine's (store_events, then the hub)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from replicas.events import store as event_store
from replicas.events import store_events
from replicas.store.models import Environment, Organization, Workspace, iso, utcnow
from tests.live_server import LiveServer


async def seed_replicas(server: LiveServer, org_name: str, count: int) -> tuple[str, str]:
    """`count` replicas (statuses and sources mixed, two environments) in the organization; returns the id of
    the first, which has a chat, and that chat's id."""
    async with server.app.state.sessions() as session:
        org = await session.scalar(select(Organization).where(Organization.name == org_name))
        envs = [Environment(organization_id=org.id, name=f"env-{i}") for i in range(2)]
        session.add_all(envs)
        await session.flush()
        now = utcnow()
        # No runtime stands behind these rows, so none is active or preparing (the control plane would try to
        # reach or start it); the first is in error, which nothing wakes.
        statuses, sources = ["error", "sleeping", "archived"], ["api", "dashboard", "automation"]
        rows = [Workspace(organization_id=org.id, name=f"replica-{i:04d}", status=statuses[i % 3],
                          source=sources[i % 3],
                          environment_id=envs[i % 2].id, created_at=now - timedelta(minutes=i),
                          last_activity_at=now - timedelta(minutes=i),
                          repositories=[{"id": str(uuid.uuid4()), "name": "acme/shop", "url": "https://example.com/shop.git"}])
                for i in range(count)]
        session.add_all(rows)
        await session.commit()
        target = rows[0]
        chat_id = str(uuid.uuid4())
        target.default_chat_id = chat_id
        await session.commit()
        target_id = target.id
    await publish(server, target_id, [("chat.created", {"chat": {
        "id": chat_id, "provider": "claude", "title": "Claude Code", "createdAt": iso(now), "updatedAt": iso(now),
        "processing": False, "parentChatId": None}})])
    return str(target_id), chat_id


async def publish(server: LiveServer, workspace_id: uuid.UUID | str, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Store then publish, as the event pump does with an engine's events."""
    hub = server.app.state.replicas.hub
    async with server.app.state.sessions() as session:
        seq = await event_store.last_seq(session, workspace_id)
        stored = await store_events(session, workspace_id, [
            {"seq": seq + i + 1, "id": str(uuid.uuid4()), "ts": iso(utcnow()), "type": kind, "payload": payload}
            for i, (kind, payload) in enumerate(events)])
    for event in stored:
        await hub.publish(workspace_id, event)


def assistant_text(chat_id: str, text: str) -> tuple[str, dict[str, Any]]:
    """A `chat.turn.delta` carrying one assistant message (Claude Code's shape)."""
    return ("chat.turn.delta", {"chatId": chat_id, "event": {"timestamp": iso(utcnow()), "type": "claude-assistant",
                                                            "payload": {"type": "assistant", "message": {
                                                                "content": [{"type": "text", "text": text}]}}}})
