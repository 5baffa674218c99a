"""/v1/replica/repositories and /v1/replica/repository-sets (contract tag Repository).

The contract only lists the two GETs; registering and removing repositories and sets are our
additions, since a self-hosted control plane has no GitHub integration to fill these lists.
"""

from __future__ import annotations

from fastapi import APIRouter

from replicas.api.deps import BoxDep, PrincipalDep, SessionDep, SettingsDep
from replicas.api.schemas.common import ERROR_RESPONSES, SuccessResponse
from replicas.api.schemas.repositories import (
    CreateRepositoryRequest,
    CreateRepositorySetRequest,
    ListRepositoriesResponse,
    ListRepositorySetsResponse,
    RepositoryResponse,
    RepositorySetResponse,
    repository_set_view,
    repository_view,
)
from replicas.services import repositories as service

router = APIRouter(prefix="/v1/replica", tags=["Repository"], responses=ERROR_RESPONSES)


@router.get("/repositories", response_model=ListRepositoriesResponse)
async def list_repositories(session: SessionDep, principal: PrincipalDep):
    """Returns the repositories available to your organization."""
    repos = await service.list_repositories(session, principal)
    return {"repositories": [repository_view(r) for r in repos]}


@router.post("/repositories", status_code=201, response_model=RepositoryResponse)
async def register_repository(body: CreateRepositoryRequest, session: SessionDep, principal: PrincipalDep,
                              box: BoxDep, settings: SettingsDep):
    """Registers a git repository (self-hosted extension).

    The server runs `git ls-remote` against `url` first: an unreachable URL, a non-repository or a
    missing `default_branch` answers 400 with git's reason in `details`. The optional `credential` is
    stored encrypted and used for HTTPS fetches; it is never returned. A duplicate name answers 409.
    """
    repo = await service.register_repository(
        session, principal, box, settings=settings, name=body.name, url=body.url,
        default_branch=body.default_branch, credential=body.credential,
    )
    return {"repository": repository_view(repo)}


@router.delete("/repositories/{id}", response_model=SuccessResponse)
async def delete_repository(id: str, session: SessionDep, principal: PrincipalDep):
    """Removes a repository and its set memberships (self-hosted extension).

    Answers 409, naming them, while environments are bound to the repository.
    """
    await service.delete_repository(session, principal, id)
    return {"success": True}


@router.get("/repository-sets", response_model=ListRepositorySetsResponse)
async def list_repository_sets(session: SessionDep, principal: PrincipalDep):
    """Returns the repository sets available to your organization, members in set order."""
    sets = await service.list_repository_sets(session, principal)
    return {"repository_sets": [repository_set_view(s, repos) for s, repos in sets]}


@router.post("/repository-sets", status_code=201, response_model=RepositorySetResponse)
async def create_repository_set(body: CreateRepositorySetRequest, session: SessionDep,
                                principal: PrincipalDep):
    """Creates a named set of registered repositories (self-hosted extension).

    Every id must be a repository of your organization (400 naming the unknown ones); a duplicate
    name answers 409.
    """
    repo_set, repos = await service.create_repository_set(
        session, principal, name=body.name, description=body.description,
        repository_ids=body.repository_ids,
    )
    return {"repository_set": repository_set_view(repo_set, repos)}


@router.delete("/repository-sets/{id}", response_model=SuccessResponse)
async def delete_repository_set(id: str, session: SessionDep, principal: PrincipalDep):
    """Deletes a repository set, not its repositories (self-hosted extension).

    Answers 409, naming them, while environments are bound to the set.
    """
    await service.delete_repository_set(session, principal, id)
    return {"success": True}
