"""Org API keys, managed by the organization's admins (the contract's "Settings -> API Keys"; our /v1/api-keys).

An org key has no user: it acts as the organization's bot with admin rights (services/principal.py), so only an
admin may mint, list or delete one: a member's personal key gets 403, an org key (itself an admin) may. The key
is shown once, at creation; the store keeps its SHA-256. Deleting a key ends its dashboard sessions (their rows
cascade with it) and drops it from this process's key cache at once.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from replicas.errors import Forbidden
from replicas.services import auth
from replicas.services.principal import Principal
from replicas.store.models import ApiKey

NOT_FOUND = "API key not found"


def _admin_only(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("Admin access required", "only organization admins manage org API keys")


async def create_org_api_key(session: AsyncSession, principal: Principal, name: str) -> tuple[ApiKey, str]:
    """Mint an org key named `name`: (its row, the key in plaintext, returned only this once)."""
    _admin_only(principal)
    return await auth.mint_key(session, principal, None, name)


async def list_org_api_keys(session: AsyncSession, principal: Principal, page: int,
                            limit: int) -> tuple[list[ApiKey], int]:
    """The organization's org keys, newest first, and how many there are."""
    _admin_only(principal)
    return await auth.list_keys(session, principal, None, page, limit)


async def delete_org_api_key(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> None:
    """Delete one org key of the caller's organization (404 for a personal key or another organization's)."""
    _admin_only(principal)
    await auth.delete_key(session, principal, None, key_id, NOT_FOUND)
