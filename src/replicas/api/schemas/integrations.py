"""Request and response shapes for /v1/integrations (ours: the contract has no integration endpoints)."""

from __future__ import annotations

from pydantic import BaseModel, Field, StrictInt, StrictStr

from replicas.api.schemas.common import Request, iso
from replicas.settings import Settings
from replicas.store.models import IntegrationSecret
from replicas.store.team_models import IntegrationCredential


class SetIntegrationRequest(Request):
    """The signing secret (required the first time), and the team loop's token and options
    (services/integration_credentials.py); a field left out is kept, `null` clears it."""

    secret: str | None = Field(default=None, min_length=1, max_length=512,
                               description="The provider's webhook/signing secret")
    token: str | None = Field(default=None, description="API token for answering (never shown again)")
    api_url: str | None = None
    allowed_logins: list[str] | None = None
    bot_login: str | None = None
    bot_user_id: str | None = None
    default_environment_id: str | None = None
    private_key: str | None = Field(default=None, description="A GitHub App's private key, PEM (never shown again)")
    app_id: StrictStr | StrictInt | None = Field(default=None, description="A GitHub App's id")
    installation_id: StrictStr | StrictInt | None = Field(default=None,
                                                          description="The GitHub App's installation (optional)")

    def loop_changes(self) -> dict:
        return {name: getattr(self, name) for name in self.model_fields_set if name != "secret"}


class IntegrationView(BaseModel):
    provider: str
    configured: bool = True
    webhook_url: str
    token_configured: bool = False
    private_key_configured: bool = False
    api_url: str | None = None
    allowed_logins: list[str] | None = None
    bot_login: str | None = None
    bot_user_id: str | None = None
    default_environment_id: str | None = None
    app_id: str | None = None
    installation_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class IntegrationList(BaseModel):
    integrations: list[IntegrationView]


class WebhookAccepted(BaseModel):
    accepted: bool = True
    executions: list[str]


def integration_view(row: IntegrationSecret, settings: Settings,
                     credential: IntegrationCredential | None = None) -> dict:
    """Never a secret or token: only that they are configured, where the provider must deliver, and the team
    loop's options."""
    from replicas.services.integration_credentials import view
    from replicas.services.integrations import webhook_url

    return {"provider": row.provider, "configured": True,
            "webhook_url": webhook_url(settings, row.provider, row.organization_id), **view(credential),
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}
