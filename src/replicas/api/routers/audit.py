"""/v1/audit-log: the organization's configuration changes, newest first (org admins; our extension)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from replicas.api.deps import PrincipalDep, SessionDep
from replicas.api.pagination import Page, paged
from replicas.api.schemas.audit import ListAuditEventsResponse, audit_event_view
from replicas.api.schemas.common import ERROR_RESPONSES, ErrorBody
from replicas.services import audit

FORBIDDEN = {403: {"model": ErrorBody, "description": "Admin access required"}}
router = APIRouter(prefix="/v1/audit-log", tags=["Audit Log"], responses={**ERROR_RESPONSES, **FORBIDDEN})


@router.get("", response_model=ListAuditEventsResponse)
async def list_audit_events(
    session: SessionDep,
    principal: PrincipalDep,
    paging: Annotated[Page, paged(default_limit=20)],
    actor: str | None = Query(None, description="An actor id (user or API key) or name (an email)"),
    resource_type: str | None = Query(None, description="e.g. environment, repository, api_key"),
    action: str | None = Query(None, description="e.g. repository.created"),
    since: datetime | None = Query(None, description="ISO-8601; events at or after it. Naive means UTC."),
):
    """Lists audit events with secrets redacted. Org admins only (an org key or an admin's personal
    key); members get 403."""
    if since is not None:
        # Stored times are UTC; SQLite compares them as text, so compare in UTC too.
        since = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
    events, total = await audit.list_events(session, principal, page=paging.page, limit=paging.limit,
                                            actor=actor or None,
                                            resource_type=resource_type or None, action=action or None,
                                            since=since)
    return {"audit_events": [audit_event_view(e) for e in events], "total": total, "page": paging.page,
            "limit": paging.limit, "totalPages": paging.total_pages(total)}
