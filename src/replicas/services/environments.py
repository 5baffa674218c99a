"""Environments: the Global singleton, team and personal environments, binding rules and counts.

Every nested resource (variables, files, skills, MCPs, hooks, pools) finds its environment through
`resolve_environment`, which accepts a UUID or the literal `global` and answers 404 for anything the
caller may not see (another organization's, or another user's personal environment).
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.errors import BadRequest, Conflict, Forbidden, NotFound
from replicas.services import audit, pool_generations
from replicas.services.principal import Principal
from replicas.store.models import (
    Automation,
    Environment,
    EnvironmentFile,
    EnvironmentMcp,
    EnvironmentSkill,
    EnvironmentSkillsRegistry,
    EnvironmentVariable,
    Repository,
    RepositorySet,
    utcnow,
)

GLOBAL = "global"
GLOBAL_NAME = "Global"
DUPLICATE_NAME = "An environment with this name already exists"
NESTED_HINT = (
    "The Global environment's metadata cannot be edited; edit its nested resources instead: "
    "/v1/environments/global/variables, /files, /skills, /mcps, /warm-hooks, /start-hooks, /warm-pools"
)

_COUNTED = {
    "variable_count": EnvironmentVariable,
    "file_count": EnvironmentFile,
    "skill_count": EnvironmentSkill,
    "mcp_count": EnvironmentMcp,
}


def snapshot(env: Environment) -> dict:
    """The audited view of an environment's own fields."""
    return {
        "name": env.name,
        "description": env.description,
        "scope": "user" if env.user_id else "org",
        "repository_id": str(env.repository_id) if env.repository_id else None,
        "repository_set_id": str(env.repository_set_id) if env.repository_set_id else None,
        "system_prompt": env.system_prompt,
        "mobile_testing_enabled": env.mobile_testing_enabled,
        "personal_preferences": env.personal_preferences,
        "source_environment_id": str(env.source_environment_id) if env.source_environment_id else None,
    }


def _visible(principal: Principal):
    """Team environments, plus the caller's own personal ones."""
    if principal.user_id is None:
        return Environment.user_id.is_(None)
    return or_(Environment.user_id.is_(None), Environment.user_id == principal.user_id)


async def ensure_global(session: AsyncSession, principal: Principal) -> Environment:
    """Return the org's Global environment, creating it on first access (race-safe on the unique index)."""
    query = select(Environment).where(
        Environment.organization_id == principal.organization_id, Environment.is_global.is_(True)
    )
    env = await session.scalar(query)
    if env is not None:
        return env
    try:
        async with session.begin_nested():
            env = Environment(organization_id=principal.organization_id, name=GLOBAL_NAME, scope_owner="",
                              is_global=True, description="Applies to every workspace in the organization")
            session.add(env)
        await session.commit()
        return env
    except IntegrityError:
        env = await session.scalar(query)
        if env is None:  # pragma: no cover - the conflicting row must be there
            raise
        return env


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} not found", f"{value!r} is not a valid id") from None


async def resolve_environment(session: AsyncSession, principal: Principal, ref: str) -> Environment:
    """Find an environment the caller may see by UUID or `global`; 404 otherwise."""
    if ref == GLOBAL:
        return await ensure_global(session, principal)
    env_id = parse_uuid(ref, "Environment")
    env = await session.scalar(
        select(Environment).where(
            Environment.id == env_id,
            Environment.organization_id == principal.organization_id,
            _visible(principal),
        )
    )
    if env is None:
        raise NotFound("Environment not found")
    return env


async def counts_for(session: AsyncSession, env_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    result: dict[uuid.UUID, dict[str, int]] = {env_id: {} for env_id in env_ids}
    if not env_ids:
        return result
    for field, model in _COUNTED.items():
        rows = await session.execute(
            select(model.environment_id, func.count()).where(model.environment_id.in_(env_ids))
            .group_by(model.environment_id)
        )
        for env_id, count in rows:
            result[env_id][field] = int(count)
    return result


async def list_environments(session: AsyncSession, principal: Principal, scope: str) -> list[Environment]:
    if scope not in ("org", "user", "all"):
        raise BadRequest("Invalid request", "scope: must be one of org, user, all")
    await ensure_global(session, principal)
    query = select(Environment).where(Environment.organization_id == principal.organization_id)
    if scope == "org":
        query = query.where(Environment.user_id.is_(None))
    elif scope == "user":
        if principal.user_id is None:
            return []
        query = query.where(Environment.user_id == principal.user_id)
    else:
        query = query.where(_visible(principal))
    rows = await session.scalars(query.order_by(Environment.is_global.desc(), Environment.created_at))
    return list(rows)


async def _check_binding(session: AsyncSession, principal: Principal, repository_id, repository_set_id):
    if repository_id and repository_set_id:
        raise BadRequest("repository_id and repository_set_id are mutually exclusive",
                         "bind an environment to a repository or to a repository set, not both")
    if repository_id and not await session.scalar(
        select(Repository.id).where(Repository.id == repository_id,
                                    Repository.organization_id == principal.organization_id)
    ):
        raise BadRequest("Repository not found", f"repository_id: no repository {repository_id}")
    if repository_set_id and not await session.scalar(
        select(RepositorySet.id).where(RepositorySet.id == repository_set_id,
                                       RepositorySet.organization_id == principal.organization_id)
    ):
        raise BadRequest("Repository set not found", f"repository_set_id: no repository set {repository_set_id}")


async def _commit_unique_name(session: AsyncSession) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(DUPLICATE_NAME) from None


async def create_environment(session: AsyncSession, principal: Principal, data: dict) -> Environment:
    """Create a team (`scope=org`) or personal (`scope=user`) environment.

    A team environment created from a source copies the source's variables, files, skills, skill
    registries and MCPs. A personal environment backed by a team source inherits them at run time, and
    its binding and system prompt are the source's (locked).
    """
    await ensure_global(session, principal)
    name = data["name"].strip()
    if not name:
        raise BadRequest("Invalid request", "name: must not be blank")
    scope = data.get("scope") or "org"
    if scope == "user" and principal.user_id is None:
        raise Forbidden("Personal environments require user authentication",
                        "use a personal API key to create scope=user environments")
    source = None
    if data.get("source_environment_id"):
        source = await resolve_environment(session, principal, str(data["source_environment_id"]))
        if source.is_global:
            raise BadRequest("Invalid request", "source_environment_id: the Global environment cannot be a source")
        if source.user_id is not None:
            raise BadRequest("Invalid request", "source_environment_id: must be a team environment")
    if scope == "user" and source is not None:
        if data.get("repository_id") or data.get("repository_set_id") or data.get("system_prompt"):
            raise BadRequest("Source-backed personal environments inherit their binding and system prompt",
                             "omit repository_id, repository_set_id and system_prompt")
        repository_id, repository_set_id = source.repository_id, source.repository_set_id
        system_prompt = source.system_prompt
    else:
        repository_id, repository_set_id = data.get("repository_id"), data.get("repository_set_id")
        if source is not None and not (repository_id or repository_set_id):
            repository_id, repository_set_id = source.repository_id, source.repository_set_id
        system_prompt = data.get("system_prompt")
        if source is not None and system_prompt is None:
            system_prompt = source.system_prompt
    await _check_binding(session, principal, repository_id, repository_set_id)
    if scope == "user" and data.get("mobile_testing_enabled"):
        raise BadRequest("Invalid request", "mobile_testing_enabled: only team environments can enable it")
    if name.lower() == GLOBAL:
        raise Conflict(DUPLICATE_NAME, "the name is reserved for the Global environment")
    env = Environment(
        organization_id=principal.organization_id,
        user_id=principal.user_id if scope == "user" else None,
        scope_owner=str(principal.user_id) if scope == "user" else "",
        name=name,
        description=data.get("description"),
        repository_id=repository_id,
        repository_set_id=repository_set_id,
        system_prompt=system_prompt,
        mobile_testing_enabled=bool(data.get("mobile_testing_enabled")),
        source_environment_id=source.id if source is not None and scope == "user" else None,
    )
    session.add(env)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict(DUPLICATE_NAME) from None
    if source is not None and scope == "org":
        await _copy_nested(session, source, env)
    audit.record(session, principal, "environment.created", "environment", env.id, after=snapshot(env))
    await _commit_unique_name(session)
    return env


async def _copy_nested(session: AsyncSession, source: Environment, target: Environment) -> None:
    """Copy a team source's nested resources onto a new team environment (ciphertexts copy as they are)."""
    for model in (EnvironmentVariable, EnvironmentFile, EnvironmentSkill, EnvironmentSkillsRegistry,
                  EnvironmentMcp):
        rows = await session.scalars(select(model).where(model.environment_id == source.id))
        for row in rows:
            values = {c.key: getattr(row, c.key) for c in model.__table__.columns
                      if c.key not in ("id", "environment_id", "created_at", "updated_at")}
            session.add(model(environment_id=target.id, **values))


async def update_environment(session: AsyncSession, principal: Principal, ref: str, data: dict) -> Environment:
    """Apply a PATCH. `data` holds only the fields the client sent."""
    if ref == GLOBAL:
        raise BadRequest("The Global environment cannot be updated", NESTED_HINT)
    env = await resolve_environment(session, principal, ref)
    if env.is_global:
        raise BadRequest("The Global environment cannot be updated", NESTED_HINT)
    before = snapshot(env)
    if "name" in data:
        if data["name"] is None or not data["name"].strip():
            raise BadRequest("Invalid request", "name: must not be blank")
        name = data["name"].strip()
        if name.lower() == GLOBAL:
            raise Conflict(DUPLICATE_NAME, "the name is reserved for the Global environment")
        env.name = name
    if "description" in data:
        env.description = data["description"]
    binding_change = "repository_id" in data or "repository_set_id" in data
    if env.source_environment_id and (binding_change or "system_prompt" in data):
        raise BadRequest("Source-backed personal environments cannot change their binding or system prompt",
                         "they are inherited from the source environment")
    if binding_change:
        repository_id = data.get("repository_id", env.repository_id)
        repository_set_id = data.get("repository_set_id", env.repository_set_id)
        # Binding to one kind replaces a binding to the other, unless the client sent both.
        if data.get("repository_id") and "repository_set_id" not in data:
            repository_set_id = None
        if data.get("repository_set_id") and "repository_id" not in data:
            repository_id = None
        await _check_binding(session, principal, repository_id, repository_set_id)
        env.repository_id, env.repository_set_id = repository_id, repository_set_id
    if "system_prompt" in data:
        env.system_prompt = data["system_prompt"]
    if "mobile_testing_enabled" in data and data["mobile_testing_enabled"] is not None:
        if env.user_id is not None and data["mobile_testing_enabled"]:
            raise BadRequest("Invalid request", "mobile_testing_enabled: only team environments can enable it")
        env.mobile_testing_enabled = data["mobile_testing_enabled"]
    if "personal_preferences" in data:
        if env.user_id is None and data["personal_preferences"] is not None:
            raise BadRequest("Invalid request", "personal_preferences: only personal environments have them")
        env.personal_preferences = data["personal_preferences"]
    env.updated_at = utcnow()
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment.updated", "environment", env.id,
                 before=before, after=snapshot(env))
    await _commit_unique_name(session)
    return env


async def delete_environment(session: AsyncSession, principal: Principal, ref: str) -> None:
    if ref == GLOBAL:
        raise Conflict("Cannot delete the global environment")
    env = await resolve_environment(session, principal, ref)
    if env.is_global:
        raise Conflict("Cannot delete the global environment")
    automations = await session.scalar(
        select(func.count()).select_from(Automation).where(Automation.environment_id == env.id)
    )
    if automations:
        raise Conflict("Environment is referenced by automations",
                       f"{automations} automation(s) use this environment; move or delete them first")
    dependants = await session.scalar(
        select(func.count()).select_from(Environment).where(Environment.source_environment_id == env.id)
    )
    if dependants:
        raise Conflict("Environment is the source of personal environments",
                       f"{dependants} personal environment(s) inherit from it")
    audit.record(session, principal, "environment.deleted", "environment", env.id, before=snapshot(env))
    await session.delete(env)
    await session.commit()
