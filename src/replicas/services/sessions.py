"""Dashboard sessions: a browser exchanges an API key for a session once, then sends a cookie.

A session acts exactly as the key that signed in (same organization, user and role; `auth.principal_for_key`),
expires after `SESSION_TTL`, and ends at sign-out or when its key is deleted (the row cascades). The store
keeps only the SHA-256 of the session token, like API keys, so a leaked database holds no usable cookie.

Cross-site request forgery: the session cookie is `SameSite=Strict`, and on top of that every request that
authenticates by cookie with a method other than GET/HEAD/OPTIONS must carry the session's CSRF token in a
header. The token is derived from the session token (HMAC-SHA256), so nothing more is stored; the page
learns it from the sign-in answer or from a readable cookie that another site can neither read nor set.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.errors import Forbidden, Unauthorized
from replicas.services import audit, auth
from replicas.services.principal import Principal
from replicas.store.models import ApiKey, DashboardSession, aware, utcnow

SESSION_TTL = timedelta(hours=12)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token_for(token: str) -> str:
    """The CSRF token that goes with session `token` (a page sends it back in a header on writes)."""
    return hmac.new(token.encode(), b"replicas-dashboard-csrf", hashlib.sha256).hexdigest()


async def sign_in(session: AsyncSession, api_key: str) -> tuple[str, DashboardSession, Principal]:
    """Exchange `api_key` for a new session: (the session token, its row, who it acts as). 401 for a bad key.
    Expired sessions are swept here, so the table holds only live ones plus at most a day of leftovers."""
    principal = await auth.authenticate(session, f"Bearer {api_key.strip()}")
    now = utcnow()
    await session.execute(delete(DashboardSession).where(DashboardSession.expires_at < now))
    token = secrets.token_urlsafe(32)
    row = DashboardSession(organization_id=principal.organization_id, api_key_id=principal.api_key_id,
                           token_hash=_hash(token), created_at=now, expires_at=now + SESSION_TTL)
    session.add(row)
    await session.flush()
    audit.record(session, principal, "dashboard.signed_in", "dashboard_session", row.id,
                 after={"expires_at": row.expires_at.isoformat()})
    await session.commit()
    return token, row, principal


async def _live_session(session: AsyncSession, token: str) -> DashboardSession | None:
    row = await session.scalar(select(DashboardSession).where(DashboardSession.token_hash == _hash(token)))
    if row is None:
        return None
    if aware(row.expires_at) <= utcnow():
        await session.delete(row)
        await session.commit()
        return None
    return row


async def authenticate(session: AsyncSession, token: str, method: str, csrf_token: str | None) -> Principal:
    """Who a request with session cookie `token` acts as: 401 if the session is unknown or expired, 403 if a
    write does not carry the session's CSRF token."""
    row = await _live_session(session, token)
    if row is None:
        raise Unauthorized("Invalid token", "the dashboard session has ended; sign in again")
    if method.upper() not in SAFE_METHODS and not hmac.compare_digest(csrf_token or "", csrf_token_for(token)):
        raise Forbidden("Invalid CSRF token", "writes with a session cookie must send its X-CSRF-Token header")
    key = await session.get(ApiKey, row.api_key_id)
    if key is None:  # pragma: no cover - the row cascades with its key
        raise Unauthorized("Invalid token")
    return await auth.principal_for_key(session, key)


async def describe(session: AsyncSession, token: str) -> DashboardSession | None:
    """The live session of `token`, or None."""
    return await _live_session(session, token)


async def sign_out(session: AsyncSession, token: str, csrf_token: str | None) -> None:
    """End the session of `token` (a no-op when it has already ended). A write: the CSRF token is checked."""
    row = await _live_session(session, token)
    if row is None:
        return
    principal = await authenticate(session, token, "DELETE", csrf_token)
    audit.record(session, principal, "dashboard.signed_out", "dashboard_session", row.id)
    await session.delete(row)
    await session.commit()
