"""Environment request/response models (contract: Environment, Create/UpdateEnvironmentRequest)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

from replicas.api.schemas.common import Request, iso, sid
from replicas.store.models import Environment as EnvironmentRow


class Environment(BaseModel):
    id: str
    organization_id: str
    user_id: str | None
    name: str
    description: str | None
    is_global: bool
    repository_id: str | None
    repository_set_id: str | None
    system_prompt: str | None
    mobile_testing_enabled: bool
    personal_preferences: str | None
    source_environment_id: str | None
    variable_count: int = 0
    file_count: int = 0
    skill_count: int = 0
    mcp_count: int = 0
    created_at: str
    updated_at: str


class EnvironmentResponse(BaseModel):
    environment: Environment


class ListEnvironmentsResponse(BaseModel):
    environments: list[Environment]


class CreateEnvironmentRequest(Request):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = None
    scope: Literal["org", "user"] = "org"
    source_environment_id: uuid.UUID | None = None
    repository_id: uuid.UUID | None = None
    repository_set_id: uuid.UUID | None = None
    system_prompt: str | None = None
    mobile_testing_enabled: bool = False


class UpdateEnvironmentRequest(Request):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = None
    repository_id: uuid.UUID | None = None
    repository_set_id: uuid.UUID | None = None
    system_prompt: str | None = None
    mobile_testing_enabled: bool | None = None
    personal_preferences: str | None = None


def environment_view(env: EnvironmentRow, counts: dict[str, int] | None = None) -> dict:
    counts = counts or {}
    return {
        "id": str(env.id),
        "organization_id": str(env.organization_id),
        "user_id": sid(env.user_id),
        "name": env.name,
        "description": env.description,
        "is_global": env.is_global,
        "repository_id": sid(env.repository_id),
        "repository_set_id": sid(env.repository_set_id),
        "system_prompt": env.system_prompt,
        "mobile_testing_enabled": env.mobile_testing_enabled,
        "personal_preferences": env.personal_preferences,
        "source_environment_id": sid(env.source_environment_id),
        "variable_count": counts.get("variable_count", 0),
        "file_count": counts.get("file_count", 0),
        "skill_count": counts.get("skill_count", 0),
        "mcp_count": counts.get("mcp_count", 0),
        "created_at": iso(env.created_at),
        "updated_at": iso(env.updated_at),
    }
