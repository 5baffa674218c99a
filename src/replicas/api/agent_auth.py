"""Agent mode (spec §2.2): a request from inside a workspace authenticates as that workspace with

    Authorization: Bearer <workspace engine secret>
    X-Workspace-Id: <workspace uuid>

The engine secret is per workspace (spec §10 #37), so the caller may act on its own workspace only.
Every failure is the same 401 `{"error": "Invalid token"}`: which part was wrong is not revealed.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated

from fastapi import Depends, Header, Request

from replicas.api.deps import SessionDep
from replicas.errors import Unauthorized
from replicas.store.models import Workspace

WORKSPACE_ID_HEADER = "X-Workspace-Id"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def authenticate_agent(request: Request, session, authorization: str | None,
                             workspace_id: str | None) -> Workspace:
    """The workspace whose engine secret is the bearer token, or 401."""
    token = bearer_token(authorization)
    if token is None or not workspace_id:
        raise Unauthorized("Invalid token")
    try:
        parsed = uuid.UUID(workspace_id.strip())
    except ValueError:
        raise Unauthorized("Invalid token") from None
    workspace = await session.get(Workspace, parsed)
    if workspace is None or not workspace.engine_secret_encrypted:
        raise Unauthorized("Invalid token")
    secret = request.app.state.box.decrypt(workspace.engine_secret_encrypted)
    if not hmac.compare_digest(secret.encode(), token.encode()):
        raise Unauthorized("Invalid token")
    return workspace


async def get_agent_workspace(
    request: Request,
    session: SessionDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_workspace_id: Annotated[str | None, Header(alias=WORKSPACE_ID_HEADER, include_in_schema=False)] = None,
) -> Workspace:
    return await authenticate_agent(request, session, authorization, x_workspace_id)


AgentWorkspaceDep = Annotated[Workspace, Depends(get_agent_workspace)]
