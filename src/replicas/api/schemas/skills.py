"""Skills request/response models and views (contract: EnvironmentSkill, SearchSkill, RepoSkill,
EnvironmentSkillsRegistry and their list/create responses)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from pydantic import BaseModel, Field

from replicas.api.schemas.common import Request, iso
from replicas.services.skill_discovery import RepoSkill as DiscoveredSkill
from replicas.services.skills_catalog import CatalogSkill
from replicas.store.models import EnvironmentSkill as SkillRow
from replicas.store.models import EnvironmentSkillsRegistry as RegistryRow


class EnvironmentSkill(BaseModel):
    id: str
    organization_id: str
    environment_id: str
    name: str
    slug: str
    source: str
    created_at: str
    updated_at: str


class EnvironmentSkillResponse(BaseModel):
    environment_skill: EnvironmentSkill


class ListEnvironmentSkillsResponse(BaseModel):
    environment_skills: list[EnvironmentSkill]


class CreateEnvironmentSkillRequest(Request):
    name: str = Field(max_length=255)
    slug: str = Field(max_length=255)
    source: str = Field(max_length=1024)


class SearchSkill(BaseModel):
    name: str
    slug: str
    source: str
    installs: int


class SearchEnvironmentSkillsResponse(BaseModel):
    skills: list[SearchSkill]


class RepoSkill(BaseModel):
    id: str
    repository_id: str
    repository_full_name: str
    branch: str
    path: str
    name: str
    description: str | None
    framework: Literal["claude", "codex", "cursor", "agents"]
    kind: Literal["skill", "agent", "command", "prompt", "plugin"]
    html_url: str


class ListRepoSkillsResponse(BaseModel):
    repo_skills: list[RepoSkill]
    error: str | None


class EnvironmentSkillsRegistry(BaseModel):
    id: str
    organization_id: str
    environment_id: str
    name: str
    url: str
    repository_full_name: str
    default_branch: str
    created_at: str
    updated_at: str


class EnvironmentSkillsRegistryWithContents(EnvironmentSkillsRegistry):
    repo_skills: list[RepoSkill]
    error: str | None


class ListEnvironmentSkillsRegistriesResponse(BaseModel):
    registries: list[EnvironmentSkillsRegistryWithContents]


class CreateEnvironmentSkillsRegistryRequest(Request):
    url: str = Field(max_length=1024, description="Git repository URL (e.g. https://github.com/org/skills-repo).")


class CreateEnvironmentSkillsRegistryResponse(BaseModel):
    registry: EnvironmentSkillsRegistry
    repo_skills: list[RepoSkill]
    error: str | None


def skill_view(row: SkillRow) -> dict:
    return {
        "id": str(row.id),
        "organization_id": str(row.organization_id),
        "environment_id": str(row.environment_id),
        "name": row.name,
        "slug": row.slug,
        "source": row.source,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def search_view(skill: CatalogSkill) -> dict:
    return {"name": skill.name, "slug": skill.slug, "source": skill.source, "installs": skill.installs}


def repo_skill_view(skill: DiscoveredSkill) -> dict:
    return asdict(skill)


def registry_view(row: RegistryRow) -> dict:
    return {
        "id": str(row.id),
        "organization_id": str(row.organization_id),
        "environment_id": str(row.environment_id),
        "name": row.name,
        "url": row.url,
        "repository_full_name": row.repository_full_name,
        "default_branch": row.default_branch,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def registry_with_contents_view(row: RegistryRow, skills: list[DiscoveredSkill], error: str | None) -> dict:
    return {**registry_view(row), "repo_skills": [repo_skill_view(s) for s in skills], "error": error}
