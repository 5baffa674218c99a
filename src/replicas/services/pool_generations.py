"""Pool generations: what makes a warm pool's ready workspaces and base snapshot stale.

Every write to something a snapshot holds (a variable, a file, an MCP server, a skill, the system prompt, a
hook, the repositories) calls `invalidate_environment` (or `invalidate`) in its own transaction, so the next
claim and the next filler pass see the new generation. This module imports only the store, so that every
service may call it.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.store.models import Environment, WarmPoolConfig, utcnow


async def invalidate(session: AsyncSession, organization_id: uuid.UUID, environment_id: uuid.UUID | None) -> None:
    """Bump the generation of every pool whose workspaces and base snapshot hold what changed: the
    environment's, the personal environments backed by it, or (`environment_id` None: Global, a repository)
    every pool of the organization. Ready workspaces and the snapshot of the old generation are then stale:
    the filler expires and rebuilds them; running workspaces keep theirs. Part of the caller's transaction."""
    scope = [WarmPoolConfig.organization_id == organization_id]
    if environment_id is not None:
        backed = select(Environment.id).where(Environment.organization_id == organization_id,
                                              Environment.source_environment_id == environment_id)
        scope.append((WarmPoolConfig.environment_id == environment_id) | WarmPoolConfig.environment_id.in_(backed))
    # Increment in SQL, so that two concurrent invalidations both count. No autoflush: the caller's pending
    # write (which may conflict, and is answered for at its own flush or commit) must not be flushed here.
    with session.no_autoflush:
        await session.execute(
            update(WarmPoolConfig).where(*scope)
            .values(generation=WarmPoolConfig.generation + 1, has_base_snapshot=False, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


async def invalidate_environment(session: AsyncSession, env: Environment) -> None:
    """`invalidate` for a change to `env` (Global's reaches every pool of its organization)."""
    await invalidate(session, env.organization_id, None if env.is_global else env.id)
