"""/v1/slack/threads (spec §3.10): route a Slack thread to a workspace.

    POST /v1/slack/threads/attach   {channel_id*, thread_ts*, workspace_id?}  -> {thread, workspace: {id, name}}

With an API key, `workspace_id` is required (400 without) and names a workspace of the caller's organization
(404 otherwise); it may switch a thread to another workspace. In agent mode (the engine secret and
`X-Workspace-Id`), the caller's own workspace is the target, naming another one is a 403, and a thread another
workspace holds is a 409 (switching it takes an API key). Each attach is audit-logged.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from pydantic import Field

from replicas.api.agent_auth import WORKSPACE_ID_HEADER, authenticate_agent
from replicas.api.deps import SessionDep, authenticate_caller
from replicas.api.schemas.common import ERROR_RESPONSES
from replicas.api.schemas.common import Request as RequestBody
from replicas.errors import BadRequest, Forbidden
from replicas.services import slack_threads as service
from replicas.services.principal import Principal
from replicas.store.models import Workspace

router = APIRouter(prefix="/v1/slack/threads", tags=["Slack"], responses=ERROR_RESPONSES)


class SlackThreadAttachRequest(RequestBody):
    channel_id: str = Field(min_length=1, description="Slack channel ID containing the thread.")
    thread_ts: str = Field(min_length=1, description="Slack thread timestamp.")
    workspace_id: str | None = Field(default=None, description="Target workspace ID. Required outside agent mode.")


async def _target(request: Request, session, body: SlackThreadAttachRequest, authorization: str | None,
                  x_workspace_id: str | None) -> tuple[Principal, Workspace, bool]:
    """Who attaches, the target workspace, and whether they may take a thread from another workspace."""
    if x_workspace_id is not None:
        own = await authenticate_agent(request, session, authorization, x_workspace_id)
        if body.workspace_id is not None and body.workspace_id.strip().lower() != str(own.id):
            raise Forbidden("The workspace agent cannot route this Slack thread",
                            "agent mode can attach a thread to its own workspace only")
        return Principal(own.organization_id, None, None, "member", f"workspace:{own.name}"), own, False
    principal = await authenticate_caller(request, session, authorization)
    if not body.workspace_id:
        raise BadRequest("Invalid request", "workspace_id is required outside agent mode")
    return principal, await request.app.state.replicas.get_workspace(principal, body.workspace_id), True


@router.post("/attach", summary="Attach Slack Thread")
async def attach_slack_thread(
    body: SlackThreadAttachRequest,
    request: Request,
    session: SessionDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_workspace_id: Annotated[str | None, Header(alias=WORKSPACE_ID_HEADER, include_in_schema=False)] = None,
):
    """Route a Slack thread's replies to a workspace (and its answers back to the thread)."""
    principal, workspace, may_switch = await _target(request, session, body, authorization, x_workspace_id)
    thread = await service.attach(request.app.state, principal, workspace, body.channel_id, body.thread_ts,
                                  may_switch=may_switch)
    return {"thread": service.thread_record(thread), "workspace": {"id": str(workspace.id), "name": workspace.name}}
