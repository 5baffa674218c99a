"""/v1/environments: list, create, get, update, delete (contract tag Environments)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from replicas.api.deps import PrincipalDep, SessionDep
from replicas.api.schemas.common import ERROR_RESPONSES, SuccessResponse
from replicas.api.schemas.environments import (
    CreateEnvironmentRequest,
    EnvironmentResponse,
    ListEnvironmentsResponse,
    UpdateEnvironmentRequest,
    environment_view,
)
from replicas.services import environments as service

router = APIRouter(prefix="/v1/environments", tags=["Environments"], responses=ERROR_RESPONSES)


async def _view(session, env) -> dict:
    counts = await service.counts_for(session, [env.id])
    return environment_view(env, counts[env.id])


@router.get("", response_model=ListEnvironmentsResponse)
async def list_environments(session: SessionDep, principal: PrincipalDep,
                            scope: Literal["org", "user", "all"] = Query("org")):
    envs = await service.list_environments(session, principal, scope)
    counts = await service.counts_for(session, [e.id for e in envs])
    return {"environments": [environment_view(e, counts[e.id]) for e in envs]}


@router.post("", status_code=201, response_model=EnvironmentResponse)
async def create_environment(body: CreateEnvironmentRequest, session: SessionDep, principal: PrincipalDep):
    env = await service.create_environment(session, principal, body.model_dump())
    return {"environment": await _view(session, env)}


@router.get("/{id}", response_model=EnvironmentResponse)
async def get_environment(id: str, session: SessionDep, principal: PrincipalDep):
    env = await service.resolve_environment(session, principal, id)
    return {"environment": await _view(session, env)}


@router.patch("/{id}", response_model=EnvironmentResponse)
async def update_environment(id: str, body: UpdateEnvironmentRequest, session: SessionDep,
                             principal: PrincipalDep):
    env = await service.update_environment(session, principal, id, body.model_dump(exclude_unset=True))
    return {"environment": await _view(session, env)}


@router.delete("/{id}", response_model=SuccessResponse)
async def delete_environment(id: str, session: SessionDep, principal: PrincipalDep):
    await service.delete_environment(session, principal, id)
    return {"success": True}
