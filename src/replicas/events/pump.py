"""The event pump: pulls each workspace engine's journal into the store, then fans it out.

For the events of the engine's `GET /events?after=<stored seq>` SSE stream it stores them (commit; what arrived
while the last commit ran goes in one transaction) THEN publishes them to the `EventHub`, so a subscriber never
sees an event the store does not have. When the stream drops (engine restart, sleep, network) it reconnects
with exponential backoff and resumes from the stored seq, so a control-plane restart, a dropped connection or an
engine restart loses nothing and stores nothing twice. It stops on cancellation (`stop`) or when the workspace
row is deleted.

Each connection reads the workspace row again: where its engine is may have changed since the pump started
(a wake on Kubernetes is a new pod at a new IP). `start` on a running pump makes it reconnect now rather than
after its backoff (a workspace that just woke up).

    pump = EventPump(sessions, connect_via(manager), hub)
    pump.start(workspace)          # one task per workspace; idempotent (a running one reconnects at once)
    await pump.stop(workspace.id)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas import metrics
from replicas.events.fanout import EventHub
from replicas.events.store import OnStored, WorkspaceGone, last_seq, store_events
from replicas.store.models import Workspace

log = logging.getLogger("replicas.events.pump")

Connect = Callable[[Workspace], AbstractAsyncContextManager[httpx.AsyncClient]]


def connect_via(manager: Any) -> Connect:
    """Adapt a `WorkspaceManager` to the pump's `connect`: its engine client, with no overall timeout."""
    return lambda workspace: manager.engine(workspace, timeout=None)


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The envelopes of an SSE response (`data:` lines hold the JSON envelope; comments are skipped)."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield json.loads("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


STORE_BATCH = 200  # events stored in one transaction at most
_ENDED = object()  # the reader's last item: the engine's stream ended (or broke: the reader task says how)


async def _read_into(events: AsyncIterator[dict[str, Any]], arrived: asyncio.Queue) -> None:
    try:
        async for event in events:
            arrived.put_nowait(event)
    finally:
        arrived.put_nowait(_ENDED)


def _observe_delay(ts: str | None) -> None:
    """Engine timestamp -> stored, into `replicas_event_store_delay_seconds` (clocks of one machine, or NTP's)."""
    try:
        stamped = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return
    metrics.STORE_DELAY.observe(max(0.0, (datetime.now(UTC) - stamped).total_seconds()))


class EventPump:
    """One task per workspace that keeps the store in step with the engine's journal."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], connect: Connect, hub: EventHub, *,
                 backoff_initial: float = 0.2, backoff_max: float = 10.0, read_timeout: float = 60.0,
                 on_stored: OnStored | None = None):
        # The engine pings every 15 s, so `read_timeout` only fires on a dead connection.
        self.sessions, self.connect, self.hub = sessions, connect, hub
        self.on_stored = on_stored
        self.backoff_initial, self.backoff_max, self.read_timeout = backoff_initial, backoff_max, read_timeout
        self.tasks: dict[str, asyncio.Task] = {}
        self._nudges: dict[str, asyncio.Event] = {}  # set: the task's next reconnect is now

    @classmethod
    def for_manager(cls, sessions: async_sessionmaker[AsyncSession], manager: Any, hub: EventHub,
                    **options: Any) -> EventPump:
        return cls(sessions, connect_via(manager), hub, **options)

    async def stored_seq(self, workspace_id: uuid.UUID) -> int:
        async with self.sessions() as session:
            return await last_seq(session, workspace_id)

    async def pull_once(self, workspace: Workspace) -> None:
        """One connection: stream from the stored seq, store and publish each event, until it drops."""
        after = await self.stored_seq(workspace.id)
        timeout = httpx.Timeout(10.0, read=self.read_timeout)
        async with self.connect(workspace) as client, client.stream(
                "GET", "/events", params={"after": after}, timeout=timeout) as response:
            if response.status_code != 200:
                await response.aread()
                raise httpx.HTTPStatusError(f"engine /events answered {response.status_code}",
                                            request=response.request, response=response)
            # A reader task takes the engine's events as they come; this loop stores what has arrived meanwhile in
            # one transaction. A burst (an agent's deltas) then costs one commit, not one per event, and a later
            # event does not wait behind the commits of each earlier one.
            arrived: asyncio.Queue = asyncio.Queue()
            reader = asyncio.create_task(_read_into(sse_events(response), arrived), name=f"event-reader-{workspace.id}")
            try:
                while True:
                    batch = [await arrived.get()]
                    while not arrived.empty() and len(batch) < STORE_BATCH:
                        batch.append(arrived.get_nowait())
                    ended = batch[-1] is _ENDED
                    batch = [event for event in batch if event is not _ENDED]
                    if batch:
                        # Shielded: a pump stopped (cancelled) mid-transaction would leave its connection inside a
                        # write transaction (SQLite's write lock held until the connection is collected). The store
                        # finishes, briefly, on its own; the events it holds are stored, not lost.
                        stored = await asyncio.shield(asyncio.ensure_future(self._store(workspace.id, batch)))
                        for item in stored:
                            _observe_delay(item.get("ts"))
                            await self.hub.publish(workspace.id, item)
                    if ended:
                        await reader  # the stream's end, or what broke it
                        return
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def _store(self, workspace_id: uuid.UUID, events: list[dict]) -> list[dict]:
        async with self.sessions() as session:
            return await store_events(session, workspace_id, events, self.on_stored)

    async def _reload(self, workspace: Workspace) -> Workspace | None:
        async with self.sessions() as session:
            return await session.get(Workspace, workspace.id)

    async def run(self, workspace: Workspace, nudge: asyncio.Event | None = None) -> None:
        """Pull until cancelled (or the workspace is deleted), reconnecting with backoff (cut short by `nudge`)."""
        delay = self.backoff_initial
        while True:
            try:
                current = await self._reload(workspace)
                if current is None:
                    raise WorkspaceGone(workspace.id)
                workspace = current
                before = await self.stored_seq(workspace.id)
                await self.pull_once(workspace)
                reason = "stream ended"
            except WorkspaceGone:
                log.info("workspace %s is gone; its event pump stops", workspace.id)
                return
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - keep pumping; the store is the source of truth
                log.exception("workspace %s: event pump error", workspace.id)
                reason = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                if await self.stored_seq(workspace.id) > before:
                    delay = self.backoff_initial  # it made progress: reconnect promptly
            log.debug("workspace %s: event stream dropped (%s); retrying in %.1fs", workspace.id, reason, delay)
            if nudge is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(nudge.wait(), delay)
                if nudge.is_set():
                    nudge.clear()
                    delay = self.backoff_initial
            delay = min(delay * 2, self.backoff_max)

    def start(self, workspace: Workspace) -> asyncio.Task:
        """Start pumping the workspace's events; an existing pump reconnects now if it is waiting to."""
        key = str(workspace.id)
        task = self.tasks.get(key)
        if task is None or task.done():
            self._nudges[key] = asyncio.Event()
            task = asyncio.create_task(self.run(workspace, self._nudges[key]), name=f"event-pump-{key}")
            self.tasks[key] = task
        else:
            self._nudges[key].set()
        return task

    def running(self, workspace_id: uuid.UUID | str) -> bool:
        task = self.tasks.get(str(workspace_id))
        return task is not None and not task.done()

    async def stop(self, workspace_id: uuid.UUID | str) -> None:
        self._nudges.pop(str(workspace_id), None)
        task = self.tasks.pop(str(workspace_id), None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def stop_all(self) -> None:
        for key in list(self.tasks):
            await self.stop(key)
