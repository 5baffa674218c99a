"""Request and response shapes for /v1/integrations (ours: the contract has no integration endpoints)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from replicas.api.schemas.common import Request, iso
from replicas.settings import Settings
from replicas.store.models import IntegrationSecret


class SetIntegrationRequest(Request):
    secret: str = Field(min_length=1, max_length=512, description="The provider's webhook/signing secret")


class IntegrationView(BaseModel):
    provider: str
    configured: bool = True
    webhook_url: str
    created_at: str | None = None
    updated_at: str | None = None


class IntegrationList(BaseModel):
    integrations: list[IntegrationView]


class WebhookAccepted(BaseModel):
    accepted: bool = True
    executions: list[str]


def integration_view(row: IntegrationSecret, settings: Settings) -> dict:
    """Never the secret: only that it is configured, and where the provider must deliver."""
    from replicas.services.integrations import webhook_url

    return {"provider": row.provider, "configured": True,
            "webhook_url": webhook_url(settings, row.provider, row.organization_id),
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}
