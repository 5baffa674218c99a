"""Audit-log models (our extension, spec §7.7 and §10 #39). Paged like automations: `totalPages`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from replicas.api.schemas.common import iso
from replicas.store.models import AuditEvent as AuditEventRow


class AuditEvent(BaseModel):
    id: str
    created_at: str
    actor_type: str
    actor_id: str | None
    actor_name: str | None
    action: str
    resource_type: str
    resource_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class ListAuditEventsResponse(BaseModel):
    audit_events: list[AuditEvent]
    total: int
    page: int
    limit: int
    totalPages: int  # noqa: N815 - the wire name, as in the automations lists


def audit_event_view(event: AuditEventRow) -> dict:
    return {
        "id": str(event.id),
        "created_at": iso(event.created_at),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "before": event.before,
        "after": event.after,
    }
