"""Warm pools: per-environment configuration, pool counts, and the pool's workspace records.

A pool's `generation` is bumped on every invalidation (a new warm hook). Workspaces carry the
generation they were built for, so staleness is derived: a `ready` workspace below the config's
generation is stale and expires. The reconcile loop (`pool_filler.py`) writes the `warm_pool_workspaces`
rows that these reads report; `sandbox_id` holds the id of the pool workspace's `workspaces` row.
A create claims a ready one (`claim`) with one conditional UPDATE.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.errors import NotFound
from replicas.services import audit, pool_generations
from replicas.services.environments import parse_uuid, resolve_environment
from replicas.services.principal import Principal
from replicas.settings import Settings
from replicas.store.models import Environment, WarmPoolConfig, WarmPoolWorkspace, aware, utcnow

DEFAULT_TARGET_SIZE = 5
MAX_TARGET_SIZE = 20
MAX_LISTED_WORKSPACES = 10
TERMINAL_STATUSES = frozenset({"ready", "failed", "expired", "assigned"})
POLL_INTERVAL_SECONDS = 0.1
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
    """Invalidate the environment's pool (older workspaces become stale; Global's: every pool); returns the
    environment's new generation, or None when it has no pool. Part of the caller's transaction."""
    await pool_generations.invalidate_environment(session, env)
    return await session.scalar(select(WarmPoolConfig.generation).where(
        WarmPoolConfig.organization_id == principal.organization_id, WarmPoolConfig.environment_id == env.id))


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


async def enabled_config(session: AsyncSession, principal: Principal, env_ref: str) -> WarmPoolConfig | None:
    """The environment's pool when it is enabled (None otherwise, or when the environment does not resolve:
    the cold path then answers for it)."""
    try:
        env = await resolve_environment(session, principal, env_ref)
    except NotFound:
        return None
    config = await get_config(session, principal, env)
    return config if config is not None and config.enabled else None


async def claim(session: AsyncSession, config: WarmPoolConfig) -> uuid.UUID | None:
    """Take one ready, current workspace of the pool for the caller's transaction: its `workspaces` row id,
    or None when the pool has none. One conditional UPDATE: on PostgreSQL the candidate is locked with SKIP
    LOCKED (a concurrent claim takes the next one, never the same); SQLite has one writer."""
    candidate = (
        select(WarmPoolWorkspace.id)
        .where(WarmPoolWorkspace.warm_pool_config_id == config.id, WarmPoolWorkspace.status == "ready",
               WarmPoolWorkspace.generation >= config.generation)
        .order_by(WarmPoolWorkspace.created_at, WarmPoolWorkspace.id).limit(1)
        .with_for_update(skip_locked=True).scalar_subquery()
    )
    sandbox_id = await session.scalar(
        update(WarmPoolWorkspace).where(WarmPoolWorkspace.id == candidate, WarmPoolWorkspace.status == "ready")
        .values(status="assigned").returning(WarmPoolWorkspace.sandbox_id)
        .execution_options(synchronize_session=False)
    )
    return uuid.UUID(sandbox_id) if sandbox_id else None


OUTPUT_LIMIT = 1024 * 1024


async def append_output(session: AsyncSession, workspace_id: uuid.UUID, text: str) -> None:
    """Add to a pool workspace's live output (what its stream sends as `output`), up to OUTPUT_LIMIT chars."""
    row = await session.get(WarmPoolWorkspace, workspace_id, populate_existing=True)
    if row is not None and len(row.output or "") < OUTPUT_LIMIT:
        row.output = ((row.output or "") + text)[:OUTPUT_LIMIT]


async def set_status(session: AsyncSession, workspace_id: uuid.UUID, status: str, *, when: str,
                     error_message: str | None = None) -> bool:
    """Move a pool workspace from `when` to `status`; False if it had left `when` (claimed, expired)."""
    values: dict = {"status": status}
    if error_message is not None:
        values["error_message"] = error_message[:2000]
    result = await session.execute(
        update(WarmPoolWorkspace).where(WarmPoolWorkspace.id == workspace_id, WarmPoolWorkspace.status == when)
        .values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1


async def record_failure(session: AsyncSession, config_id: uuid.UUID, message: str, settings: Settings) -> None:
    """A warm-up failed: count it and hold the pool back, exponentially longer each time (capped). Warm-ups
    started together (a pass filling up to the target) that fail together count once."""
    config = await session.get(WarmPoolConfig, config_id, with_for_update=True, populate_existing=True)
    if config is None:
        return
    now = utcnow()
    config.last_error_at = config.last_failure_at = now
    config.last_error_message = config.last_failure_reason = message[:2000]
    if config.next_retry_at is not None and aware(config.next_retry_at) > now:
        return  # another warm-up of the same round failed first: one round, one step of backoff
    config.error_count = (config.error_count or 0) + 1
    delay = min(settings.pool_retry_base_seconds * 2 ** (config.error_count - 1), settings.pool_retry_max_seconds)
    config.next_retry_at = now + timedelta(seconds=delay)


async def record_success(session: AsyncSession, config_id: uuid.UUID) -> None:
    """A warm-up succeeded: the backoff is over."""
    await session.execute(
        update(WarmPoolConfig).where(WarmPoolConfig.id == config_id, WarmPoolConfig.error_count != 0)
        .values(error_count=0, next_retry_at=None).execution_options(synchronize_session=False))


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
    """One event of a pool workspace stream: `status` or `complete` (with the record), `output` (with the
    appended `text`), or `error` (with a message)."""

    type: str
    workspace: WarmPoolWorkspace | None = None
    message: str | None = None
    text: str | None = None


async def watch_workspace(
    sessions: Callable[[], AsyncSession],
    principal: Principal,
    workspace: WarmPoolWorkspace,
    poll_interval: float = POLL_INTERVAL_SECONDS,
) -> AsyncIterator[WorkspaceEvent]:
    """Events for one pool workspace: `status` now and on every change, `output` with each new piece of its
    warm hooks' output while it is `warming`, then `complete` with the record once it is terminal (ready,
    failed, expired, assigned), or `error` if the record disappears.

    Polls the store with a fresh session each time, so no connection is held between polls, because
    the pool workers may run in another `replicas serve` process."""
    workspace_id, status = workspace.id, workspace.status
    sent = 0
    yield WorkspaceEvent("status", workspace)
    while True:
        output = workspace.output or ""
        if len(output) > sent and status == "warming":
            yield WorkspaceEvent("output", workspace, text=output[sent:])
        sent = len(output)
        if status in TERMINAL_STATUSES:
            break
        await asyncio.sleep(poll_interval)
        async with sessions() as session:
            row = await _find_workspace(session, principal, workspace_id)
        if row is None:
            yield WorkspaceEvent("error", message=WORKSPACE_NOT_FOUND)
            return
        if row.status != status and status == "warming" and len(row.output or "") > sent:
            yield WorkspaceEvent("output", row, text=(row.output or "")[sent:])  # the last words of warming
            sent = len(row.output or "")
        workspace = row
        if row.status != status:
            status = row.status
            if status not in TERMINAL_STATUSES:
                yield WorkspaceEvent("status", row)
    yield WorkspaceEvent("complete", workspace)
