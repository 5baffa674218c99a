"""Background loops of the control plane: a pass every `interval` seconds, kept alive through errors,
optionally only in the process holding a database lease (principle 2).

    task = asyncio.create_task(run_every("cron scheduler", 15, run_pass))
    task = asyncio.create_task(run_every("lifecycle reaper", 5, reap_once,
                                         lease=Lease(sessions, "lifecycle-reaper", owner_id)))
    await cancel(task)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas.services import leases

log = logging.getLogger("replicas.loops")


@dataclass(frozen=True)
class Lease:
    """Run a pass only while holding this lease (taken or renewed before each pass)."""

    sessions: async_sessionmaker[AsyncSession]
    name: str
    owner: str


async def run_every(name: str, interval: float, step: Callable[[], Awaitable[Any]], *,
                    lease: Lease | None = None) -> None:
    """Call `step` now and then every `interval` seconds until cancelled; a failing pass is logged."""
    while True:
        try:
            if lease is None or await leases.acquire(lease.sessions, lease.name, lease.owner,
                                                     ttl=max(15.0, 3 * interval)):
                await step()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the loop must keep running
            log.exception("%s pass failed", name)
        await asyncio.sleep(interval)


async def cancel(task: asyncio.Task | None) -> None:
    """Cancel a loop's task and wait for it to end."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
