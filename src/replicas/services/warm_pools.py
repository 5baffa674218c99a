"""Warm pools: per-environment configuration, pool counts, and the pool's workspace records.

A pool's `generation` is bumped on every invalidation (a new warm hook). Workspaces carry the
generation they were built for, so staleness is derived: a `ready` workspace below the config's
generation is stale (still claimable as a fallback). Nothing fills pools yet; the reconcile loop
arrives with the workspace runtime and writes `warm_pool_workspaces` rows that these reads report.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.errors import NotFound
from replicas.services import audit
from replicas.services.environments import parse_uuid, resolve_environment
from replicas.services.principal import Principal
from replicas.store.models import Environment, WarmPoolConfig, WarmPoolWorkspace, utcnow

DEFAULT_TARGET_SIZE = 5
MAX_TARGET_SIZE = 20
MAX_LISTED_WORKSPACES = 10
TERMINAL_STATUSES = frozenset({"ready", "failed", "expired", "assigned"})
POLL_INTERVAL_SECONDS = 1.0
WORKSPACE_NOT_FOUND = "Warm pool workspace not found"


def snapshot(config: WarmPoolConfig) -> dict:
    """The audited view of a pool's configuration."""
    return {
        "environment_id": str(config.environment_id),
        "enabled": config.enabled,
        "target_size": config.target_size,
        "generation": config.generation,
    }


async def get_config(session: AsyncSession, principal: Principal, env: Environment) -> WarmPoolConfig | None:
    return await session.scalar(
        select(WarmPoolConfig).where(WarmPoolConfig.organization_id == principal.organization_id,
                                     WarmPoolConfig.environment_id == env.id)
    )


async def pool_counts(session: AsyncSession, config: WarmPoolConfig) -> dict[str, int]:
    """ready/stale/warming/snapshotting counts, derived from the workspaces and the config generation."""
    current = WarmPoolWorkspace.generation >= config.generation
    ready = WarmPoolWorkspace.status == "ready"

    def count(condition):
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    row = (await session.execute(
        select(
            count(ready & current),
            count(ready & ~current),
            count((WarmPoolWorkspace.status == "warming") & current),
            count((WarmPoolWorkspace.status == "snapshotting") & current),
        ).where(WarmPoolWorkspace.warm_pool_config_id == config.id,
                WarmPoolWorkspace.organization_id == config.organization_id)
    )).one()
    ready_count, stale_count, warming_count, snapshotting_count = (int(v) for v in row)
    return {"ready_count": ready_count, "stale_count": stale_count, "warming_count": warming_count,
            "snapshotting_count": snapshotting_count}


async def bump_generation(session: AsyncSession, principal: Principal, env: Environment) -> int | None:
    """Invalidate the environment's pool (older workspaces become stale); returns the new generation,
    or None when the environment has no pool. Part of the caller's transaction."""
    scope = (WarmPoolConfig.organization_id == principal.organization_id,
             WarmPoolConfig.environment_id == env.id)
    # Increment in SQL, so that two concurrent invalidations both count.
    await session.execute(
        update(WarmPoolConfig).where(*scope)
        .values(generation=WarmPoolConfig.generation + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return await session.scalar(select(WarmPoolConfig.generation).where(*scope))


async def upsert_config(session: AsyncSession, principal: Principal, env_ref: str, enabled: bool,
                        target_size: int | None = None) -> WarmPoolConfig:
    """Enable or disable an environment's pool, creating its config on first use (target size 5)."""
    for attempt in range(2):
        env = await resolve_environment(session, principal, env_ref)
        config = await get_config(session, principal, env)
        before = snapshot(config) if config is not None else None
        if config is None:
            config = WarmPoolConfig(organization_id=principal.organization_id, environment_id=env.id,
                                    target_size=DEFAULT_TARGET_SIZE, generation=1)
            session.add(config)
        config.enabled = enabled
        if target_size is not None:
            config.target_size = target_size
        config.updated_at = utcnow()
        try:
            await session.flush()
            audit.record(session, principal, "warm_pool.updated", "warm_pool", config.id,
                         before=before, after=snapshot(config))
            await session.commit()
            return config
        except IntegrityError:
            # A concurrent first PUT created the config (unique per environment): apply ours on top.
            await session.rollback()
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def get_owned_config(session: AsyncSession, principal: Principal, config_id: str) -> WarmPoolConfig:
    config = await session.scalar(
        select(WarmPoolConfig).where(WarmPoolConfig.id == parse_uuid(config_id, "Warm pool"),
                                     WarmPoolConfig.organization_id == principal.organization_id)
    )
    if config is None:
        raise NotFound("Warm pool not found")
    return config


async def list_workspaces(session: AsyncSession, principal: Principal,
                          config_id: str) -> list[WarmPoolWorkspace]:
    """The pool's most recent workspaces, newest first, at most MAX_LISTED_WORKSPACES."""
    config = await get_owned_config(session, principal, config_id)
    rows = await session.scalars(
        select(WarmPoolWorkspace)
        .where(WarmPoolWorkspace.warm_pool_config_id == config.id,
               WarmPoolWorkspace.organization_id == principal.organization_id)
        .order_by(WarmPoolWorkspace.created_at.desc(), WarmPoolWorkspace.id.desc())
        .limit(MAX_LISTED_WORKSPACES)
    )
    return list(rows)


async def _find_workspace(session: AsyncSession, principal: Principal,
                          workspace_id: uuid.UUID) -> WarmPoolWorkspace | None:
    return await session.scalar(
        select(WarmPoolWorkspace).where(WarmPoolWorkspace.id == workspace_id,
                                        WarmPoolWorkspace.organization_id == principal.organization_id)
    )


async def get_workspace(session: AsyncSession, principal: Principal, workspace_id: str) -> WarmPoolWorkspace:
    row = await _find_workspace(session, principal, parse_uuid(workspace_id, "Warm pool workspace"))
    if row is None:
        raise NotFound(WORKSPACE_NOT_FOUND)
    return row


@dataclass(frozen=True)
class WorkspaceEvent:
    """One event of a pool workspace stream: `status` or `complete` (with the record), or `error`
    (with a message)."""

    type: str
    workspace: WarmPoolWorkspace | None = None
    message: str | None = None


async def watch_workspace(
    sessions: Callable[[], AsyncSession],
    principal: Principal,
    workspace: WarmPoolWorkspace,
    poll_interval: float = POLL_INTERVAL_SECONDS,
) -> AsyncIterator[WorkspaceEvent]:
    """Events for one pool workspace: `status` now and on every change, then `complete` with the record
    once it is terminal (ready, failed, expired, assigned), or `error` if the record disappears.

    Polls the store with a fresh session each time, so no connection is held between polls, because
    the pool workers may run in another `replicas serve` process."""
    workspace_id, status = workspace.id, workspace.status
    yield WorkspaceEvent("status", workspace)
    while status not in TERMINAL_STATUSES:
        await asyncio.sleep(poll_interval)
        async with sessions() as session:
            row = await _find_workspace(session, principal, workspace_id)
        if row is None:
            yield WorkspaceEvent("error", message=WORKSPACE_NOT_FOUND)
            return
        workspace = row
        if row.status != status:
            status = row.status
            if status not in TERMINAL_STATUSES:
                yield WorkspaceEvent("status", row)
    yield WorkspaceEvent("complete", workspace)
