"""In-process fan-out of stored events to live subscribers (the SSE endpoint, the webhook outbox).

`EventHub.publish` never blocks the pump: each subscriber has a bounded queue, and a subscriber that
falls `maxsize` events behind is dropped. It still receives what was queued before the overflow, then its
iterator raises `SubscriptionOverflow` (the marker): the subscriber must resubscribe and replay the rest
from the store, which holds every published event (the pump publishes only after it has committed).
`follow` does all of this for you: subscribe, replay from the store after `after`, then live events,
de-duplicated by seq, recovering from overflow by the same replay, so every event arrives exactly once
and in order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas.events.store import read_events

REPLAY_PAGE = 500


class SubscriptionOverflow(Exception):
    """The subscriber fell too far behind and was dropped: replay from the store, then resubscribe."""


class Subscription:
    """A live feed of one workspace's published events. Registered as soon as it is created, so that
    nothing published after `EventHub.subscribe` returns is missed; iterate it, and close it when done."""

    def __init__(self, hub: EventHub, key: str, maxsize: int):
        self.hub, self.key = hub, key
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.dropped = False

    def offer(self, event: dict[str, Any]) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # The consumer is not blocked in get() (the queue is full), so it will see `dropped` after draining.
            self.dropped = True
            self.hub._remove(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self.queue.empty() and self.dropped:
            raise SubscriptionOverflow(self.key)
        return await self.queue.get()

    def close(self) -> None:
        self.hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """Per-workspace publish/subscribe, in one process (one event loop)."""

    def __init__(self, maxsize: int = 1000):
        self.maxsize = maxsize
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, workspace_id: uuid.UUID | str) -> Subscription:
        """A subscription to the workspace's events from now on; an async iterator of envelopes."""
        subscription = Subscription(self, str(workspace_id), self.maxsize)
        self._subscribers[subscription.key].add(subscription)
        return subscription

    def subscribers(self, workspace_id: uuid.UUID | str) -> int:
        return len(self._subscribers.get(str(workspace_id), ()))

    async def publish(self, workspace_id: uuid.UUID | str, event: dict[str, Any]) -> None:
        """Hand a stored event to every subscriber of the workspace; never waits for them."""
        for subscription in list(self._subscribers.get(str(workspace_id), ())):
            subscription.offer(event)

    def _remove(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.key]


async def follow(sessions: async_sessionmaker[AsyncSession], hub: EventHub, workspace_id: uuid.UUID | str,
                 after: int = 0, *, poll_interval: float = 2.0,
                 heartbeat: float | None = None) -> AsyncIterator[dict[str, Any] | None]:
    """Every event of the workspace with seq > `after`, exactly once and in order: stored ones, then live.

    Subscribes first, then replays from the store, then takes live events, skipping seq <= the last one
    sent. An event the pump publishes is committed first, so it is either in the replay or in the queue.
    A live event whose seq jumps ahead, or an overflow, is bridged by replaying from the store. When no
    live event comes for `poll_interval` seconds the store is read again, so events that another control
    plane process stored (and published to its own subscribers) arrive too. With `heartbeat`, `None` is
    yielded after that many quiet seconds (the SSE endpoint turns it into a ping)."""
    last = after
    loop = asyncio.get_running_loop()

    async def replay() -> AsyncIterator[dict[str, Any]]:
        nonlocal last
        while True:
            async with sessions() as session:
                page = await read_events(session, workspace_id, last, REPLAY_PAGE)
            for event in page:
                if event["seq"] > last:
                    last = event["seq"]
                    yield event
            if len(page) < REPLAY_PAGE:
                return

    quiet_since = loop.time()
    while True:
        subscription = hub.subscribe(workspace_id)
        try:
            async for event in replay():
                quiet_since = loop.time()
                yield event
            while True:
                wait = poll_interval
                if heartbeat is not None:
                    wait = max(0.0, min(wait, quiet_since + heartbeat - loop.time()))
                try:
                    event = await asyncio.wait_for(subscription.__anext__(), wait)
                except TimeoutError:
                    async for missed in replay():
                        quiet_since = loop.time()
                        yield missed
                    if heartbeat is not None and loop.time() - quiet_since >= heartbeat:
                        quiet_since = loop.time()
                        yield None
                    continue
                except SubscriptionOverflow:
                    break
                if event["seq"] <= last:
                    continue
                if event["seq"] > last + 1:
                    async for missed in replay():
                        yield missed
                    if event["seq"] <= last:
                        continue
                last = event["seq"]
                quiet_since = loop.time()
                yield event
        finally:
            subscription.close()
