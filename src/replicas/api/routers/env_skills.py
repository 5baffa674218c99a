"""Skills (contract tag Environments): the catalog search, skills enabled on an environment, skill
registries, and the skills committed to the environment's bound repositories."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from replicas.api.deps import BoxDep, PrincipalDep, SessionDep, SettingsDep
from replicas.api.schemas.common import ERROR_RESPONSES, SuccessResponse
from replicas.api.schemas.skills import (
    CreateEnvironmentSkillRequest,
    CreateEnvironmentSkillsRegistryRequest,
    CreateEnvironmentSkillsRegistryResponse,
    EnvironmentSkillResponse,
    ListEnvironmentSkillsRegistriesResponse,
    ListEnvironmentSkillsResponse,
    ListRepoSkillsResponse,
    SearchEnvironmentSkillsResponse,
    registry_view,
    registry_with_contents_view,
    repo_skill_view,
    search_view,
    skill_view,
)
from replicas.services import env_skills as service
from replicas.services import skills_catalog

router = APIRouter(tags=["Environments"], responses=ERROR_RESPONSES)

ENV = "/v1/environments/{environmentId}"
EnvRef = Annotated[str, Path(alias="environmentId", description="Environment UUID, or `global`")]
RegistryId = Annotated[str, Path(alias="skillsRegistryId", description="Skills registry UUID")]


@router.get("/v1/environment-skills/search", response_model=SearchEnvironmentSkillsResponse)
async def search_skills(principal: PrincipalDep, settings: SettingsDep, q: str = Query("")):
    skills = await skills_catalog.search(q, settings.skills_registry_url)
    return {"skills": [search_view(s) for s in skills]}


@router.get(ENV + "/skills", response_model=ListEnvironmentSkillsResponse)
async def list_skills(env_ref: EnvRef, session: SessionDep, principal: PrincipalDep):
    rows = await service.list_skills(session, principal, env_ref)
    return {"environment_skills": [skill_view(r) for r in rows]}


@router.post(ENV + "/skills", status_code=201, response_model=EnvironmentSkillResponse)
async def enable_skill(env_ref: EnvRef, body: CreateEnvironmentSkillRequest, session: SessionDep,
                       principal: PrincipalDep):
    row = await service.enable_skill(session, principal, env_ref, body.model_dump())
    return {"environment_skill": skill_view(row)}


@router.delete(ENV + "/skills/{id}", response_model=SuccessResponse)
async def disable_skill(env_ref: EnvRef, id: str, session: SessionDep, principal: PrincipalDep):
    await service.disable_skill(session, principal, env_ref, id)
    return {"success": True}


@router.get(ENV + "/skills-registries", response_model=ListEnvironmentSkillsRegistriesResponse)
async def list_registries(env_ref: EnvRef, session: SessionDep, principal: PrincipalDep,
                          settings: SettingsDep):
    found = await service.list_registries(session, principal, env_ref, settings.data_dir)
    return {"registries": [registry_with_contents_view(row, skills, error) for row, (skills, error) in found]}


@router.post(ENV + "/skills-registries", response_model=CreateEnvironmentSkillsRegistryResponse)
async def add_registry(env_ref: EnvRef, body: CreateEnvironmentSkillsRegistryRequest, session: SessionDep,
                       principal: PrincipalDep, settings: SettingsDep):
    row, (skills, error) = await service.add_registry(session, principal, env_ref, body.url,
                                                      settings.data_dir, settings.git_timeout_seconds,
                                                      allow_local=settings.allow_local_repositories)
    return {"registry": registry_view(row), "repo_skills": [repo_skill_view(s) for s in skills],
            "error": error}


@router.delete(ENV + "/skills-registries/{skillsRegistryId}", response_model=SuccessResponse)
async def remove_registry(env_ref: EnvRef, skills_registry_id: RegistryId, session: SessionDep,
                          principal: PrincipalDep, settings: SettingsDep):
    await service.remove_registry(session, principal, env_ref, skills_registry_id, settings.data_dir)
    return {"success": True}


@router.get(ENV + "/repo-skills", response_model=ListRepoSkillsResponse)
async def list_repo_skills(env_ref: EnvRef, session: SessionDep, principal: PrincipalDep,
                           settings: SettingsDep, box: BoxDep):
    skills, error = await service.list_repo_skills(session, principal, env_ref, settings.data_dir, box)
    return {"repo_skills": [repo_skill_view(s) for s in skills], "error": error}
