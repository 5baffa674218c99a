"""Live events across control-plane processes: PostgreSQL `LISTEN/NOTIFY` (ARCHITECTURE.md, principle 2).

The process that pumps a workspace stores each event and, in the same transaction, sends a notification
`<workspace id>:<seq>` on the `replicas_events` channel (`announce`). PostgreSQL delivers it after the
commit, to every listening process. Each process's `EventListener` then reads the new events of that workspace
from the store, once for all its subscribers, and publishes them to its own `EventHub`; `follow` (fanout.py)
keeps each stream exactly once and in order (duplicates by seq are skipped, gaps are replayed from the store),
and still reads the store after a quiet spell, so a lost notification only costs latency. A notification
carries no body: the store is the one source of truth. SQLite has one process (see `replicas serve`), so
there is nothing to notify and `announce` is a no-op there.

Replica status changes take the same path on their own channel, `replicas_status`, whose payload is an
organization id (services/replica_status_feed.py sends them): the listener publishes each on the hub under
`status_key(org)`, for that organization's status streams.

    listener = EventListener(database_url, sessions, hub, local=pump.running)
    await listener.start()
    ...
    await listener.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas.events.fanout import EventHub
from replicas.events.store import read_events
from replicas.store.notify_on_commit import notify_on_commit

log = logging.getLogger("replicas.events.notify")
CHANNEL = "replicas_events"
STATUS_CHANNEL = "replicas_status"
RECONNECT_SECONDS = 1.0


def announce(session: AsyncSession, workspace_id: uuid.UUID | str, seq: int) -> None:
    """Notify every process, once the caller's transaction commits, that the workspace's events up to `seq` are
    stored (sent with the transaction's other notifications, store/notify_on_commit.py). A no-op except on
    PostgreSQL."""
    notify_on_commit(session, CHANNEL, f"{workspace_id}:{seq}")


def status_key(organization: str) -> str:
    """The hub key of an organization's replica status changes ("*": an organization not known)."""
    return f"status:{organization}"


def asyncpg_dsn(database_url: str) -> str:
    """The plain `postgresql://` DSN asyncpg takes, from the SQLAlchemy URL of the settings."""
    scheme, _, rest = database_url.partition("://")
    return f"postgresql://{rest}" if scheme.startswith("postgres") else database_url


class EventListener:
    """Turns notifications into published events for this process's subscribers (see the module docstring).
    `local(workspace_id)` says whether this process pumps the workspace itself (its events are published here
    already)."""

    def __init__(self, database_url: str, sessions: async_sessionmaker[AsyncSession], hub: EventHub,
                 local: Callable[[str], bool] = lambda _key: False):
        self.dsn, self.sessions, self.hub, self.local = asyncpg_dsn(database_url), sessions, hub, local
        self._task: asyncio.Task | None = None
        self._wanted: dict[str, int] = {}  # workspace id -> highest seq notified
        self._published: dict[str, int] = {}  # workspace id -> highest seq published here by the listener
        self._workers: dict[str, asyncio.Task] = {}
        self._status_tasks: set[asyncio.Task] = set()
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="event-listener")

    async def stop(self) -> None:
        for task in [*self._workers.values(), *([self._task] if self._task else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _listen(self) -> None:
        import asyncpg

        while True:
            connection = None
            try:
                connection = await asyncpg.connect(self.dsn)
                await connection.add_listener(CHANNEL, self._notified)
                await connection.add_listener(STATUS_CHANNEL, self._status_notified)
                self.connected.set()
                while not connection.is_closed():
                    await asyncio.sleep(RECONNECT_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect; `follow` reads the store meanwhile
                log.warning("event listener: %s; reconnecting", exc)
            finally:
                self.connected.clear()
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()
            await asyncio.sleep(RECONNECT_SECONDS)

    def _notified(self, _connection, _pid, _channel, payload: str) -> None:
        key, _, seq = payload.rpartition(":")
        if not key or not seq.isdigit() or not self.hub.subscribers(key) or self.local(key):
            return
        self._wanted[key] = max(self._wanted.get(key, 0), int(seq))
        self._published.setdefault(key, int(seq) - 1)  # from the first notified event on
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.create_task(self._publish(key), name=f"notified-{key}")

    def _status_notified(self, _connection, _pid, _channel, organization: str) -> None:
        key = status_key(organization)
        if self.hub.subscribers(key):
            task = asyncio.create_task(self.hub.publish(key, {"organization": organization}), name=f"notified-{key}")
            self._status_tasks.add(task)
            task.add_done_callback(self._status_tasks.discard)

    async def _publish(self, key: str) -> None:
        """Read what was notified from the store, once, and publish it; until nothing more is wanted."""
        try:
            while self._wanted.get(key, 0) > self._published.get(key, 0):
                async with self.sessions() as session:
                    events = await read_events(session, key, self._published[key], 500)
                if not events:
                    break
                for event in events:
                    await self.hub.publish(key, event)
                self._published[key] = events[-1]["seq"]
        except Exception:  # noqa: BLE001 - subscribers recover from the store
            log.exception("event listener: publishing workspace %s failed", key)
        finally:
            if not self.hub.subscribers(key):
                self._published.pop(key, None)
                self._wanted.pop(key, None)
