"""The warm-pool reconcile loop: keeps each enabled pool at `target_size` ready workspaces.

    filler = PoolFiller(settings, sessions, manager, owner_id)
    task = asyncio.create_task(filler.run())     # one process at a time, under the `warm-pool-filler` lease
    await filler.stop()

A pass, in order:
1. Expire what must not be handed out: ready workspaces of a disabled pool, of an older generation (see
   pool_generations.py), older than `pool_max_age_seconds`, or, at this process's first pass, whose engine is
   gone (a restart of the machine, or of a control plane that then left them unwatched). Each is one
   conditional UPDATE from `ready`, so a workspace a create claimed in between is left alone; an expired one
   is destroyed.
2. Fill: for each enabled pool not backing off (`next_retry_at`), start warming what is missing, within
   `max_pool_workspaces` (all pools together; pool workspaces never count against users' capacity). A pool
   that failed last time probes with one warm-up at a time.

   Where the runtime can layer homes, a pool without a base snapshot at its generation first builds one
   (services/base_snapshots.py): its first warm-up is the seed (`warming` while the checkouts and warm hooks
   are done, `snapshotting` while the snapshot is sealed, then `ready` once its own engine, started from
   the snapshot, answers), and no other warm-up starts until the snapshot exists; every later one starts
   from it. A pool of target 0 builds its snapshot all the same, for creates that find the pool empty.
3. Keep house: destroy snapshots nothing will use (`base_snapshots.collect`), and every
   `pool_branch_check_seconds` fetch each pool's repositories and bump the generation when a default
   branch moved (`base_snapshots.check_heads`).

A warm-up is a `workspaces` row in status `pooled` (not a replica: no list, read or capacity count sees it),
provisioned as a create would be (from the snapshot, or cold: home, warm hooks), its engine started, its
start hooks deferred to the claim. Its warm hooks' output goes to the pool workspace's `output` as it comes
(the stream endpoint's `output` events). Success: `ready`, the backoff is reset. Failure (a failing warm
hook, an engine that does not start): `failed` with the reason, the workspace destroyed, and the pool backs
off exponentially (warm_pools.py).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas.runtime import RuntimeStatus
from replicas.services import base_snapshots, leases, loops, warm_pools
from replicas.services.principal import Principal
from replicas.services.workspaces import POOLED, WorkspaceManager
from replicas.settings import Settings
from replicas.store.models import WarmPoolConfig, WarmPoolWorkspace, Workspace, aware, utcnow

log = logging.getLogger("replicas.pools")
LEASE = "warm-pool-filler"
LIVE = ("warming", "snapshotting", "ready")
FLUSH_SECONDS = 0.25


class _OutputSink:
    """A warm-up's output on its way to `warm_pool_workspaces.output`: collected as it comes (on the event
    loop), written every FLUSH_SECONDS by one task, and at the end."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], row_id: uuid.UUID):
        self.sessions, self.row_id = sessions, row_id
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending: list[str] = []
        self.task = asyncio.create_task(self._flush_forever(), name=f"warm-output-{row_id}")

    def add(self, chunk: bytes) -> None:
        self.pending.append(self.decoder.decode(chunk))

    async def flush(self) -> None:
        text, self.pending = "".join(self.pending), []
        if text:
            async with self.sessions() as session:
                await warm_pools.append_output(session, self.row_id, text)
                await session.commit()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            with contextlib.suppress(Exception):  # the output is best effort; the warm-up goes on
                await self.flush()

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        with contextlib.suppress(Exception):
            await self.flush()


class PoolFiller:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], manager: WorkspaceManager,
                 owner_id: str):
        self.settings, self.sessions, self.manager, self.owner_id = settings, sessions, manager, owner_id
        self._warming: dict[uuid.UUID, asyncio.Task] = {}
        self._building: dict[uuid.UUID, asyncio.Task] = {}  # environment id -> its snapshot's build
        self._heads_checked: dict[uuid.UUID, float] = {}  # pool id -> monotonic time of its last check
        self._engines_checked = False  # ready workspaces' engines checked once, at this process's first pass

    async def run(self) -> None:
        await loops.run_every("warm pool filler", self.settings.pool_interval_seconds, self.reconcile_once,
                              lease=loops.Lease(self.sessions, LEASE, self.owner_id))

    async def stop(self) -> None:
        """Cancel the warm-ups in flight (each cleans up after itself) and hand the lease on at once."""
        tasks = [*self._warming.values(), *self._building.values()]
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
            if row.status in ("warming", "snapshotting"):
                if row.id in self._warming:
                    live.append(row)
                else:  # a warm-up this process does not run: cut short by a restart (we hold the lease)
                    await self._finish(row, "failed", row.status, "The control plane restarted during warm-up")
                continue
            reason = None
            if not self._engines_checked and not await self._engine_alive(row):
                reason = "Its engine is gone (the control plane or its machine restarted)"
            elif config is None or not config.enabled:
                reason = "The pool was disabled"
            elif row.generation < config.generation:
                reason = ("Stale: a newer generation (a warm hook, start hook, variable, file, repository or "
                          "default branch changed)")
            elif (now - aware(row.created_at)).total_seconds() >= self.settings.pool_max_age_seconds:
                reason = "Not claimed within the pool's maximum age"
            if reason:
                await self._finish(row, "expired", "ready", reason)
            else:
                live.append(row)
        self._engines_checked = True
        budget = self.settings.max_pool_workspaces - len(live)
        layered = await self.manager.runtime.base_snapshot_refusal() is None
        for config in configs.values():
            if not config.enabled or (config.next_retry_at is not None and aware(config.next_retry_at) > now):
                continue
            mine = [row for row in live if row.warm_pool_config_id == config.id and row.generation >= config.generation]
            need = config.target_size - len(mine)
            if config.error_count:
                need = min(need, 1 - sum(row.status in ("warming", "snapshotting") for row in mine))
            if layered and not await self._has_snapshot(config):
                if config.environment_id not in self._building:  # the seed first; the rest start from it
                    seed = need > 0 and budget > 0
                    budget -= seed
                    await self._build_snapshot(config, seed)
                continue
            for _ in range(max(0, min(need, budget))):
                await self._start_warming(config)
                budget -= 1
        if layered:
            await self._keep_house(configs.values())

    async def _engine_alive(self, row: WarmPoolWorkspace) -> bool:
        """Whether a ready workspace's engine still runs (a reboot, or a crash while no process watched)."""
        try:
            async with self.sessions() as session:
                workspace = await session.get(Workspace, uuid.UUID(row.sandbox_id))
            return workspace is not None and await self.manager.poll(workspace) == RuntimeStatus.RUNNING
        except Exception:  # noqa: BLE001 - unknown: treated as gone, the pool makes another
            return False

    async def _has_snapshot(self, config: WarmPoolConfig) -> bool:
        async with self.sessions() as session:
            return await base_snapshots.current(session, config, self.manager.runtime.name) is not None

    async def _keep_house(self, configs) -> None:
        """Destroy unused snapshots; check the default branches of each pool every pool_branch_check_seconds."""
        abandoned_after = self.settings.hook_test_timeout_seconds + 600
        try:
            await base_snapshots.collect(self.manager, set(self._building), abandoned_after)
        except Exception:  # noqa: BLE001 - the next pass tries again
            log.exception("base snapshots: collecting unused ones failed")
        for config in configs:
            last = self._heads_checked.get(config.id)
            due = last is None or time.monotonic() - last >= self.settings.pool_branch_check_seconds
            if not config.enabled or not due:
                continue
            self._heads_checked[config.id] = time.monotonic()
            try:
                await base_snapshots.check_heads(self.manager, config)
            except Exception:  # noqa: BLE001 - the next check tries again
                log.exception("warm pool %s: checking its default branches failed", config.id)

    async def _build_snapshot(self, config: WarmPoolConfig, seed: bool) -> None:
        """Build the pool's base snapshot in the background: as the warm-up of a seed workspace (`seed`), which
        then starts from it, or on its own (the pool needs no workspace now)."""
        if seed:
            await self._start_warming(config, seed=True)
            return

        async def build() -> None:
            try:
                await base_snapshots.build(self.manager, config)
            except Exception as exc:  # noqa: BLE001 - recorded on the pool, which backs off
                await self._pool_failed(config.id, str(exc) or type(exc).__name__)

        self._track_build(config, asyncio.create_task(build(), name=f"snapshot-{config.environment_id}"))

    def _track_build(self, config: WarmPoolConfig, task: asyncio.Task) -> None:
        key = config.environment_id
        self._building[key] = task
        task.add_done_callback(lambda t: self._building.pop(key, None) if self._building.get(key) is t else None)

    async def _pool_failed(self, config_id: uuid.UUID, message: str) -> None:
        log.warning("warm pool %s: warm-up failed: %s", config_id, message)
        async with self.sessions() as session:
            await warm_pools.record_failure(session, config_id, message, self.settings)
            await session.commit()

    async def _start_warming(self, config: WarmPoolConfig, seed: bool = False) -> None:
        """Record the warm-up (so the next pass counts it) and run it in the background; a `seed` builds the
        pool's base snapshot first."""
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
        task = asyncio.create_task(self._warm(row, workspace, principal, config if seed else None),
                                   name=f"warm-{row.id}")
        self._warming[row.id] = task
        task.add_done_callback(lambda _t, key=row.id: self._warming.pop(key, None))
        if seed:
            self._track_build(config, task)

    async def _warm(self, row: WarmPoolWorkspace, workspace: Workspace, principal: Principal,
                    seed_of: WarmPoolConfig | None) -> None:
        output = _OutputSink(self.sessions, row.id)
        state = "warming"

        async def snapshotting() -> None:
            nonlocal state
            await output.flush()
            async with self.sessions() as session:
                if await warm_pools.set_status(session, row.id, "snapshotting", when="warming"):
                    state = "snapshotting"
                await session.commit()

        try:
            if seed_of is not None:
                await base_snapshots.build(self.manager, seed_of, on_output=output.add, on_sealing=snapshotting)
            await self.manager.provision(workspace, principal, pooled=True, on_output=output.add)
        except asyncio.CancelledError:
            await asyncio.shield(output.close())
            await asyncio.shield(self._finish(row, "failed", state, "The control plane stopped during warm-up"))
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on the pool, which backs off
            message = str(exc) or type(exc).__name__
            await output.close()
            await self._pool_failed(row.warm_pool_config_id, message)
            await self._finish(row, "failed", state, message)
            return
        await output.close()
        async with self.sessions() as session:
            ready = await warm_pools.set_status(session, row.id, "ready", when=state)
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
