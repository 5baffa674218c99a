"""A control-plane process that is shutting down (SIGTERM): its open streams end, so that their clients
reconnect, with Last-Event-ID, to another process behind the load balancer (ARCHITECTURE.md, principle 2).

    draining.begin()                               # `replicas serve`, on SIGTERM / SIGINT
    async for item in draining.until_drained(source):
        ...                                        # ends within CHECK_SECONDS of `begin`

Process-wide on purpose: one `replicas serve` is one process; tests that run apps in-process never drain.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")
CHECK_SECONDS = 0.5
_draining = False


def begin() -> None:
    global _draining
    _draining = True


def active() -> bool:
    return _draining


async def until_drained(source: AsyncIterator[T]) -> AsyncIterator[T]:
    """The items of `source` until it ends or the process drains. Each step runs as its own task, so that the
    wait can be cut short without cancelling it mid-step; on the way out it is cancelled (its clean-up runs)."""
    pending: asyncio.Future | None = None
    try:
        while not _draining:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({pending}, timeout=CHECK_SECONDS)
            if not done:
                continue
            step, pending = pending, None
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.add_done_callback(lambda task: task.cancelled() or task.exception())
            pending.cancel()
        elif hasattr(source, "aclose"):
            await source.aclose()
