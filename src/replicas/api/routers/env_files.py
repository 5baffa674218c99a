"""/v1/environments/{environmentId}/files: list, create, update, delete (contract tag Environments)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from replicas.api.deps import BoxDep, PrincipalDep, SessionDep
from replicas.api.schemas.common import ERROR_RESPONSES, SuccessResponse
from replicas.api.schemas.env_resources import (
    CreateEnvironmentFileRequest,
    EnvironmentFileResponse,
    ListEnvironmentFilesResponse,
    UpdateEnvironmentFileRequest,
    file_view,
)
from replicas.services import env_files as service

router = APIRouter(prefix="/v1/environments/{environmentId}/files", tags=["Environments"],
                   responses=ERROR_RESPONSES)

EnvRef = Annotated[str, Path(alias="environmentId", description="Environment UUID, or `global`")]


@router.get("", response_model=ListEnvironmentFilesResponse)
async def list_files(env_ref: EnvRef, session: SessionDep, principal: PrincipalDep, box: BoxDep):
    rows = await service.list_files(session, principal, env_ref)
    return {"environment_files": [file_view(row, box) for row in rows]}


@router.post("", status_code=201, response_model=EnvironmentFileResponse)
async def create_file(env_ref: EnvRef, body: CreateEnvironmentFileRequest, session: SessionDep,
                      principal: PrincipalDep, box: BoxDep):
    row = await service.create_file(session, principal, box, env_ref, body.model_dump())
    return {"environment_file": file_view(row, box)}


@router.patch("/{id}", response_model=EnvironmentFileResponse)
async def update_file(env_ref: EnvRef, id: str, body: UpdateEnvironmentFileRequest, session: SessionDep,
                      principal: PrincipalDep, box: BoxDep):
    row = await service.update_file(session, principal, box, env_ref, id, body.model_dump(exclude_unset=True))
    return {"environment_file": file_view(row, box)}


@router.delete("/{id}", response_model=SuccessResponse)
async def delete_file(env_ref: EnvRef, id: str, session: SessionDep, principal: PrincipalDep, box: BoxDep):
    await service.delete_file(session, principal, box, env_ref, id)
    return {"success": True}
