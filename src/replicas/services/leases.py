"""Named leases in the database, for singleton work across control-plane processes (principle 2).

    if await leases.acquire(sessions, "lifecycle-reaper", owner_id, ttl=15):
        ...   # this process holds it until `ttl` seconds from now; call again to renew

A holder renews by acquiring again before the lease expires; anyone takes it once it has expired.
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


async def renew_many(sessions: async_sessionmaker[AsyncSession], names: Collection[str], owner: str,
                     ttl: float) -> None:
    """Renew, in one UPDATE, those of the leases `names` that `owner` still holds, for `ttl` seconds."""
    await _expire_at(sessions, names, owner, utcnow() + timedelta(seconds=ttl))


async def release_many(sessions: async_sessionmaker[AsyncSession], names: Collection[str], owner: str) -> None:
    """Hand back, in one UPDATE, those of the leases `names` that `owner` holds (a graceful shutdown)."""
    await _expire_at(sessions, names, owner, utcnow() - timedelta(seconds=1))


async def _expire_at(sessions: async_sessionmaker[AsyncSession], names: Collection[str], owner: str,
                     expires: datetime) -> None:
    if not names:
        return
    async with sessions() as session:
        await session.execute(update(Lease).where(Lease.name.in_(list(names)), Lease.owner == owner)
                              .values(expires_at=expires).execution_options(synchronize_session=False))
        await session.commit()
