"""Credential request/response models and views (contract tag Credentials)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from replicas.api.schemas.common import Request, iso
from replicas.crypto import SecretBox
from replicas.services.credentials import mask
from replicas.store.models import ProviderCredential


class ApiKeyCredentialRequest(Request):
    api_key: str = Field(min_length=1, description="The provider API key")


class ApiKeyCredentialStatus(BaseModel):
    """Optional fields are left out (not null) when no credential is stored."""

    hasCredentials: bool
    credentialId: str | None = None
    apiKey: str | None = Field(None, description="The stored key, masked: first 4 and last 4 characters")
    lastFetchedAt: str | None = Field(None, description="When a workspace last received the key")


class ApiKeyCredentialUploadResponse(BaseModel):
    success: bool = True
    credentialId: str


class ApiKeyCredentialDeleteResponse(BaseModel):
    success: bool = True


def status_view(row: ProviderCredential | None, box: SecretBox) -> dict:
    if row is None:
        return {"hasCredentials": False}
    view = {"hasCredentials": True, "credentialId": str(row.id),
            "apiKey": mask(box.decrypt(row.secret_encrypted))}
    if row.last_fetched_at is not None:
        view["lastFetchedAt"] = iso(row.last_fetched_at)
    return view
