"""Environment variables: encrypted values, unique keys per environment, and the personal-override policy.

A team or Global variable's `personal_override_allowed` decides whether a personal environment backed
by that team environment (`source_environment_id`) may define the same key itself. Only admins (org
API keys, or personal keys of admin users) may set or change that policy.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import SecretBox
from replicas.errors import BadRequest, Conflict, Forbidden, NotFound
from replicas.services import audit, pool_generations
from replicas.services.environments import parse_uuid, resolve_environment
from replicas.services.principal import Principal
from replicas.store.models import Environment, EnvironmentVariable, utcnow

KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_KEY_LENGTH = 255
DUPLICATE_KEY = "An environment variable with this key already exists"
ADMIN_REQUIRED = "Admin access required to change personal override policy"


def snapshot(row: EnvironmentVariable) -> dict:
    """The audited view. The value never enters it: audit rows are not encrypted."""
    return {
        "environment_id": str(row.environment_id),
        "key": row.key,
        "value": audit.REDACTED,
        "personal_override_allowed": row.personal_override_allowed,
    }


def _check_key(key: str) -> None:
    if not KEY_PATTERN.match(key) or len(key) > MAX_KEY_LENGTH:
        raise BadRequest("Invalid request",
                         f"key: {key!r} is not a valid environment variable name "
                         f"(must match ^[A-Za-z_][A-Za-z0-9_]*$, at most {MAX_KEY_LENGTH} characters)")


def _check_policy_change(principal: Principal, env: Environment, current: bool, wanted: bool | None) -> None:
    """Only admins change the override policy; sending the value it already has changes nothing."""
    if wanted is None or wanted == current:
        return
    if wanted and env.user_id is not None:
        raise BadRequest("Invalid request", "personal_override_allowed: only team and Global variables "
                                            "can allow personal overrides")
    if not principal.is_admin:
        raise Forbidden(ADMIN_REQUIRED,
                        "personal_override_allowed can only be changed by an organization admin")


async def _check_inherited_override(session: AsyncSession, principal: Principal, env: Environment,
                                    key: str) -> None:
    """A source-backed personal environment may shadow a source key only where the source allows it."""
    if env.source_environment_id is None:
        return
    inherited = await session.scalar(
        select(EnvironmentVariable).where(
            EnvironmentVariable.organization_id == principal.organization_id,
            EnvironmentVariable.environment_id == env.source_environment_id,
            EnvironmentVariable.key == key,
        )
    )
    if inherited is not None and not inherited.personal_override_allowed:
        raise Forbidden("Personal override not allowed",
                        f"key: {key} is inherited from the source environment, whose variable does not "
                        "allow personal overrides (personal_override_allowed is false)")


async def _check_key_free(session: AsyncSession, env: Environment, key: str,
                          except_id: uuid.UUID | None = None) -> None:
    query = select(EnvironmentVariable.id).where(EnvironmentVariable.environment_id == env.id,
                                                 EnvironmentVariable.key == key)
    if except_id is not None:
        query = query.where(EnvironmentVariable.id != except_id)
    if await session.scalar(query) is not None:
        raise Conflict(DUPLICATE_KEY, f"key: {key}")


async def _commit(session: AsyncSession, key: str) -> None:
    """Commit; a concurrent insert of the same key loses on the unique index and changes nothing."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(DUPLICATE_KEY, f"key: {key}") from None


async def list_variables(session: AsyncSession, principal: Principal,
                         env_ref: str) -> list[EnvironmentVariable]:
    env = await resolve_environment(session, principal, env_ref)
    rows = await session.scalars(
        select(EnvironmentVariable)
        .where(EnvironmentVariable.organization_id == principal.organization_id,
               EnvironmentVariable.environment_id == env.id)
        .order_by(EnvironmentVariable.created_at, EnvironmentVariable.key)
    )
    return list(rows)


async def get_variable(session: AsyncSession, principal: Principal, env: Environment,
                       variable_id: str) -> EnvironmentVariable:
    """The variable `variable_id` of `env`; 404 for ids of other environments or organizations."""
    row = await session.scalar(
        select(EnvironmentVariable).where(
            EnvironmentVariable.id == parse_uuid(variable_id, "Environment variable"),
            EnvironmentVariable.organization_id == principal.organization_id,
            EnvironmentVariable.environment_id == env.id,
        )
    )
    if row is None:
        raise NotFound("Environment variable not found")
    return row


async def create_variable(session: AsyncSession, principal: Principal, box: SecretBox, env_ref: str,
                          data: dict) -> EnvironmentVariable:
    env = await resolve_environment(session, principal, env_ref)
    key = data["key"]
    _check_key(key)
    _check_policy_change(principal, env, False, data.get("personal_override_allowed"))
    await _check_inherited_override(session, principal, env, key)
    await _check_key_free(session, env, key)
    # The id is set here, not at flush, so that a lost race surfaces at commit, where it becomes a 409.
    row = EnvironmentVariable(
        id=uuid.uuid4(),
        organization_id=principal.organization_id,
        environment_id=env.id,
        key=key,
        value_encrypted=box.encrypt(data["value"]),
        personal_override_allowed=bool(data.get("personal_override_allowed")),
    )
    session.add(row)
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_variable.created", "environment_variable", row.id,
                 after=snapshot(row))
    await _commit(session, key)
    return row


async def update_variable(session: AsyncSession, principal: Principal, box: SecretBox, env_ref: str,
                          variable_id: str, data: dict) -> EnvironmentVariable:
    """Apply a PATCH; `data` holds only the fields the client sent."""
    env = await resolve_environment(session, principal, env_ref)
    row = await get_variable(session, principal, env, variable_id)
    for field in ("key", "value"):
        if field in data and data[field] is None:
            raise BadRequest("Invalid request", f"{field}: must be a string, not null")
    key = data.get("key", row.key)
    _check_key(key)
    _check_policy_change(principal, env, row.personal_override_allowed, data.get("personal_override_allowed"))
    await _check_inherited_override(session, principal, env, key)
    if key != row.key:
        await _check_key_free(session, env, key, except_id=row.id)
    before = snapshot(row)
    row.key = key
    if "value" in data:
        row.value_encrypted = box.encrypt(data["value"])
    if data.get("personal_override_allowed") is not None:
        row.personal_override_allowed = data["personal_override_allowed"]
    row.updated_at = utcnow()
    after = snapshot(row)
    after["value_changed"] = "value" in data
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_variable.updated", "environment_variable", row.id,
                 before=before, after=after)
    await _commit(session, key)
    return row


async def delete_variable(session: AsyncSession, principal: Principal, env_ref: str,
                          variable_id: str) -> None:
    env = await resolve_environment(session, principal, env_ref)
    row = await get_variable(session, principal, env, variable_id)
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_variable.deleted", "environment_variable", row.id,
                 before=snapshot(row))
    await session.delete(row)
    await session.commit()
