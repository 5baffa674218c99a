"""Repository and repository-set models (contract: Repository, RepositorySet) and our create requests."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from replicas.api.schemas.common import Request
from replicas.services.git import display_url
from replicas.store.models import Repository as RepositoryRow
from replicas.store.models import RepositorySet as RepositorySetRow


class Repository(BaseModel):
    id: str
    name: str
    url: str
    default_branch: str


class RepositorySet(BaseModel):
    id: str
    name: str
    description: str | None
    repositories: list[Repository]


class ListRepositoriesResponse(BaseModel):
    repositories: list[Repository]


class ListRepositorySetsResponse(BaseModel):
    repository_sets: list[RepositorySet]


class RepositoryResponse(BaseModel):
    repository: Repository


class RepositorySetResponse(BaseModel):
    repository_set: RepositorySet


class CreateRepositoryRequest(Request):
    name: str = Field(min_length=1, max_length=255, description="Display name, typically `owner/repo`.")
    url: str = Field(min_length=1, description="An absolute local path, a `file://` or an `https://` URL.")
    default_branch: str | None = Field(
        default=None, max_length=255,
        description="Branch to record; it must exist on the remote. Default: the remote's HEAD.",
    )
    credential: str | None = Field(
        default=None,
        description="A token or `user:token` for HTTPS remotes. Stored encrypted, never returned.",
    )


class CreateRepositorySetRequest(Request):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = None
    repository_ids: list[uuid.UUID] = Field(
        min_length=1, description="Member repositories, in the order workspaces check them out."
    )


def repository_view(repo: RepositoryRow) -> dict:
    return {"id": str(repo.id), "name": repo.name, "url": display_url(repo.url),
            "default_branch": repo.default_branch}


def repository_set_view(repo_set: RepositorySetRow, repositories: list[RepositoryRow]) -> dict:
    return {"id": str(repo_set.id), "name": repo_set.name, "description": repo_set.description,
            "repositories": [repository_view(r) for r in repositories]}
