"""/v1/integrations (ours): per-organization secrets for inbound provider webhooks, and the receivers.

    GET     /v1/integrations                                       configured providers (never a secret)
    PUT     /v1/integrations/{provider}                            {secret, token, api_url, allowed_logins, ...}
                                                                   (admins; audited)
    DELETE  /v1/integrations/{provider}                            (admins; audited)
    POST    /v1/integrations/{provider}/webhook/{organization_id}  no auth: verified with that org's secret

`provider` is github, gitlab, slack, sentry or linear. GitHub, GitLab, Slack and Linear also take the
team loop's API token (stored encrypted, never shown again) and options
(services/integration_credentials.py). A delivery that fails verification gets 401
`{"error": "Invalid signature"}` (the reason is logged, not returned) and fires nothing; an unknown
organization or an unconfigured provider gets 404. A verified event answers 202
`{accepted: true, executions: [...]}` as soon as the executions are recorded (workspaces boot in the
background); Slack's `url_verification` gets its challenge back and GitHub's `ping` 200.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from replicas.api.deps import BoxDep, PrincipalDep, SessionDep, SettingsDep
from replicas.api.schemas.common import ERROR_RESPONSES, SuccessResponse
from replicas.api.schemas.integrations import (
    IntegrationList,
    IntegrationView,
    SetIntegrationRequest,
    WebhookAccepted,
    integration_view,
)
from replicas.errors import PayloadTooLarge, Unauthorized
from replicas.services import integration_credentials
from replicas.services import integrations as service

router = APIRouter(prefix="/v1/integrations", tags=["Integrations"], responses=ERROR_RESPONSES)

MAX_DELIVERY_BYTES = 1024 * 1024  # GitHub caps deliveries at 25 MB; PR and alert events are far smaller


@router.get("", response_model=IntegrationList)
async def list_integrations(session: SessionDep, principal: PrincipalDep, settings: SettingsDep):
    rows = await service.list_secrets(session, principal)
    credentials = await integration_credentials.for_organization(session, principal.organization_id)
    return {"integrations": [integration_view(row, settings, credentials.get(row.provider)) for row in rows]}


@router.put("/{provider}", response_model=IntegrationView)
async def set_integration(provider: str, body: SetIntegrationRequest, session: SessionDep,
                          principal: PrincipalDep, box: BoxDep, settings: SettingsDep):
    """Set (or replace) the provider's secret and the team loop's token and options; answers the webhook URL to
    configure at the provider."""
    row = await service.set_secret(session, box, principal, provider, body.secret, body.loop_changes())
    credential = await integration_credentials.get_row(session, principal.organization_id, provider)
    return integration_view(row, settings, credential)


@router.delete("/{provider}", response_model=SuccessResponse)
async def delete_integration(provider: str, session: SessionDep, principal: PrincipalDep):
    await service.delete_secret(session, principal, provider)
    return {"success": True}


@router.post("/{provider}/webhook/{organization_id}", status_code=202, response_model=WebhookAccepted,
             openapi_extra={"security": []})
async def receive_webhook(provider: str, organization_id: str, request: Request):
    """A provider's delivery: verified with the organization's secret, then fired into matching automations."""
    body = await _read_limited(request)
    try:
        result = await service.receive(request.app.state, provider, organization_id, body, request.headers)
    except service.VerificationFailed:
        raise Unauthorized("Invalid signature") from None
    if result.reply is not None:
        return JSONResponse(result.reply, status_code=200)
    return JSONResponse({"accepted": True, "executions": result.executions}, status_code=202)


async def _read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_DELIVERY_BYTES:
        raise PayloadTooLarge("Payload too large", f"a delivery must be at most {MAX_DELIVERY_BYTES // 1024} KB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_DELIVERY_BYTES:
            raise PayloadTooLarge("Payload too large",
                                  f"a delivery must be at most {MAX_DELIVERY_BYTES // 1024} KB")
        chunks.append(chunk)
    return b"".join(chunks)
