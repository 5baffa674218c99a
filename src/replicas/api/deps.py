"""Request dependencies: a database session, the authenticated caller, and shared services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from replicas import logs
from replicas.api.session_cookies import CSRF_HEADER, SESSION_COOKIE
from replicas.crypto import SecretBox
from replicas.services import auth, sessions
from replicas.services.principal import Principal
from replicas.settings import Settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def authenticate_caller(request: Request, session: AsyncSession, authorization: str | None) -> Principal:
    """The caller of an API request: by its `Authorization: Bearer` key, else by the dashboard's session
    cookie (which must also carry the CSRF header on writes; services/sessions.py)."""
    token = request.cookies.get(SESSION_COOKIE)
    if authorization is None and token:
        return await sessions.authenticate(session, token, request.method, request.headers.get(CSRF_HEADER))
    return await auth.authenticate(session, authorization)


async def get_principal(request: Request) -> Principal:
    """The caller; a recently seen API key costs no database round trip (services/auth.py), and a session is
    opened only for a lookup, and closed before the route runs (an SSE stream would otherwise hold its pooled
    connection while the services open their own)."""
    authorization = request.headers.get("authorization")
    principal = auth.cached_principal(authorization) if authorization is not None else None
    if principal is None:
        async with request.app.state.sessions() as session:
            principal = await authenticate_caller(request, session, authorization)
    logs.bind(organization_id=str(principal.organization_id))
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


# Async on purpose, as every dependency on a hot path: FastAPI runs a plain `def` dependency in a worker thread.
async def get_box(request: Request) -> SecretBox:
    return request.app.state.box


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


BoxDep = Annotated[SecretBox, Depends(get_box)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
