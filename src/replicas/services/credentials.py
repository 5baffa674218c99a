"""Agent provider credentials (OpenCode Go): one key for the organization, one per user (spec §3.10, §7.7).

Keys are stored encrypted and never leave in full: status answers show a masked key. When a workspace
starts, `agent_credentials` turns the stored keys into the environment variables the agents read; the
user's own key wins over the organization's.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import SecretBox
from replicas.errors import BadRequest, Forbidden
from replicas.services import audit
from replicas.services.principal import Principal
from replicas.store.models import ProviderCredential, utcnow

OPENCODE_GO = "opencode-go"
# The environment variable each provider's key is handed to the agents in.
PROVIDER_ENV = {OPENCODE_GO: "OPENCODE_API_KEY"}
ORG, USER = "organization", "user"


def mask(key: str) -> str:
    """First 4 and last 4 characters; short keys are hidden entirely, since 8 characters would be all of it."""
    return f"{key[:4]}...{key[-4:]}" if len(key) > 12 else "****"


def snapshot(row: ProviderCredential) -> dict:
    """The audited view. The key never enters it, not even masked: audit rows are not encrypted."""
    return {
        "provider": row.provider,
        "scope": USER if row.user_id else ORG,
        "user_id": str(row.user_id) if row.user_id else None,
    }


def _owner(principal: Principal, scope: str) -> uuid.UUID | None:
    """The `user_id` a scope's row carries, after checking the caller may act on that scope."""
    if scope == ORG:
        return None
    if principal.user_id is None:
        raise BadRequest("Personal API key required",
                         "user credentials belong to a user; call this endpoint with a personal API key, "
                         "or use /v1/opencode-go/credentials for the organization's key")
    return principal.user_id


def _require_admin(principal: Principal, scope: str) -> None:
    if scope == ORG and not principal.is_admin:
        raise Forbidden("Admin access required",
                        "only organization admins can change the organization's credentials")


def _row_id(organization_id: uuid.UUID, user_id: uuid.UUID | None, provider: str) -> uuid.UUID:
    """The organization's row gets an id derived from (organization, provider): NULL user ids never
    collide in the unique index, so the primary key is what stops two concurrent first uploads from
    leaving two org keys. User rows are kept single by the unique index itself."""
    if user_id is None:
        return uuid.uuid5(organization_id, provider)
    return uuid.uuid4()


async def get_credential(session: AsyncSession, principal: Principal, scope: str,
                         provider: str = OPENCODE_GO) -> ProviderCredential | None:
    """The scope's stored credential, or None. Any member may see the organization's status."""
    user_id = _owner(principal, scope)
    query = select(ProviderCredential).where(ProviderCredential.organization_id == principal.organization_id,
                                             ProviderCredential.provider == provider)
    query = query.where(ProviderCredential.user_id.is_(None) if user_id is None
                        else ProviderCredential.user_id == user_id)
    return await session.scalar(query)


async def set_credential(session: AsyncSession, principal: Principal, box: SecretBox, scope: str,
                         api_key: str, provider: str = OPENCODE_GO) -> ProviderCredential:
    """Store the key (replacing any the scope had; the credential keeps its id) and audit it."""
    _require_admin(principal, scope)
    api_key = api_key.strip()
    if not api_key:
        raise BadRequest("Invalid request", "api_key: must not be empty or only whitespace")
    for attempt in (1, 2):
        row = await get_credential(session, principal, scope, provider)
        if row is None:
            user_id = _owner(principal, scope)
            row = ProviderCredential(id=_row_id(principal.organization_id, user_id, provider),
                                     organization_id=principal.organization_id, user_id=user_id,
                                     provider=provider, secret_encrypted=box.encrypt(api_key))
            session.add(row)
            audit.record(session, principal, "provider_credential.created", "provider_credential", row.id,
                         after=snapshot(row))
        else:
            row.secret_encrypted = box.encrypt(api_key)
            row.updated_at = utcnow()
            # The new key has not been handed to any workspace yet.
            row.last_fetched_at = None
            audit.record(session, principal, "provider_credential.updated", "provider_credential", row.id,
                         before=snapshot(row), after={**snapshot(row), "api_key_changed": True})
        try:
            await session.commit()
            return row
        except IntegrityError:
            # A concurrent first upload won the insert: replace its key instead.
            await session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def delete_credential(session: AsyncSession, principal: Principal, scope: str,
                            provider: str = OPENCODE_GO) -> None:
    """Remove the scope's key. Deleting when none is stored succeeds and changes (and audits) nothing."""
    _require_admin(principal, scope)
    row = await get_credential(session, principal, scope, provider)
    if row is None:
        return
    audit.record(session, principal, "provider_credential.deleted", "provider_credential", row.id,
                 before=snapshot(row))
    await session.delete(row)
    await session.commit()


async def agent_credentials(session: AsyncSession, box: SecretBox, organization_id: uuid.UUID,
                            user_id: uuid.UUID | None) -> dict[str, str]:
    """The environment variables agents need from stored credentials, e.g. `{"OPENCODE_API_KEY": ...}`.

    For each provider the user's own key wins over the organization's (`user_id` None: only the
    organization's). Variables defined on the workspace's environments still win over these: the
    caller merges these *underneath* the environment's variables.

    Each credential handed out gets `last_fetched_at` stamped in the caller's transaction; it is
    stored when the caller commits.
    """
    query = select(ProviderCredential).where(ProviderCredential.organization_id == organization_id,
                                             ProviderCredential.provider.in_(PROVIDER_ENV))
    query = query.where(ProviderCredential.user_id.is_(None) if user_id is None
                        else (ProviderCredential.user_id.is_(None)) | (ProviderCredential.user_id == user_id))
    chosen: dict[str, ProviderCredential] = {}
    for row in await session.scalars(query):
        current = chosen.get(row.provider)
        if current is None or (current.user_id is None and row.user_id is not None):
            chosen[row.provider] = row
    env = {}
    now = utcnow()
    for provider, row in chosen.items():
        env[PROVIDER_ENV[provider]] = box.decrypt(row.secret_encrypted)
        row.last_fetched_at = now
    return env
