"""/v1/usage (ours): minutes each replica was awake, by size and source (spec §7.6); /v1/usage/daily: per UTC day."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from replicas.api.deps import PrincipalDep, SessionDep
from replicas.api.schemas.common import ERROR_RESPONSES
from replicas.services import usage

router = APIRouter(prefix="/v1/usage", tags=["Usage"], responses=ERROR_RESPONSES)


@router.get("")
async def get_usage(session: SessionDep, principal: PrincipalDep, since: datetime | None = None,
                    until: datetime | None = None):
    """Active minutes per replica (each awake stretch rounded up to a whole minute), with totals by
    size and by source, for sessions started in [since, until)."""
    return await usage.report(session, principal.organization_id, since, until)


@router.get("/daily")
async def get_daily_usage(session: SessionDep, principal: PrincipalDep, since: datetime | None = None,
                          until: datetime | None = None):
    """Active minutes per UTC day, for every whole day that [since, until) touches (default: the last 30 days,
    today included), each awake stretch's rounded-up minutes split over the days it spans, with each day's
    minutes by size and by source. At most 366 days."""
    return await usage.daily_report(session, principal.organization_id, since, until)
