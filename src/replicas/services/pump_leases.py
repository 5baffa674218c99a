"""Who pumps which workspace's events, across control-plane processes (ARCHITECTURE.md, principle 2).

Exactly one process pumps an awake workspace at a time: the holder of the lease `pump:<workspace id>` in the
database. The process that brings a workspace up takes its lease at once (`claim`); every process then runs
`supervise` every `interval` seconds, which renews the leases it holds (one UPDATE for all of them), stops
the pumps whose lease it lost, and takes the lease of every active workspace whose owner stopped renewing
(it died, or was killed mid-turn). A pump that takes over resumes from the stored seq, and storing is
idempotent by seq (events/store.py), so a takeover loses nothing and stores nothing twice; webhooks and
projections are derived in the storing transaction, so they happen once too.

    pumps = PumpLeases(sessions, pump, owner_id)
    await pumps.claim(row)                  # after the workspace became active here
    task = asyncio.create_task(pumps.run())
    await pumps.release(row.id)             # it sleeps or is deleted
    await pumps.release_all()               # graceful shutdown: the leases go at once, not after the TTL

Leases expire after `ttl` seconds without renewal, so a takeover happens within `ttl + interval`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas.events import EventPump
from replicas.services import leases
from replicas.store.models import Lease, Workspace, aware, utcnow

log = logging.getLogger("replicas.pumps")
PREFIX = "pump:"


class PumpLeases:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], pump: EventPump, owner_id: str, *,
                 runtime: str | None = None, ttl: float = 6.0, interval: float = 2.0):
        # `runtime`: take over only workspaces of this runtime backend (a process reaches no other's engines).
        self.sessions, self.pump, self.owner_id, self.runtime = sessions, pump, owner_id, runtime
        self.interval = interval
        self.leases = leases.LeaseSet(sessions, PREFIX, owner_id, ttl)

    @property
    def held(self) -> set[str]:
        """The workspace ids whose lease this process holds."""
        return self.leases.held

    async def claim(self, row: Workspace) -> bool:
        """Take the workspace's lease (free, expired or ours) and pump it; False: another process pumps it."""
        if not await self.leases.take(row.id):
            return False
        self.pump.start(row)
        return True

    async def release(self, workspace_id: uuid.UUID | str) -> None:
        """Stop pumping the workspace here and hand its lease back."""
        await self.pump.stop(str(workspace_id))
        await self.leases.give_back(workspace_id)

    async def release_all(self) -> None:
        await self.pump.stop_all()
        await self.leases.release_all()

    async def supervise(self) -> None:
        """One pass: renew what we hold, let go of what we lost, take over what nobody pumps."""
        now = utcnow()
        await self.leases.renew()
        async with self.sessions() as session:
            query = select(Workspace).where(Workspace.status == "active")
            if self.runtime is not None:
                query = query.where(Workspace.runtime == self.runtime)
            active = {str(row.id): row for row in await session.scalars(query)}
            owned = {name.removeprefix(PREFIX): (owner, expires) for name, owner, expires in (await session.execute(
                select(Lease.name, Lease.owner, Lease.expires_at).where(Lease.name.like(f"{PREFIX}%")))).all()}
        for key in list(self.held):
            owner = owned.get(key, (None, None))[0]
            if owner != self.owner_id:  # lost it (we were too slow to renew, and another process took it)
                self.held.discard(key)
                await self.pump.stop(key)
            elif key not in active:  # asleep, archived or gone: nothing to pump
                await self.release(key)
        for key, row in active.items():
            if key in self.held:
                if not self.pump.running(key):
                    self.pump.start(row)
                continue
            owner, expires = owned.get(key, (None, None))
            if owner is None or expires is None or aware(expires) < now:
                if await self.claim(row):
                    log.info("workspace %s: took over its event pump (previous owner: %s)", key, owner or "none")

    async def run(self) -> None:
        while True:
            try:
                await self.supervise()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next pass tries again
                log.exception("pump lease supervision failed")
            await asyncio.sleep(self.interval)
