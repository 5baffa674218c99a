"""/v1/environments/{environmentId}/variables: list, create, update, delete (contract tag Environments)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from replicas.api.deps import BoxDep, PrincipalDep, SessionDep
from replicas.api.schemas.common import ERROR_RESPONSES, SuccessResponse
from replicas.api.schemas.env_resources import (
    CreateEnvironmentVariableRequest,
    EnvironmentVariableResponse,
    ListEnvironmentVariablesResponse,
    UpdateEnvironmentVariableRequest,
    variable_view,
)
from replicas.services import env_variables as service

router = APIRouter(prefix="/v1/environments/{environmentId}/variables", tags=["Environments"],
                   responses=ERROR_RESPONSES)

EnvRef = Annotated[str, Path(alias="environmentId", description="Environment UUID, or `global`")]


@router.get("", response_model=ListEnvironmentVariablesResponse)
async def list_variables(env_ref: EnvRef, session: SessionDep, principal: PrincipalDep, box: BoxDep):
    rows = await service.list_variables(session, principal, env_ref)
    return {"environment_variables": [variable_view(row, box) for row in rows]}


@router.post("", status_code=201, response_model=EnvironmentVariableResponse)
async def create_variable(env_ref: EnvRef, body: CreateEnvironmentVariableRequest, session: SessionDep,
                          principal: PrincipalDep, box: BoxDep):
    row = await service.create_variable(session, principal, box, env_ref, body.model_dump())
    return {"environment_variable": variable_view(row, box)}


@router.patch("/{id}", response_model=EnvironmentVariableResponse)
async def update_variable(env_ref: EnvRef, id: str, body: UpdateEnvironmentVariableRequest,
                          session: SessionDep, principal: PrincipalDep, box: BoxDep):
    row = await service.update_variable(session, principal, box, env_ref, id,
                                        body.model_dump(exclude_unset=True))
    return {"environment_variable": variable_view(row, box)}


@router.delete("/{id}", response_model=SuccessResponse)
async def delete_variable(env_ref: EnvRef, id: str, session: SessionDep, principal: PrincipalDep):
    await service.delete_variable(session, principal, env_ref, id)
    return {"success": True}
