"""The event pump follows a workspace's engine when it moves: each connection reads where the engine is from the
store, and `start` on a running pump makes it reconnect at once. (A wake on Kubernetes is a new pod at a new IP;
a pump started before it, e.g. taken over while the workspace was being put to sleep, must not keep knocking at
the old address.)"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest
from sqlalchemy import update

from replicas.events import EventHub, EventPump
from replicas.store.models import Workspace
from tests.events.test_event_pump import make_workspace, stored

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_a_running_pump_reconnects_at_once_to_where_the_engine_now_is(app, make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    workspace = await make_workspace(app)
    async with app.state.sessions() as session:  # not `active`: the app's own pumps leave it to this one
        await session.execute(update(Workspace).where(Workspace.id == workspace.id)
                              .values(status="sleeping", runtime_state={"engine": "old-pod"}))
        await session.commit()

    attempts: list[str] = []

    def connect(row: Workspace):
        attempts.append((row.runtime_state or {}).get("engine"))
        if (row.runtime_state or {}).get("engine") == "new-pod":
            return engine.client(timeout=None)
        # The old pod's address: nothing listens there any more.
        return contextlib.nullcontext(httpx.AsyncClient(base_url="http://127.0.0.1:9", trust_env=False))

    pump = EventPump(app.state.sessions, connect, EventHub(), backoff_initial=30, backoff_max=60)
    pump.start(workspace)  # with the row as it was: the old pod
    try:
        while not attempts:  # its first connection, to the old pod, fails; then it waits 30 s to try again
            await _pause()
        await asyncio.sleep(0.5)
        assert attempts == ["old-pod"] and await stored(app, workspace) == []

        async with app.state.sessions() as session:  # the wake: a new pod, recorded in the row
            await session.execute(update(Workspace).where(Workspace.id == workspace.id)
                                  .values(runtime_state={"engine": "new-pod"}))
            await session.commit()
        started = time.monotonic()
        pump.start(workspace)  # what a wake's claim does; the stale row it is given does not matter
        while not await stored(app, workspace):
            assert time.monotonic() - started < 10, "the pump waited out its 30 s backoff"
            await _pause()
    finally:
        await pump.stop(workspace.id)


async def _pause() -> None:
    await asyncio.sleep(0.05)
