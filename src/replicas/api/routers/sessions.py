"""Dashboard sign-in and sign-out (not part of the hosted Replica API v1; the browser's way in).

    POST   /auth/session  {api_key}  -> 200 {session}, sets the session and CSRF cookies; 401 for a bad key
    GET    /auth/session             -> 200 {session} for a live session cookie, else 401
    DELETE /auth/session             -> 200 {success: true}, ends the session (CSRF header required) and
                                        clears the cookies

Everything else the dashboard does goes through the same /v1 endpoints as any client: the session cookie is
accepted there in place of the Bearer key (api/deps.py), acting as the key that signed in.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import Field

from replicas.api.deps import SessionDep
from replicas.api.schemas.common import ERROR_RESPONSES, iso, sid
from replicas.api.schemas.common import Request as RequestBody
from replicas.api.session_cookies import (
    CSRF_HEADER,
    SESSION_COOKIE,
    clear_session_cookies,
    set_session_cookies,
)
from replicas.errors import Unauthorized
from replicas.services import auth, sessions
from replicas.services.principal import Principal
from replicas.store.models import ApiKey, DashboardSession

router = APIRouter(prefix="/auth/session", tags=["Dashboard session"], responses=ERROR_RESPONSES)


class SignInRequest(RequestBody):
    api_key: str = Field(min_length=1, max_length=512, description="An org or personal API key (sk_replicas_...)")


def _view(row: DashboardSession, principal: Principal, csrf_token: str) -> dict:
    return {"session": {"organization_id": sid(row.organization_id), "user_id": sid(principal.user_id),
                        "role": principal.role, "display": principal.display,
                        "scope": "user" if principal.user_id else "org",
                        "expires_at": iso(row.expires_at), "csrf_token": csrf_token}}


@router.post("", summary="Sign In")
async def sign_in(body: SignInRequest, request: Request, response: Response, session: SessionDep):
    token, row, principal = await sessions.sign_in(session, body.api_key)
    csrf_token = sessions.csrf_token_for(token)
    set_session_cookies(request, response, token, csrf_token, int(sessions.SESSION_TTL.total_seconds()))
    return _view(row, principal, csrf_token)


@router.get("", summary="Current Session")
async def current(request: Request, session: SessionDep):
    token = request.cookies.get(SESSION_COOKIE)
    row = await sessions.describe(session, token) if token else None
    if row is None:
        raise Unauthorized("Missing authorization token", "not signed in")
    key = await session.get(ApiKey, row.api_key_id)
    principal = await auth.principal_for_key(session, key)
    return _view(row, principal, sessions.csrf_token_for(token))


@router.delete("", summary="Sign Out")
async def sign_out(request: Request, response: Response, session: SessionDep):
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await sessions.sign_out(session, token, request.headers.get(CSRF_HEADER))
    clear_session_cookies(request, response)
    return {"success": True}
