"""Org API keys, managed by the organization's admins (the contract's "Settings -> API Keys"; our /v1/api-keys).

An org key has no user: it acts as the organization's bot with admin rights (services/principal.py), so only an
admin may mint, list or delete one: a member's personal key gets 403, an org key (itself an admin) may. The key
is shown once, at creation; the store keeps its SHA-256. Deleting a key ends its dashboard sessions (their rows
cascade with it) and drops it from this process's key cache at once.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import API_KEY_PREFIX, hash_api_key, new_api_key
from replicas.errors import BadRequest, Forbidden, NotFound
from replicas.services import audit, auth
from replicas.services.principal import Principal
from replicas.store.models import ApiKey

NOT_FOUND = "API key not found"


def _admin_only(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("Admin access required", "only organization admins manage org API keys")


async def create_org_api_key(session: AsyncSession, principal: Principal, name: str) -> tuple[ApiKey, str]:
    """Mint an org key named `name`: (its row, the key in plaintext, returned only this once)."""
    _admin_only(principal)
    name = name.strip()
    if not name or len(name) > 255:
        raise BadRequest("Invalid request", "name: must be 1 to 255 characters")
    key = new_api_key()
    row = ApiKey(organization_id=principal.organization_id, user_id=None, name=name,
                 key_hash=hash_api_key(key), key_prefix=key[: len(API_KEY_PREFIX) + 4])
    session.add(row)
    await session.flush()
    audit.record(session, principal, "api_key.created", "api_key", row.id,
                 after={"name": name, "key_prefix": row.key_prefix, "scope": "org"})
    await session.commit()
    return row, key


async def list_org_api_keys(session: AsyncSession, principal: Principal, page: int,
                            limit: int) -> tuple[list[ApiKey], int]:
    """The organization's org keys, newest first, and how many there are."""
    _admin_only(principal)
    where = (ApiKey.organization_id == principal.organization_id, ApiKey.user_id.is_(None))
    total = await session.scalar(select(func.count()).select_from(ApiKey).where(*where))
    rows = await session.scalars(select(ApiKey).where(*where).order_by(ApiKey.created_at.desc(), ApiKey.id)
                                 .offset((page - 1) * limit).limit(limit))
    return list(rows), int(total or 0)


async def delete_org_api_key(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> None:
    """Delete one org key of the caller's organization (404 for a personal key or another organization's)."""
    _admin_only(principal)
    row = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id.is_(None),
                                                    ApiKey.organization_id == principal.organization_id))
    if row is None:
        raise NotFound(NOT_FOUND)
    audit.record(session, principal, "api_key.deleted", "api_key", row.id,
                 before={"name": row.name, "key_prefix": row.key_prefix, "scope": "org"})
    await session.delete(row)
    await session.commit()
    auth.forget_key(row.key_hash)
