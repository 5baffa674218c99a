"""Who brings which workspace up, across control-plane processes and restarts (ARCHITECTURE.md, principle 2).

A workspace is `preparing` while a process boots it (a create, a claim of a warm pool's workspace) or wakes it.
That process holds the lease `transition:<workspace id>` in the database for as long as the work runs, renewing
every lease it holds in one UPDATE every `interval` seconds (`TransitionLeases.run`). When a process dies, is
killed, or stops mid-boot (a rolling restart), its leases stop being renewed (or are handed back at once, on a
graceful stop). Every process looks, on each pass, for `preparing` workspaces of its runtime backend whose lease
is free or expired, and whose status changed more than `ttl` ago (a create takes its lease a moment after its
row is stored): it takes the lease and hands the workspace to `recover` (ReplicaService), which finishes the
boot where the engine is up, or runs it again. So a create in flight survives its process, and no two processes
ever boot one workspace at once.

    transitions = TransitionLeases(sessions, owner_id, runtime="docker", ttl=10)
    if await transitions.take(row.id):         # before the work starts
        ...
        await transitions.give_back(row.id)    # when it ends, whatever the outcome
    task = asyncio.create_task(transitions.run(recover))
    await transitions.release_all()            # graceful shutdown
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas.services import leases
from replicas.store.models import Lease, Workspace, aware, utcnow

log = logging.getLogger("replicas.transitions")
PREFIX = "transition:"
PREPARING = "preparing"


class TransitionLeases(leases.LeaseSet):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], owner_id: str, *, runtime: str | None = None,
                 ttl: float = 10.0, interval: float = 2.0):
        # `runtime`: take over only workspaces of this runtime backend (a process reaches no other's engines).
        super().__init__(sessions, PREFIX, owner_id, ttl)
        self.runtime, self.interval = runtime, min(interval, ttl / 3)

    async def orphans(self) -> list[Workspace]:
        """`preparing` workspaces (of this runtime) that nobody is bringing up: no live lease, not ours, and
        in that status for longer than `ttl`."""
        now = utcnow()
        settled_before = now - timedelta(seconds=self.ttl)
        async with self.sessions() as session:
            query = select(Workspace).where(Workspace.status == PREPARING,
                                            Workspace.status_changed_at < settled_before)
            if self.runtime is not None:
                query = query.where(Workspace.runtime == self.runtime)
            rows = list(await session.scalars(query))
            if not rows:
                return []
            names = [self.name(row.id) for row in rows]
            live = {name.removeprefix(PREFIX) for name, expires in (await session.execute(
                select(Lease.name, Lease.expires_at).where(Lease.name.in_(names)))).all()
                if expires is not None and aware(expires) >= now}
        return [row for row in rows if str(row.id) not in live and str(row.id) not in self.held]

    async def supervise(self, recover: Callable[[Workspace], Awaitable[None]] | None) -> None:
        """One pass: renew what we hold; take over and `recover` what nobody is bringing up (unless `recover` is
        None: this process only renews its own)."""
        await self.renew()
        if recover is None:
            return
        for row in await self.orphans():
            if await self.take(row.id):
                log.warning("workspace %s: left preparing by a process that stopped; this one takes it over",
                            row.id)
                await recover(row)

    async def run(self, recover: Callable[[Workspace], Awaitable[None]] | None) -> None:
        while True:
            try:
                await self.supervise(recover)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next pass tries again
                log.exception("transition lease supervision failed")
            await asyncio.sleep(self.interval)
