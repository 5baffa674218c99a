"""/v1/integrations (ours): per-organization secrets for inbound provider webhooks, and the receivers.

    GET     /v1/integrations                                       configured providers (never a secret)
    PUT     /v1/integrations/{provider}                            {secret, token, api_url, allowed_logins, ...}
                                                                   (admins; audited)
    DELETE  /v1/integrations/{provider}                            (admins; audited)
    POST    /v1/integrations/{provider}/webhook/{organization_id}  no auth: verified with that org's secret
    POST    /v1/integrations/github/token                          agent mode: a workspace's GitHub App token for
                                                                   one of its repositories (services/github_push.py)

`provider` is github, gitlab, slack, sentry or linear. GitHub, GitLab, Slack and Linear also take the
team loop's API token (stored encrypted, never shown again) and options
(services/integration_credentials.py). A delivery that fails verification gets 401
`{"error": "Invalid signature"}` (the reason is logged, not returned) and fires nothing; an unknown
organization or an unconfigured provider gets 404. A verified event answers 202
`{accepted: true, executions: [...]}` as soon as the executions are recorded (workspaces boot in the
background); Slack's `url_verification` gets its challenge back and GitHub's `ping` 200.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from replicas.api.agent_auth import WORKSPACE_ID_HEADER, authenticate_agent
from replicas.api.deps import BoxDep, PrincipalDep, SessionDep, SettingsDep
from replicas.api.schemas.common import ERROR_RESPONSES, SuccessResponse
from replicas.api.schemas.common import Request as RequestBody
from replicas.api.schemas.integrations import (
    IntegrationList,
    IntegrationView,
    SetIntegrationRequest,
    WebhookAccepted,
    integration_view,
)
from replicas.errors import PayloadTooLarge, Unauthorized
from replicas.services import github_push, integration_credentials
from replicas.services import integrations as service

router = APIRouter(prefix="/v1/integrations", tags=["Integrations"], responses=ERROR_RESPONSES)

MAX_DELIVERY_BYTES = 1024 * 1024  # GitHub caps deliveries at 25 MB; PR and alert events are far smaller


@router.get("", response_model=IntegrationList)
async def list_integrations(session: SessionDep, principal: PrincipalDep, settings: SettingsDep):
    rows = await service.list_secrets(session, principal)
    credentials = await integration_credentials.for_organization(session, principal.organization_id)
    return {"integrations": [integration_view(row, settings, credentials.get(row.provider)) for row in rows]}


class GitHubTokenRequest(RequestBody):
    repository: str = Field(min_length=3, max_length=200, description="owner/name of one of the workspace's")


class GitHubToken(BaseModel):
    token: str
    expires_at: str
    api_url: str


@router.post("/github/token", response_model=GitHubToken, summary="GitHub App token for a workspace (agent mode)")
async def github_token(
    body: GitHubTokenRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    box: BoxDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_workspace_id: Annotated[str | None, Header(alias=WORKSPACE_ID_HEADER, include_in_schema=False)] = None,
):
    """A short-lived installation token of the organization's GitHub App, for the calling workspace's push and
    pull request on one of its repositories."""
    workspace = await authenticate_agent(request, session, authorization, x_workspace_id)
    return await github_push.workspace_token(session, box, settings, workspace, body.repository)


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
