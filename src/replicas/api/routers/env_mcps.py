"""/v1/environments/{environmentId}/mcps: list, create, update, delete (contract tag Environments)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from replicas.api.deps import BoxDep, PrincipalDep, SessionDep
from replicas.api.schemas.common import ERROR_RESPONSES, SuccessResponse
from replicas.api.schemas.env_resources import (
    CreateEnvironmentMcpRequest,
    EnvironmentMcpResponse,
    ListEnvironmentMcpsResponse,
    UpdateEnvironmentMcpRequest,
    mcp_view,
)
from replicas.services import env_mcps as service

router = APIRouter(prefix="/v1/environments/{environmentId}/mcps", tags=["Environments"],
                   responses=ERROR_RESPONSES)

EnvRef = Annotated[str, Path(alias="environmentId", description="Environment UUID, or `global`")]


@router.get("", response_model=ListEnvironmentMcpsResponse)
async def list_mcps(env_ref: EnvRef, session: SessionDep, principal: PrincipalDep, box: BoxDep):
    rows = await service.list_mcps(session, principal, env_ref)
    return {"environment_mcps": [mcp_view(row, box) for row in rows]}


@router.post("", status_code=201, response_model=EnvironmentMcpResponse)
async def create_mcp(env_ref: EnvRef, body: CreateEnvironmentMcpRequest, session: SessionDep,
                     principal: PrincipalDep, box: BoxDep):
    row = await service.create_mcp(session, principal, box, env_ref, body.model_dump())
    return {"environment_mcp": mcp_view(row, box)}


@router.patch("/{id}", response_model=EnvironmentMcpResponse)
async def update_mcp(env_ref: EnvRef, id: str, body: UpdateEnvironmentMcpRequest, session: SessionDep,
                     principal: PrincipalDep, box: BoxDep):
    row = await service.update_mcp(session, principal, box, env_ref, id, body.model_dump(exclude_unset=True))
    return {"environment_mcp": mcp_view(row, box)}


@router.delete("/{id}", response_model=SuccessResponse)
async def delete_mcp(env_ref: EnvRef, id: str, session: SessionDep, principal: PrincipalDep, box: BoxDep):
    await service.delete_mcp(session, principal, box, env_ref, id)
    return {"success": True}
