"""The audit log: every configuration change, with secrets redacted before they are stored."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.errors import BadRequest, Forbidden
from replicas.services.principal import Principal
from replicas.store.models import AuditEvent

REDACTED = "[redacted]"
# Keys whose values are secret wherever they appear in a before/after snapshot.
SECRET_KEYS = {"value", "credential", "api_key", "token", "secret", "password"}
# Maps whose every value is secret (MCP stdio env, MCP http headers).
SECRET_MAPS = {"env", "headers"}


def redact(snapshot: Any) -> Any:
    """Return a copy with secret values replaced; keys and structure stay, so diffs still read."""
    if isinstance(snapshot, dict):
        out = {}
        for k, v in snapshot.items():
            if k in SECRET_MAPS and isinstance(v, dict):
                out[k] = {name: REDACTED for name in v}
            elif k in SECRET_KEYS and v is not None and not isinstance(v, (dict, list, bool)):
                out[k] = REDACTED
            else:
                out[k] = redact(v)
        return out
    if isinstance(snapshot, list):
        return [redact(v) for v in snapshot]
    return snapshot


def record(
    session: AsyncSession,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | str | None,
    before: dict | None = None,
    after: dict | None = None,
) -> None:
    """Add an audit row to the caller's transaction: it commits (or not) with the change itself."""
    session.add(
        AuditEvent(
            organization_id=principal.organization_id,
            actor_type=principal.actor_type if principal.display != "system" else "system",
            actor_id=principal.actor_id,
            actor_name=principal.display,
            action=action,
            resource_type=resource_type,
            resource_id=str(resource_id) if resource_id is not None else None,
            before=redact(before) if before is not None else None,
            after=redact(after) if after is not None else None,
        )
    )


async def list_events(
    session: AsyncSession,
    principal: Principal,
    *,
    page: int,
    limit: int,
    actor: str | None = None,
    resource_type: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
) -> tuple[list[AuditEvent], int]:
    if not principal.is_admin:
        raise Forbidden("Admin access required")
    if page < 1 or not 1 <= limit <= 100:
        raise BadRequest("Invalid pagination", "page must be >= 1 and limit between 1 and 100")
    query = select(AuditEvent).where(AuditEvent.organization_id == principal.organization_id)
    if actor:
        query = query.where((AuditEvent.actor_id == actor) | (AuditEvent.actor_name == actor))
    if resource_type:
        query = query.where(AuditEvent.resource_type == resource_type)
    if action:
        query = query.where(AuditEvent.action == action)
    if since:
        query = query.where(AuditEvent.created_at >= since)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(AuditEvent.created_at.desc(), AuditEvent.id).offset((page - 1) * limit).limit(limit)
    )
    return list(rows), int(total or 0)
