"""Request dependencies: a database session, the authenticated caller, and shared services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
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


async def get_principal(
    request: Request,
    session: SessionDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    principal = await authenticate_caller(request, session, authorization)
    logs.bind(organization_id=str(principal.organization_id))
    # End the read transaction so the request's session gives its pooled connection back: otherwise it is
    # held until the response is sent (for SSE, the whole stream) while the services open their own.
    await session.commit()
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_box(request: Request) -> SecretBox:
    return request.app.state.box


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


BoxDep = Annotated[SecretBox, Depends(get_box)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
