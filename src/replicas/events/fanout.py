"""In-process fan-out of stored events to live subscribers (the SSE endpoint, the status streams).

`EventHub.publish` never blocks the pump: each subscriber has a bounded queue, and a subscriber that
falls `maxsize` events behind is dropped. It still receives what was queued before the overflow, then its
iterator raises `SubscriptionOverflow` (the marker): the subscriber must resubscribe and replay the rest
from the store, which holds every published event (the pump publishes only after it has committed).

A workspace's events are `Envelope`s: one object per event, handed to every subscriber of the workspace, that
carries its SSE frame, encoded once for all of them. `follow` (and `follow_batches`, which the SSE endpoint
uses) does the rest: subscribe, replay from the store after `after`, then live events, de-duplicated by seq,
recovering from gaps and overflow by the same replay, so every event arrives exactly once and in order.

What a stream would otherwise do on its own, the hub does once for all of them, in one task per process that
runs while someone follows (`_tend`):
- it reads the store for the followed workspaces every `SWEEP_SECONDS` (one query for all of them, and one read
  of the new events of a workspace that another process stored without this one hearing of it, for all its
  subscribers), so that a lost notification only costs latency (events/notify.py);
- it nudges a stream that has been quiet for its heartbeat (the SSE endpoint sends `: ping`);
- it ends every stream when the process drains (draining.py), within `TICK_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas import draining
from replicas.events.envelope import Envelope
from replicas.events.store import read_events
from replicas.store.models import Workspace

log = logging.getLogger("replicas.events.fanout")
REPLAY_PAGE = 500
TICK_SECONDS = draining.CHECK_SECONDS
SWEEP_SECONDS = 2.0
_NUDGE = object()  # queued by the hub: no event, but time for a heartbeat, or the hub closed the subscription


class SubscriptionOverflow(Exception):
    """The subscriber fell too far behind and was dropped: replay from the store, then resubscribe."""


class SubscriptionClosed(Exception):
    """The hub ended the subscription: the process is draining."""


class Subscription:
    """A live feed of one key's published items (a workspace's envelopes). Registered as soon as it is created, so
    that nothing published after `EventHub.subscribe` returns is missed; iterate it (or take `batch`es), and close
    it when done.

    A subscription made with `heartbeat` (by `follow`) is tended by the hub: nudged when quiet, closed on drain,
    and, once `advance` says where its consumer stands, kept up with the store."""

    def __init__(self, hub: EventHub, key: str, maxsize: int, heartbeat: float | None = None):
        self.hub, self.key, self.heartbeat = hub, key, heartbeat
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.dropped = False
        self.closed = False
        self.seen = 0  # the highest seq queued here or replayed by the consumer: a seq at or below it is not queued
        self.live = False  # the consumer has replayed the store and takes live events now
        self.quiet_since = asyncio.get_running_loop().time() if heartbeat is not None else 0.0

    def offer(self, item: Any) -> None:
        if self.dropped or self.closed:
            return
        seq = item.get("seq") if isinstance(item, dict) else None
        if seq is not None:
            if seq <= self.seen:
                return  # already queued (the pump, the listener and the sweep may all hand it over) or replayed
            self.seen = seq
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # The consumer is not blocked in get() (the queue is full), so it will see `dropped` after draining.
            self.dropped = True
            self.hub._remove(self)

    def advance(self, seq: int) -> None:
        """The consumer has everything up to `seq` (from the store) and now takes live events."""
        self.seen = max(self.seen, seq)
        self.live = True

    def nudge(self) -> None:
        """Wake a consumer waiting in `batch` with nothing (a heartbeat is due, or the subscription closed)."""
        with contextlib.suppress(asyncio.QueueFull):  # a full queue: the consumer is not waiting
            self.queue.put_nowait(_NUDGE)

    async def batch(self) -> list[Any]:
        """Everything queued, waiting for at least one item; `[]` when the hub nudged a quiet subscription.
        Raises `SubscriptionOverflow` once what was queued before an overflow is taken, `SubscriptionClosed` once
        the hub closed it. No task and no timer per call: the hub's one task does the waking."""
        if self.closed:
            raise SubscriptionClosed(self.key)
        if self.queue.empty() and self.dropped:
            raise SubscriptionOverflow(self.key)
        items = [await self.queue.get()]
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        if self.closed:
            raise SubscriptionClosed(self.key)
        return [item for item in items if item is not _NUDGE]

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self.queue.empty() and self.dropped:
                raise SubscriptionOverflow(self.key)
            item = await self.queue.get()
            if item is not _NUDGE:
                return item
            if self.closed:
                raise SubscriptionClosed(self.key)

    def close(self) -> None:
        self.hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """Per-key publish/subscribe, in one process (one event loop); a workspace's key is its id."""

    def __init__(self, maxsize: int = 1000):
        self.maxsize = maxsize
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._stores: dict[str, async_sessionmaker[AsyncSession]] = {}  # followed workspace -> its store
        self._tender: asyncio.Task | None = None

    def subscribe(self, workspace_id: uuid.UUID | str, *, heartbeat: float | None = None,
                  store: async_sessionmaker[AsyncSession] | None = None) -> Subscription:
        """A subscription to the key's items from now on. With `heartbeat` it is tended (see Subscription); with
        `store` too, the hub sweeps that store for the workspace's events while it is followed."""
        subscription = Subscription(self, str(workspace_id), self.maxsize, heartbeat)
        self._subscribers[subscription.key].add(subscription)
        if heartbeat is not None:
            if store is not None:
                self._stores[subscription.key] = store
            if self._tender is None or self._tender.done():
                self._tender = asyncio.create_task(self._tend(), name="event-hub")
        return subscription

    def subscribers(self, workspace_id: uuid.UUID | str) -> int:
        return len(self._subscribers.get(str(workspace_id), ()))

    async def publish(self, workspace_id: uuid.UUID | str, event: Any) -> None:
        """Hand a stored event to every subscriber of the workspace; never waits for them."""
        for subscription in list(self._subscribers.get(str(workspace_id), ())):
            subscription.offer(event)

    def _remove(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.key]
                self._stores.pop(subscription.key, None)

    def _tended(self) -> list[Subscription]:
        return [s for subscribers in self._subscribers.values() for s in subscribers if s.heartbeat is not None]

    async def aclose(self) -> None:
        """Stop the hub's task (the app's shutdown); subscriptions made later start it again."""
        if self._tender is not None:
            self._tender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tender
            self._tender = None

    async def _tend(self) -> None:
        """While anyone follows: end the streams on drain, nudge the quiet ones, sweep the store."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + SWEEP_SECONDS
        while tended := self._tended():
            now = loop.time()
            for subscription in tended:
                if draining.active():
                    subscription.closed = True
                    subscription.close()
                    subscription.nudge()
                elif now - subscription.quiet_since >= subscription.heartbeat and subscription.queue.empty():
                    subscription.quiet_since = now
                    subscription.nudge()
            if now >= next_sweep:
                next_sweep = now + SWEEP_SECONDS
                try:
                    await self._sweep()
                except Exception:  # noqa: BLE001 - the next sweep tries again; live events still flow
                    log.warning("event hub: reading the store failed", exc_info=True)
            await asyncio.sleep(TICK_SECONDS)

    async def _sweep(self) -> None:
        """Publish what the store holds past every live follower of a workspace, read once for all of them."""
        floors: dict[async_sessionmaker[AsyncSession], dict[uuid.UUID, int]] = defaultdict(dict)
        for key, store in list(self._stores.items()):
            live = [s.seen for s in self._subscribers.get(key, ()) if s.live]
            if live:
                floors[store][uuid.UUID(key)] = min(live)
        for store, followed in floors.items():
            async with store() as session:
                stored = (await session.execute(select(Workspace.id, Workspace.last_event_seq)
                                                .where(Workspace.id.in_(list(followed))))).all()
                for workspace_id, last in stored:
                    after = followed[workspace_id]
                    while last > after:
                        page = await read_events(session, workspace_id, after, REPLAY_PAGE)
                        if not page:
                            break
                        for event in page:
                            await self.publish(workspace_id, event)
                        after = page[-1]["seq"]


async def follow_batches(sessions: async_sessionmaker[AsyncSession], hub: EventHub, workspace_id: uuid.UUID | str,
                         after: int = 0, *, heartbeat: float | None = None) -> AsyncIterator[list[Envelope] | None]:
    """Every event of the workspace with seq > `after`, exactly once and in order, in batches: stored ones, then
    live, each batch what arrived together (the SSE endpoint writes it at once). `None` after `heartbeat` quiet
    seconds (a ping). Ends when the process drains.

    Subscribes first, then replays from the store, then takes live events, skipping seq <= the last one sent. An
    event the pump publishes is committed first, so it is either in the replay or in the queue. A live event whose
    seq jumps ahead, or an overflow, is bridged by replaying from the store."""
    last = after
    key = str(workspace_id)
    tick = heartbeat if heartbeat is not None else float("inf")

    async def replay() -> AsyncIterator[list[Envelope]]:
        nonlocal last
        while True:
            async with sessions() as session:
                page = [event for event in await read_events(session, key, last, REPLAY_PAGE) if event["seq"] > last]
            if page:
                last = page[-1]["seq"]
                yield page
            if len(page) < REPLAY_PAGE:
                return

    while True:
        subscription = hub.subscribe(key, heartbeat=tick, store=sessions)
        try:
            async for page in replay():
                yield page
            subscription.advance(last)
            while True:
                try:
                    items = await subscription.batch()
                except SubscriptionOverflow:
                    break
                except SubscriptionClosed:
                    return
                if not items:
                    if heartbeat is not None:
                        yield None
                    continue
                fresh: list[Envelope] = []
                for event in items:
                    seq = event["seq"]
                    if seq <= last:
                        continue
                    if seq > last + 1:  # a gap: what is missing is in the store
                        if fresh:
                            yield fresh
                            fresh = []
                        async for page in replay():
                            yield page
                        if seq <= last:
                            continue
                    fresh.append(event)
                    last = seq
                if fresh:
                    subscription.quiet_since = asyncio.get_running_loop().time()
                    yield fresh
        finally:
            subscription.close()


async def follow(sessions: async_sessionmaker[AsyncSession], hub: EventHub, workspace_id: uuid.UUID | str,
                 after: int = 0, *, heartbeat: float | None = None) -> AsyncIterator[Envelope | None]:
    """`follow_batches`, one event at a time."""
    async for batch in follow_batches(sessions, hub, workspace_id, after, heartbeat=heartbeat):
        if batch is None:
            yield None
        else:
            for event in batch:
                yield event
