"""Named leases in the database, for singleton work across control-plane processes (principle 2).

    if await leases.acquire(sessions, "lifecycle-reaper", owner_id, ttl=15):
        ...   # this process holds it until `ttl` seconds from now; call again to renew

A holder renews by acquiring again before the lease expires; anyone takes it once it has expired. A process
that holds many of one kind (an event pump or a boot per workspace) keeps them in a `LeaseSet`, renewed together.
The take is one conditional UPDATE (or an INSERT that loses to a concurrent one), so two processes can
never both believe they hold it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas.store.models import Lease, utcnow


async def acquire(sessions: async_sessionmaker[AsyncSession], name: str, owner: str, ttl: float) -> bool:
    """Take or renew the lease `name` for `owner` for `ttl` seconds; whether `owner` now holds it."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl)
    async with sessions() as session:
        result = await session.execute(
            update(Lease).where(Lease.name == name, or_(Lease.owner == owner, Lease.expires_at < now))
            .values(owner=owner, expires_at=expires).execution_options(synchronize_session=False))
        await session.commit()
        if result.rowcount == 1:
            return True
        if await session.get(Lease, name) is not None:
            return False
        session.add(Lease(name=name, owner=owner, expires_at=expires))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return False
        return True


async def release(sessions: async_sessionmaker[AsyncSession], name: str, owner: str) -> None:
    async with sessions() as session:
        await session.execute(update(Lease).where(Lease.name == name, Lease.owner == owner)
                              .values(expires_at=utcnow() - timedelta(seconds=1))
                              .execution_options(synchronize_session=False))
        await session.commit()



class LeaseSet:
    """The leases `<prefix><key>` that one owner holds (a process's event pumps, its boots): taken one at a time,
    renewed and handed back all together, in one UPDATE."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], prefix: str, owner: str, ttl: float):
        self.sessions, self.prefix, self.owner, self.ttl = sessions, prefix, owner, ttl
        self.held: set[str] = set()

    def name(self, key: object) -> str:
        return f"{self.prefix}{key}"

    async def take(self, key: object) -> bool:
        """Take the lease of `key` (a workspace id; free, expired or ours); False: another owner holds it."""
        key = str(key)
        if not await acquire(self.sessions, self.name(key), self.owner, self.ttl):
            return False
        self.held.add(key)
        return True

    async def give_back(self, key: object) -> None:
        key = str(key)
        if key in self.held:
            self.held.discard(key)
            await release(self.sessions, self.name(key), self.owner)

    async def renew(self) -> None:
        """Renew every lease held, for `ttl` seconds (one the owner lost meanwhile stays lost)."""
        await self._expire_at(self.held, utcnow() + timedelta(seconds=self.ttl))

    async def release_all(self) -> None:
        """Hand every lease back at once (a graceful shutdown): others take them over without waiting."""
        held, self.held = set(self.held), set()
        await self._expire_at(held, utcnow() - timedelta(seconds=1))

    async def _expire_at(self, keys: Collection[str], expires: datetime) -> None:
        if not keys:
            return
        async with self.sessions() as session:
            await session.execute(update(Lease).where(Lease.name.in_([self.name(k) for k in keys]),
                                                      Lease.owner == self.owner)
                                  .values(expires_at=expires).execution_options(synchronize_session=False))
            await session.commit()
