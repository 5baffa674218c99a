"""The push access of a workspace the team loop started on a GitLab thread: the GitLab integration's stored token
and its instance, handed to the workspace's engine as `GITLAB_TOKEN` and `GITLAB_HOST` (what `glab` reads too).
The engine sends the token only with a push to an origin on that instance, as a header in the push's own env
(engine/publish.py), never in a repository's config, a remote URL or a log.

    env.update(await push_env(session, box, workspace))     # {} unless source gitlab with a token stored

The environment's own variables still win (a workspace may be given a token of its own).
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import SecretBox
from replicas.services import integration_credentials
from replicas.services.providers.gitlab import DEFAULT_API_URL
from replicas.store.models import Workspace

API_SUFFIX = "/api/v4"


def instance_url(api_url: str | None) -> str:
    """The instance's URL from its API's: `https://gitlab.example.com/api/v4` -> `https://gitlab.example.com`."""
    return (api_url or DEFAULT_API_URL).rstrip("/").removesuffix(API_SUFFIX)


async def push_env(session: AsyncSession, box: SecretBox, workspace: Workspace) -> dict[str, str]:
    return await push_env_for(session, box, workspace.organization_id, workspace.source)


async def push_env_for(session: AsyncSession, box: SecretBox, organization_id: uuid.UUID,
                       source: str | None) -> dict[str, str]:
    """What `push_env` gives a workspace of `source` in that organization (before its row exists)."""
    if source != "gitlab":
        return {}
    credential = await integration_credentials.load(session, box, organization_id, "gitlab")
    if not credential.token:
        return {}
    return {"GITLAB_TOKEN": credential.token, "GITLAB_HOST": instance_url(credential.api_url)}
