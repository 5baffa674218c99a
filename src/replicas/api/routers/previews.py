"""Previews (contract tag Preview; spec §3.6, §3.7, §10 #15, #36).

    agent mode   POST /v1/previews, GET /v1/previews, DELETE /v1/previews/{port}
    org auth     POST/GET /v1/workspaces/{workspaceId}/previews, DELETE .../previews/{port}

Only the two DELETEs are in the contract; creation and listing follow spec §10 #15. The
`/v1/workspaces/...` family also accepts agent-mode credentials for the caller's own workspace (§10 #36).
The URLs themselves are served by `replicas.api.proxy`.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from pydantic import BaseModel, Field

from replicas.api.agent_auth import WORKSPACE_ID_HEADER, AgentWorkspaceDep, authenticate_agent
from replicas.api.deps import SessionDep, SettingsDep, authenticate_caller
from replicas.api.schemas.common import ERROR_RESPONSES, iso
from replicas.api.schemas.common import Request as RequestBody
from replicas.errors import NotFound
from replicas.services import previews as service
from replicas.settings import Settings
from replicas.store.models import Preview, Workspace

router = APIRouter(tags=["Preview"], responses=ERROR_RESPONSES)

WORKSPACE = "/v1/workspaces/{workspaceId}/previews"
PortParam = Annotated[int, Path(description="Workspace port number (1-65535)")]


class CreatePreviewRequest(RequestBody):
    port: int = Field(description="Port served inside the workspace (1-65535)")
    authenticated: bool = Field(default=False, description="Require an org API key to open the URL")


class PreviewBody(BaseModel):
    port: int
    publicUrl: str
    authenticated: bool
    createdAt: str


class ListPreviewsResponse(BaseModel):
    previews: list[PreviewBody]


class DeletePreviewResponse(BaseModel):
    success: bool
    port: int


def preview_view(settings: Settings, preview: Preview) -> dict:
    return {"port": preview.port, "publicUrl": service.public_url(settings, preview),
            "authenticated": preview.authenticated, "createdAt": iso(preview.created_at)}


async def get_caller_workspace(
    request: Request,
    session: SessionDep,
    workspace_id: Annotated[str, Path(alias="workspaceId", description="Workspace UUID")],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_workspace_id: Annotated[str | None, Header(alias=WORKSPACE_ID_HEADER, include_in_schema=False)] = None,
) -> Workspace:
    """The path's workspace: for an API key, within its organization; in agent mode, only its own."""
    if x_workspace_id is not None:
        workspace = await authenticate_agent(request, session, authorization, x_workspace_id)
        try:
            same = uuid.UUID(workspace_id) == workspace.id
        except ValueError:
            same = False
        if not same:
            raise NotFound("Workspace not found")
        return workspace
    principal = await authenticate_caller(request, session, authorization)
    return await request.app.state.replicas.get_workspace(principal, workspace_id)


CallerWorkspaceDep = Annotated[Workspace, Depends(get_caller_workspace)]


async def _announce(request: Request, session, settings: Settings, workspace: Workspace) -> None:
    """Tell the workspace's engine, which journals `preview.changed` for the event stream."""
    previews = [{k: v for k, v in preview_view(settings, p).items() if k != "authenticated"}
                for p in await service.list_previews(session, workspace.id)]
    await request.app.state.replicas.announce_previews(workspace, previews)


async def _create(request: Request, session, settings: Settings, workspace: Workspace, body: CreatePreviewRequest,
                  response: Response) -> dict:
    preview, created = await service.create_preview(session, workspace, body.port, body.authenticated,
                                                    settings=settings)
    response.status_code = 201 if created else 200
    if created:
        await _announce(request, session, settings, workspace)
    return preview_view(settings, preview)


async def _list(session, settings: Settings, workspace: Workspace) -> dict:
    return {"previews": [preview_view(settings, p) for p in await service.list_previews(session, workspace.id)]}


async def _delete(request: Request, session, settings: Settings, workspace: Workspace, port: int) -> dict:
    await service.delete_preview(session, workspace.id, port)
    await _announce(request, session, settings, workspace)
    return {"success": True, "port": port}


# --- agent mode -------------------------------------------------------------------------------------

@router.post("/v1/previews", status_code=201, response_model=PreviewBody,
             summary="Create Preview (agent mode; 200 when the port already has one)")
async def create_agent_preview(body: CreatePreviewRequest, workspace: AgentWorkspaceDep, session: SessionDep,
                               settings: SettingsDep, response: Response, request: Request):
    return await _create(request, session, settings, workspace, body, response)


@router.get("/v1/previews", response_model=ListPreviewsResponse, summary="List Previews (agent mode)")
async def list_agent_previews(workspace: AgentWorkspaceDep, session: SessionDep, settings: SettingsDep):
    return await _list(session, settings, workspace)


@router.delete("/v1/previews/{port}", response_model=DeletePreviewResponse, summary="Delete Preview")
async def delete_agent_preview(port: PortParam, workspace: AgentWorkspaceDep, session: SessionDep,
                               settings: SettingsDep, request: Request):
    return await _delete(request, session, settings, workspace, port)


# --- organization auth ------------------------------------------------------------------------------

@router.post(WORKSPACE, status_code=201, response_model=PreviewBody,
             summary="Create Workspace Preview (200 when the port already has one)")
async def create_workspace_preview(body: CreatePreviewRequest, workspace: CallerWorkspaceDep,
                                   session: SessionDep, settings: SettingsDep, response: Response,
                                   request: Request):
    return await _create(request, session, settings, workspace, body, response)


@router.get(WORKSPACE, response_model=ListPreviewsResponse, summary="List Workspace Previews")
async def list_workspace_previews(workspace: CallerWorkspaceDep, session: SessionDep, settings: SettingsDep):
    return await _list(session, settings, workspace)


@router.delete(WORKSPACE + "/{port}", response_model=DeletePreviewResponse, summary="Delete Workspace Preview")
async def delete_workspace_preview(port: PortParam, workspace: CallerWorkspaceDep, session: SessionDep,
                                   settings: SettingsDep, request: Request):
    return await _delete(request, session, settings, workspace, port)
