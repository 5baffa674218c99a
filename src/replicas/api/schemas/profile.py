"""Profile models (contract schemas UserProfile, GetUserProfileResponse, UpdateUserProfileRequest)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from replicas.api.schemas.common import Request


class UserProfile(BaseModel):
    userId: str
    email: str
    displayName: str
    avatarUrl: str | None


class GetUserProfileResponse(BaseModel):
    profile: UserProfile


class UpdateUserProfileRequest(Request):
    """The JSON form of PUT /v1/user/profile: both fields are required; `avatarUrl: null` removes the photo."""

    displayName: str = Field(min_length=1, max_length=80)
    avatarUrl: str | None
