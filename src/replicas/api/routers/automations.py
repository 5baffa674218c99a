"""/v1/automations (contract tag Automation; spec §3.9, §6).

    GET/POST          /v1/automations
    GET/PATCH/DELETE  /v1/automations/{id}
    POST              /v1/automations/{id}/trigger                 manual run (cron, or `pr` + pull_request.command)
    GET               /v1/automations/{id}/executions
    POST              /v1/automations/{id}/rotate-webhook-token    ours: a new custom-webhook token
    POST              /v1/automations/webhook/{token}              no auth: fires a custom trigger

The custom webhook body: JSON is embedded as is; any body that is not JSON (whatever its content type, empty
or not UTF-8) is wrapped as `{"raw": "<body>"}` and accepted like JSON (spec §6; the contract's wording
overrides issue 5's 400). `services.automations.custom_webhook_payload` holds the rule. `X-Delivery-Id` (or
`X-Request-Id`) deduplicates retries.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from replicas.api.deps import BoxDep, PrincipalDep, SessionDep
from replicas.api.pagination import Page, paged
from replicas.api.schemas.automations import (
    CreateAutomationRequest,
    TriggerAutomationRequest,
    TriggerType,
    UpdateAutomationRequest,
    automation_view,
    execution_view,
    page_of,
)
from replicas.api.schemas.common import ERROR_RESPONSES, SuccessResponse
from replicas.errors import BadRequest, NotFound, PayloadTooLarge
from replicas.services import automations as service

router = APIRouter(prefix="/v1/automations", tags=["Automation"], responses=ERROR_RESPONSES)

MAX_WEBHOOK_BYTES = 256 * 1024
WEBHOOK_NOT_FOUND = "Webhook not found"


@router.post("/webhook/{token}", status_code=202, openapi_extra={"security": []})
async def fire_custom_webhook(token: str, request: Request,
                              x_delivery_id: Annotated[str | None, Header()] = None,
                              x_request_id: Annotated[str | None, Header()] = None):
    """Fire the automation whose custom-webhook token this is: 202 once the execution is recorded."""
    body = await _read_limited(request, MAX_WEBHOOK_BYTES)
    async with request.app.state.sessions() as session:
        automation = await service.find_by_webhook_token(session, token)
    if automation is None:
        raise NotFound(WEBHOOK_NOT_FOUND)
    payload, embedded = service.custom_webhook_payload(body)
    delivery_id = (x_delivery_id or x_request_id or "").strip()[:255] or None
    try:
        await service.fire(request.app.state, automation.id, trigger_type="custom", payload=payload,
                           delivery_id=delivery_id, event_summary=embedded)
    except (BadRequest, NotFound):  # disabled or deleted meanwhile: still indistinguishable
        raise NotFound(WEBHOOK_NOT_FOUND) from None
    return JSONResponse({"accepted": True}, status_code=202)


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge("Payload too large", f"the body must be at most {limit // 1024} KB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge("Payload too large", f"the body must be at most {limit // 1024} KB")
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("")
async def list_automations(session: SessionDep, principal: PrincipalDep, box: BoxDep,
                           paging: Annotated[Page, paged(default_limit=20)],
                           trigger_type: TriggerType | None = None, enabled: bool | None = None,
                           search: str | None = None, scope: Annotated[str, Query()] = "org"):
    """The organization's automations (and, with `scope=user|all`, the caller's personal ones)."""
    rows, total = await service.list_automations(session, principal, page=paging.page, limit=paging.limit,
                                                 trigger_type=trigger_type, enabled=enabled, search=search,
                                                 scope=scope)
    return page_of("automations", [automation_view(row, box) for row in rows], total, paging)


@router.post("", status_code=201)
async def create_automation(body: CreateAutomationRequest, session: SessionDep, principal: PrincipalDep,
                            box: BoxDep):
    row = await service.create_automation(session, box, principal, body.model_dump(exclude_unset=True))
    return {"automation": automation_view(row, box)}


@router.get("/{automation_id}")
async def get_automation(automation_id: str, session: SessionDep, principal: PrincipalDep, box: BoxDep):
    row = await service.get_automation(session, principal, automation_id)
    return {"automation": automation_view(row, box)}


@router.patch("/{automation_id}")
async def update_automation(automation_id: str, body: UpdateAutomationRequest, session: SessionDep,
                            principal: PrincipalDep, box: BoxDep):
    """Update the fields sent; `triggers` replaces the whole list. `scope` cannot change."""
    row = await service.update_automation(session, box, principal, automation_id,
                                          body.model_dump(exclude_unset=True))
    return {"automation": automation_view(row, box)}


@router.delete("/{automation_id}", response_model=SuccessResponse)
async def delete_automation(automation_id: str, session: SessionDep, principal: PrincipalDep):
    """Delete the automation and its execution history."""
    await service.delete_automation(session, principal, automation_id)
    return {"success": True}


@router.post("/{automation_id}/trigger")
async def trigger_automation(automation_id: str, principal: PrincipalDep, request: Request,
                             body: TriggerAutomationRequest | None = None):
    """Run it now (a new workspace and execution): cron automations, or `pr` with pull_request.command."""
    body = body or TriggerAutomationRequest()
    execution = await service.trigger_manually(request.app.state, principal, automation_id, body.payload,
                                               body.pr.model_dump() if body.pr else None)
    return {"execution_id": str(execution.id),
            "workspace_id": str(execution.workspace_id) if execution.workspace_id else None}


@router.get("/{automation_id}/executions")
async def list_executions(automation_id: str, session: SessionDep, principal: PrincipalDep,
                          paging: Annotated[Page, paged(default_limit=20)]):
    rows, total = await service.list_executions(session, principal, automation_id, page=paging.page,
                                                limit=paging.limit)
    return page_of("executions", [execution_view(row) for row in rows], total, paging)


@router.post("/{automation_id}/rotate-webhook-token")
async def rotate_webhook_token(automation_id: str, session: SessionDep, principal: PrincipalDep, box: BoxDep):
    """Ours: replace the custom-webhook token; the old URL answers 404 from now on."""
    row = await service.rotate_webhook_token(session, box, principal, automation_id)
    return {"automation": automation_view(row, box)}
