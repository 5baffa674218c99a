"""The push access of a workspace in an organization whose GitHub integration is a GitHub App: the workspace's
engine asks the control plane, in agent mode, for a token just before it pushes a branch to a GitHub origin and
opens its pull request (engine/publish.py), and gets an installation token limited to that one repository, with
contents and pull requests (write), that expires within the hour. Nothing long-lived is ever in the workspace.

    POST /v1/integrations/github/token  {"repository": "acme/shop"}   (agent mode)
        -> {"token": "ghs_...", "expires_at": "2026-12-04T04:40:00Z", "api_url": "https://api.github.com"}

The repository must be one of the workspace's own (its registered name, or its URL on GitHub's host or the
Enterprise server's); anything else is a 403. An organization
without a GitHub App gets a 404 (the engine then pushes without a token, as before); GitHub refusing is a 502.
A token of the environment's own (`GITHUB_TOKEN`, `GH_TOKEN`) still wins in the engine.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlparse

from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import SecretBox
from replicas.errors import BadGateway, BadRequest, Forbidden, NotFound
from replicas.services import integration_credentials
from replicas.services.integrations import repository_key
from replicas.services.providers import DEFAULT_API_URLS, ProviderError, github_app
from replicas.store.models import Workspace

log = logging.getLogger("replicas.github_push")
REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/(?!\.{1,2}$)[A-Za-z0-9._-]{1,100}$")


def owns(workspace: Workspace, repository: str, hosts: set[str]) -> bool:
    """Whether `repository` (`owner/name`) is one of the workspace's: its registered name, or its URL on one of
    `hosts` (GitHub's, or the Enterprise server's: `https://github.example.com/owner/name.git`,
    `git@github.com:owner/name`)."""
    wanted = repository.lower()
    for repo in workspace.repositories or []:
        if repository_key(str(repo.get("name") or "")) == wanted:
            return True
        if repository_key(str(repo.get("url") or "")) in {f"{host}/{wanted}" for host in hosts}:
            return True
    return False


def github_hosts(api_url: str | None) -> set[str]:
    """The hosts whose repository URLs name GitHub repositories here: github.com, and the configured API's host
    (an Enterprise server's `https://HOST/api/v3`, or a proxy's)."""
    host = (urlparse(api_url or DEFAULT_API_URLS["github"]).hostname or "").lower()
    return {"github.com"} | ({host} - {"api.github.com", ""})


async def workspace_token(session: AsyncSession, box: SecretBox, settings: Any, workspace: Workspace,
                          repository: Any) -> dict[str, str]:
    if not isinstance(repository, str) or not REPOSITORY.match(repository.strip()):
        raise BadRequest("Invalid request", "repository: the GitHub repository as owner/name")
    repository = repository.strip()
    credential = await integration_credentials.load(session, box, workspace.organization_id, "github")
    if not credential.github_app:
        raise NotFound("No GitHub App is configured", "this organization's GitHub integration has no app_id and "
                                                      "private_key; the workspace uses its own GITHUB_TOKEN")
    if not owns(workspace, repository, github_hosts(credential.api_url)):
        raise Forbidden("Not this workspace's repository",
                        f"{repository} is not a repository of workspace {workspace.id}")
    try:
        minted = await github_app.scoped_token(credential, settings, repository)
    except ProviderError as exc:
        log.warning("github app token failed workspace=%s repository=%s: %s", workspace.id, repository, exc)
        raise BadGateway("GitHub refused the installation token", str(exc)) from None
    log.info("github app token minted workspace=%s repository=%s expires=%s", workspace.id, repository,
             minted.expires_at)
    return {"token": minted.token, "expires_at": minted.expires_at,
            "api_url": (credential.api_url or DEFAULT_API_URLS["github"]).rstrip("/")}
