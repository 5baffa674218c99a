"""One small outbound client per provider (GitHub REST, GitLab REST, Slack Web API, Linear GraphQL), on one
base (`base.ProviderClient`: configurable API URL, the token's header, the outbound policy, retries).

    async with client_for("github", token, api_url, settings) as github:
        await github.comment("acme/shop", 12, "...")
"""

from __future__ import annotations

from typing import Any

from replicas.services.providers import github, github_app, gitlab, linear, slack
from replicas.services.providers.base import ProviderClient, ProviderError
from replicas.services.providers.github import GitHubClient
from replicas.services.providers.gitlab import GitLabClient
from replicas.services.providers.linear import LinearClient
from replicas.services.providers.slack import SlackClient
from replicas.settings import Settings

CLIENTS: dict[str, type[ProviderClient]] = {"github": GitHubClient, "gitlab": GitLabClient, "slack": SlackClient,
                                            "linear": LinearClient}
DEFAULT_API_URLS = {"github": github.DEFAULT_API_URL, "gitlab": gitlab.DEFAULT_API_URL,
                    "slack": slack.DEFAULT_API_URL, "linear": linear.DEFAULT_API_URL}


def client_for(provider: str, token: str | None, api_url: str | None, settings: Settings) -> ProviderClient:
    """The provider's client at `api_url` (else the provider's public API), with the server's timeouts."""
    return CLIENTS[provider](api_url or DEFAULT_API_URLS[provider], token, timeout=settings.provider_timeout_seconds,
                             retry_delays=settings.provider_retry_delays)


def client_of(credential: Any, settings: Settings, repository: str | None = None) -> ProviderClient:
    """The client an organization's stored credential (integration_credentials.LoopCredential) answers with:
    its token, or for a GitHub App the installation token that covers `repository` (github_app.py), minted
    when first needed and again before it expires."""
    if credential.provider == "github" and credential.app_id and credential.private_key:
        async def installation_token(refused: str | None) -> str:
            return await github_app.installation_token(credential, settings, repository, refused=refused)

        return client_for("github", installation_token, credential.api_url, settings)
    return client_for(credential.provider, credential.token, credential.api_url, settings)


__all__ = ["CLIENTS", "DEFAULT_API_URLS", "GitHubClient", "GitLabClient", "LinearClient", "ProviderClient",
           "ProviderError", "SlackClient", "client_for", "client_of"]
