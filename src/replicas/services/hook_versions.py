"""The stored versions of an environment's warm and start hooks: the kinds, and the active version's query.

Apart from `env_hooks` (saving, testing) because provisioning reads the active start hooks, and the
test runs in `env_hooks` provision a workspace: one module for both would import itself in a circle.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.services.principal import Principal
from replicas.store.models import Environment, EnvironmentHook

WARM, START = "warm", "start"


async def active_hook(session: AsyncSession, principal: Principal, env: Environment,
                      kind: str) -> EnvironmentHook | None:
    """The environment's active version of `kind`, or None."""
    return await session.scalar(
        select(EnvironmentHook).where(
            EnvironmentHook.organization_id == principal.organization_id,
            EnvironmentHook.environment_id == env.id,
            EnvironmentHook.kind == kind,
            EnvironmentHook.is_active.is_(True),
        ).order_by(EnvironmentHook.version.desc()).limit(1)
    )
