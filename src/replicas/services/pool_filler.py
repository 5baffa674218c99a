"""The warm-pool reconcile loop: keeps each enabled pool at `target_size` ready workspaces.

    filler = PoolFiller(settings, sessions, manager, owner_id)
    task = asyncio.create_task(filler.run())     # one process at a time, under the `warm-pool-filler` lease
    await filler.stop()

A pass, in order:
1. Expire what must not be handed out: ready workspaces of a disabled pool, of an older generation (a new
   warm hook was saved) or older than `pool_max_age_seconds`. Each is one conditional UPDATE from `ready`,
   so a workspace a create claimed in between is left alone; an expired one is destroyed.
2. Fill: for each enabled pool not backing off (`next_retry_at`), start warming what is missing, within
   `max_pool_workspaces` (all pools together; pool workspaces never count against users' capacity). A pool
   that failed last time probes with one warm-up at a time.

A warm-up is a `workspaces` row in status `pooled` (not a replica: no list, read or capacity count sees it),
provisioned as a cold create would be (home, warm hooks, engine), its start hooks deferred to the claim.
Success: `ready`, the backoff is reset. Failure (a failing warm hook, an engine that does not start):
`failed` with the reason, the workspace destroyed, and the pool backs off exponentially (warm_pools.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas.services import leases, loops, warm_pools
from replicas.services.principal import Principal
from replicas.services.workspaces import POOLED, WorkspaceManager
from replicas.settings import Settings
from replicas.store.models import WarmPoolConfig, WarmPoolWorkspace, Workspace, aware, utcnow

log = logging.getLogger("replicas.pools")
LEASE = "warm-pool-filler"
LIVE = ("warming", "ready")


class PoolFiller:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], manager: WorkspaceManager,
                 owner_id: str):
        self.settings, self.sessions, self.manager, self.owner_id = settings, sessions, manager, owner_id
        self._warming: dict[uuid.UUID, asyncio.Task] = {}

    async def run(self) -> None:
        await loops.run_every("warm pool filler", self.settings.pool_interval_seconds, self.reconcile_once,
                              lease=loops.Lease(self.sessions, LEASE, self.owner_id))

    async def stop(self) -> None:
        """Cancel the warm-ups in flight (each cleans up after itself) and hand the lease on at once."""
        tasks = list(self._warming.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await leases.release(self.sessions, LEASE, self.owner_id)

    async def reconcile_once(self) -> None:
        now = utcnow()
        async with self.sessions() as session:
            configs = {c.id: c for c in await session.scalars(select(WarmPoolConfig))}
            rows = list(await session.scalars(select(WarmPoolWorkspace).where(WarmPoolWorkspace.status.in_(LIVE))))
        live: list[WarmPoolWorkspace] = []
        for row in rows:
            config = configs.get(row.warm_pool_config_id)
            if row.status == "warming":
                if row.id in self._warming:
                    live.append(row)
                else:  # a warm-up this process does not run: cut short by a restart (we hold the lease)
                    await self._finish(row, "failed", "warming", "The control plane restarted during warm-up")
                continue
            reason = None
            if config is None or not config.enabled:
                reason = "The pool was disabled"
            elif row.generation < config.generation:
                reason = "A new warm hook was saved"
            elif (now - aware(row.created_at)).total_seconds() >= self.settings.pool_max_age_seconds:
                reason = "Not claimed within the pool's maximum age"
            if reason:
                await self._finish(row, "expired", "ready", reason)
            else:
                live.append(row)
        budget = self.settings.max_pool_workspaces - len(live)
        for config in configs.values():
            if budget <= 0:
                break
            if not config.enabled or (config.next_retry_at is not None and aware(config.next_retry_at) > now):
                continue
            mine = [row for row in live if row.warm_pool_config_id == config.id and row.generation >= config.generation]
            need = config.target_size - len(mine)
            if config.error_count:
                need = min(need, 1 - sum(row.status == "warming" for row in mine))
            for _ in range(max(0, min(need, budget))):
                await self._start_warming(config)
                budget -= 1

    async def _start_warming(self, config: WarmPoolConfig) -> None:
        """Record the warm-up (so the next pass counts it) and run it in the background."""
        principal = Principal.system(config.organization_id)
        try:
            workspace = await self.manager.create_record(principal, str(config.environment_id), name="warm-pool",
                                                         status=POOLED, source="warm_pool")
        except Exception as exc:  # noqa: BLE001 - the environment no longer resolves: a failure of this pool
            async with self.sessions() as session:
                await warm_pools.record_failure(session, config.id, str(exc) or type(exc).__name__, self.settings)
                await session.commit()
            return
        async with self.sessions() as session:
            row = WarmPoolWorkspace(organization_id=config.organization_id, warm_pool_config_id=config.id,
                                    sandbox_id=str(workspace.id), status="warming", generation=config.generation)
            session.add(row)
            await session.commit()
        task = asyncio.create_task(self._warm(row, workspace, principal), name=f"warm-{row.id}")
        self._warming[row.id] = task
        task.add_done_callback(lambda _t, key=row.id: self._warming.pop(key, None))

    async def _warm(self, row: WarmPoolWorkspace, workspace: Workspace, principal: Principal) -> None:
        try:
            await self.manager.provision(workspace, principal, pooled=True)
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(row, "failed", "warming", "The control plane stopped during warm-up"))
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on the pool, which backs off
            message = str(exc) or type(exc).__name__
            log.warning("warm pool %s: warm-up failed: %s", row.warm_pool_config_id, message)
            async with self.sessions() as session:
                await warm_pools.record_failure(session, row.warm_pool_config_id, message, self.settings)
                await session.commit()
            await self._finish(row, "failed", "warming", message)
            return
        async with self.sessions() as session:
            ready = await warm_pools.set_status(session, row.id, "ready", when="warming")
            await warm_pools.record_success(session, row.warm_pool_config_id)
            await session.commit()
        if not ready:
            await self._destroy(row)

    async def _finish(self, row: WarmPoolWorkspace, status: str, when: str, reason: str) -> None:
        """Move the pool workspace from `when` to its end (`expired`, `failed`) and destroy its workspace; a
        no-op if it left `when` meanwhile (a create claimed it)."""
        async with self.sessions() as session:
            moved = await warm_pools.set_status(session, row.id, status, when=when, error_message=reason)
            await session.commit()
        if moved:
            log.info("warm pool %s: workspace %s %s (%s)", row.warm_pool_config_id, row.sandbox_id, status, reason)
            await self._destroy(row)

    async def _destroy(self, row: WarmPoolWorkspace) -> None:
        try:
            async with self.sessions() as session:
                workspace = await session.get(Workspace, uuid.UUID(row.sandbox_id))
            if workspace is not None and workspace.status in (POOLED, "error"):
                await self.manager.destroy(workspace)
        except Exception:  # noqa: BLE001 - the next pass must go on; the record already says why
            log.exception("warm pool %s: destroying workspace %s failed", row.warm_pool_config_id, row.sandbox_id)
