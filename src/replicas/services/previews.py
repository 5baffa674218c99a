"""Previews: public URLs for ports served inside a workspace (spec §3.7, §10 #15).

A preview maps an unguessable token to one port of one workspace. The URL is path-based, on the
control plane's own origin, so that self-hosting needs no wildcard DNS name or certificate::

    {public_url}/previews/{token}/          (public_url: REPLICAS_PUBLIC_URL, else http://{host}:{port})

The hosted service uses `https://<port>-<hash>.<preview-domain>` instead; clients only ever read the
URL from `publicUrl`, so the shape does not matter to them. Apps that build absolute links (`/assets/x`)
must honour `X-Forwarded-Prefix` or use relative links, as behind any path-prefix reverse proxy.

Creating a preview for a port that already has one returns the existing preview (same token, so a
shared URL keeps working), with `authenticated` updated to what was asked.
"""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.errors import BadRequest, NotFound
from replicas.settings import Settings
from replicas.store.models import Preview, Workspace

MIN_PORT, MAX_PORT = 1, 65535
PROXY_PREFIX = "/previews"


def validate_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not MIN_PORT <= port <= MAX_PORT:
        raise BadRequest("Invalid port", f"port must be between {MIN_PORT} and {MAX_PORT}, got {port}")
    return port


def reserved_ports(settings: Settings, workspace: Workspace) -> set[int]:
    """Ports a preview may never expose: this server's own, and the workspace engine's. With the local
    runtime a preview reaches 127.0.0.1:<port> on the host, so a public preview of the server's port
    would put its API, and of the engine's port the engine, behind an unauthenticated URL."""
    ports = {settings.port, settings.docker_engine_port}
    engine_port = (workspace.runtime_state or {}).get("engine_port")
    if isinstance(engine_port, int):
        ports.add(engine_port)
    return ports


def check_port(port: int, settings: Settings, workspace: Workspace) -> int:
    """A port the workspace may publish: valid, and not one of `reserved_ports`."""
    validate_port(port)
    if port in reserved_ports(settings, workspace):
        raise BadRequest("Invalid port", f"port {port} is reserved for the control plane or the workspace engine")
    return port


def new_token() -> str:
    """32 URL-safe characters (192 bits): the URL is the secret for a public preview."""
    return secrets.token_urlsafe(24)


def base_url(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def proxy_path(token: str) -> str:
    """The path prefix under which a preview is served, without the trailing slash."""
    return f"{PROXY_PREFIX}/{token}"


def public_url(settings: Settings, preview: Preview) -> str:
    return f"{base_url(settings)}{proxy_path(preview.token)}/"


async def get_preview(session: AsyncSession, workspace_id: uuid.UUID, port: int) -> Preview | None:
    return await session.scalar(select(Preview).where(Preview.workspace_id == workspace_id, Preview.port == port))


async def create_preview(session: AsyncSession, workspace: Workspace, port: int,
                         authenticated: bool = False, *, settings: Settings | None = None) -> tuple[Preview, bool]:
    """Register `port` of `workspace`; returns (preview, created). Idempotent per port.

    With `settings`, the server's and the engine's ports are refused (`check_port`)."""
    if settings is not None:
        check_port(port, settings, workspace)
    validate_port(port)
    existing = await get_preview(session, workspace.id, port)
    if existing is None:
        preview = Preview(organization_id=workspace.organization_id, workspace_id=workspace.id, port=port,
                          token=new_token(), authenticated=authenticated)
        session.add(preview)
        try:
            await session.commit()
            return preview, True
        except IntegrityError:  # a concurrent create of the same port won: return that one
            await session.rollback()
            existing = await get_preview(session, workspace.id, port)
            if existing is None:  # pragma: no cover - a token collision (2^-192); let it surface
                raise
    if existing.authenticated != authenticated:
        existing.authenticated = authenticated
        await session.commit()
    return existing, False


async def list_previews(session: AsyncSession, workspace_id: uuid.UUID) -> list[Preview]:
    rows = await session.scalars(select(Preview).where(Preview.workspace_id == workspace_id).order_by(Preview.port))
    return list(rows)


async def delete_preview(session: AsyncSession, workspace_id: uuid.UUID, port: int) -> None:
    validate_port(port)
    preview = await get_preview(session, workspace_id, port)
    if preview is None:
        raise NotFound("Preview not found", f"no preview for port {port}")
    await session.delete(preview)
    await session.commit()


async def find_by_token(session: AsyncSession, token: str) -> Preview | None:
    # Tokens are 32 characters; anything much longer is not one of ours and need not reach the index.
    if not token or len(token) > 64:
        return None
    return await session.scalar(select(Preview).where(Preview.token == token))

