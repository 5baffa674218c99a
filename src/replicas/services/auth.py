"""Organizations, users and API keys. Keys are shown once and stored as SHA-256 hashes."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import API_KEY_PREFIX, hash_api_key, new_api_key
from replicas.errors import BadRequest, Forbidden, NotFound, Unauthorized
from replicas.services import audit
from replicas.services.principal import Principal
from replicas.store.models import ApiKey, Organization, User, utcnow

# Writing last_used_at on every request would turn each read into a write; a minute is precise enough.
_LAST_USED_RESOLUTION = timedelta(seconds=60)


def _as_aware(dt):
    from datetime import UTC

    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=UTC)


# Resolved keys, by hash, for CACHE_SECONDS: most requests then cost no database round trip for auth. A key
# deleted here is forgotten at once; one deleted through another process (or a user's role changed) is seen
# here within CACHE_SECONDS.
CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000
_cache: dict[str, tuple[float, Principal]] = {}


def forget_key(key_hash: str | None = None) -> None:
    """Drop a key (or every key) from this process's cache: it is re-read on its next use."""
    if key_hash is None:
        _cache.clear()
    else:
        _cache.pop(key_hash, None)


def cached_principal(authorization: str | None) -> Principal | None:
    """The Principal of an `Authorization: Bearer` header resolved in the last CACHE_SECONDS, with no database
    round trip; None when it must be looked up (`authenticate`), which also says why a bad header is refused."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(API_KEY_PREFIX):
        return None
    cached = _cache.get(hash_api_key(token))
    return cached[1] if cached is not None and cached[0] > time.monotonic() else None


async def authenticate(session: AsyncSession, authorization: str | None) -> Principal:
    """Resolve an `Authorization: Bearer sk_replicas_...` header to a Principal, or raise 401."""
    if not authorization:
        raise Unauthorized("Missing authorization token")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Missing authorization token")
    if not token.startswith(API_KEY_PREFIX):
        raise Unauthorized("Invalid token")
    key_hash = hash_api_key(token)
    cached = _cache.get(key_hash)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    if key is None:
        raise Unauthorized("Invalid token")
    now = utcnow()
    last = _as_aware(key.last_used_at)
    if last is None or now - last > _LAST_USED_RESOLUTION:
        key.last_used_at = now
        await session.commit()
    principal = await principal_for_key(session, key)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key_hash] = (time.monotonic() + CACHE_SECONDS, principal)
    return principal


async def principal_for_key(session: AsyncSession, key: ApiKey) -> Principal:
    """Who acts with `key`: its organization's bot (an org key, admin) or its user with their role."""
    if key.user_id is None:
        return Principal(key.organization_id, key.id, None, "admin", f"api_key:{key.name}")
    user = await session.get(User, key.user_id)
    if user is None:  # pragma: no cover - cascade removes keys with their user
        raise Unauthorized("Invalid token")
    return Principal(key.organization_id, key.id, user.id, user.role, user.email)


async def get_or_create_organization(session: AsyncSession, name: str) -> Organization:
    org = await session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        org = Organization(name=name)
        session.add(org)
        await session.flush()
    return org


async def create_org_key(session: AsyncSession, organization: Organization, name: str = "default",
                         key: str | None = None) -> str:
    """Mint an org API key (or register a given one) and return it in plaintext, once."""
    key = key or new_api_key()
    if not key.startswith(API_KEY_PREFIX) or len(key) < len(API_KEY_PREFIX) + 16:
        raise BadRequest("Invalid API key", f"keys start with {API_KEY_PREFIX} and carry 16+ characters")
    row = ApiKey(organization_id=organization.id, name=name, key_hash=hash_api_key(key),
                 key_prefix=key[: len(API_KEY_PREFIX) + 4])
    session.add(row)
    audit.record(session, Principal.system(organization.id), "api_key.created", "api_key", row.id,
                 after={"name": name, "key_prefix": row.key_prefix, "scope": "org"})
    await session.flush()
    return key


async def bootstrap(session: AsyncSession, key: str) -> None:
    """Create the `default` organization holding `key`, unless the key already exists."""
    if await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_api_key(key))):
        return
    org = await get_or_create_organization(session, "default")
    await create_org_key(session, org, name="bootstrap", key=key)
    await session.commit()


async def first_key(session: AsyncSession) -> str | None:
    """On a server that has no API key at all: mint one for the `default` organization and return it (in
    plaintext, once), so that the person who started it can sign in. None where any key exists."""
    if await session.scalar(select(ApiKey.id).limit(1)) is not None:
        return None
    org = await get_or_create_organization(session, "default")
    key = await create_org_key(session, org, name="first")
    await session.commit()
    return key


async def create_user(session: AsyncSession, organization: Organization, email: str,
                      display_name: str | None = None, role: str = "member") -> User:
    if role not in ("admin", "member"):
        raise BadRequest("Invalid role", "role must be admin or member")
    user = await session.scalar(
        select(User).where(User.organization_id == organization.id, User.email == email)
    )
    if user is None:
        user = User(organization_id=organization.id, email=email,
                    display_name=(display_name or email.split("@")[0])[:80], role=role)
        session.add(user)
        await session.flush()
        audit.record(session, Principal.system(organization.id), "member.created", "user", user.id,
                     after={"email": email, "role": role})
    return user


def _personal_only(principal: Principal) -> uuid.UUID:
    if principal.user_id is None:
        raise Forbidden("Personal API keys require user authentication",
                        "use a personal API key (or `replicas users create`), not an org key")
    return principal.user_id


# --- keys of a user (personal) or of the organization (user None); services/org_api_keys.py has the org's ---

def _scope(user_id: uuid.UUID | None) -> str:
    return "user" if user_id is not None else "org"


def _owned_by(principal: Principal, user_id: uuid.UUID | None) -> tuple:
    owner = ApiKey.user_id == user_id if user_id is not None else ApiKey.user_id.is_(None)
    return ApiKey.organization_id == principal.organization_id, owner


async def mint_key(session: AsyncSession, principal: Principal, user_id: uuid.UUID | None,
                   name: str) -> tuple[ApiKey, str]:
    """A new key of `user_id` (None: an org key), audited as `principal`'s act: (its row, the key, shown once)."""
    name = name.strip()
    if not name or len(name) > 255:
        raise BadRequest("Invalid request", "name: must be 1 to 255 characters")
    key = new_api_key()
    row = ApiKey(organization_id=principal.organization_id, user_id=user_id, name=name,
                 key_hash=hash_api_key(key), key_prefix=key[: len(API_KEY_PREFIX) + 4])
    session.add(row)
    await session.flush()
    audit.record(session, principal, "api_key.created", "api_key", row.id,
                 after={"name": name, "key_prefix": row.key_prefix, "scope": _scope(user_id)})
    await session.commit()
    return row, key


async def list_keys(session: AsyncSession, principal: Principal, user_id: uuid.UUID | None, page: int,
                    limit: int) -> tuple[list[ApiKey], int]:
    """One page of the keys of `user_id` (None: the org keys), newest first, and how many there are."""
    if page < 1 or not 1 <= limit <= 100:
        raise BadRequest("Invalid pagination", "page must be >= 1 and limit between 1 and 100")
    where = _owned_by(principal, user_id)
    total = await session.scalar(select(func.count()).select_from(ApiKey).where(*where))
    rows = await session.scalars(select(ApiKey).where(*where).order_by(ApiKey.created_at.desc(), ApiKey.id)
                                 .offset((page - 1) * limit).limit(limit))
    return list(rows), int(total or 0)


async def delete_key(session: AsyncSession, principal: Principal, user_id: uuid.UUID | None, key_id: uuid.UUID,
                     not_found: str) -> None:
    """Delete a key of `user_id` (None: an org key); it stops at once here, and its dashboard sessions end
    (their rows cascade). 404 `not_found` for any other key."""
    row = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, *_owned_by(principal, user_id)))
    if row is None:
        raise NotFound(not_found)
    audit.record(session, principal, "api_key.deleted", "api_key", row.id,
                 before={"name": row.name, "key_prefix": row.key_prefix, "scope": _scope(user_id)})
    await session.delete(row)
    await session.commit()
    forget_key(row.key_hash)


async def create_personal_key(session: AsyncSession, principal: Principal, name: str) -> tuple[ApiKey, str]:
    return await mint_key(session, principal, _personal_only(principal), name)


async def list_personal_keys(session: AsyncSession, principal: Principal, page: int, limit: int):
    return await list_keys(session, principal, _personal_only(principal), page, limit)


async def delete_personal_key(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> None:
    await delete_key(session, principal, _personal_only(principal), key_id,
                     "API key not found or does not belong to this user")
