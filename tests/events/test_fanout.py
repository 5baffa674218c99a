"""The SSE fan-out of one process: many streams of one workspace share each event's frame, what another process
stored reaches all of them with one read of the store (not one per stream), a quiet stream gets its ping, and a
draining process ends every stream at once. Real store (SQLite and PostgreSQL), real hub, no engine."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import event

from replicas import draining
from replicas.events import EventHub, append_events, follow_batches, read_events
from replicas.events.envelope import frame_of
from replicas.events.fanout import SWEEP_SECONDS, TICK_SECONDS
from tests.events.test_event_pump import envelope, make_workspace

STREAMS = 20


async def store_and_publish(app, hub: EventHub, workspace, seqs) -> None:
    """What the pump does: store (commit), then publish what was stored."""
    async with app.state.sessions() as session:
        await append_events(session, workspace.id, [envelope(seq) for seq in seqs])
    async with app.state.sessions() as session:
        for stored in await read_events(session, workspace.id, min(seqs) - 1, len(seqs)):
            await hub.publish(workspace.id, stored)


async def collect(app, hub: EventHub, workspace, until_seq: int, frames: list, heartbeat: float | None = None):
    async for batch in follow_batches(app.state.sessions, hub, workspace.id, 0, heartbeat=heartbeat):
        if batch is None:
            frames.append(None)
            continue
        frames.extend(frame_of(item) for item in batch)
        if batch[-1]["seq"] >= until_seq:
            return


def event_reads(app) -> list[str]:
    """Every statement that reads `workspace_events`, from now on (a list that grows)."""
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT") and "FROM workspace_events" in statement:
            statements.append(statement)

    event.listen(app.state.engine.sync_engine, "before_cursor_execute", seen)
    return statements


async def test_every_stream_of_a_workspace_sends_the_same_frame_once_in_order(app):
    workspace = await make_workspace(app)
    hub = EventHub()
    frames: list[list] = [[] for _ in range(STREAMS)]
    streams = [asyncio.create_task(collect(app, hub, workspace, 30, frames[i])) for i in range(STREAMS)]
    await store_and_publish(app, hub, workspace, range(1, 6))  # stored before or while the streams replay
    while any(len(got) < 5 for got in frames):  # each has replayed: what follows comes from the hub alone
        await asyncio.sleep(0.01)
    for first in range(6, 31, 5):
        await store_and_publish(app, hub, workspace, range(first, first + 5))
    await asyncio.wait_for(asyncio.gather(*streams), 20)

    ids = [[int(frame.split(b"\n", 1)[0].removeprefix(b"id: ")) for frame in got] for got in frames]
    assert all(seqs == list(range(1, 31)) for seqs in ids), ids
    assert all(got == frames[0] for got in frames)
    # The live events (6..30) went to every stream as one object each: encoded once, not once per stream.
    for index in range(5, 30):
        assert len({id(got[index]) for got in frames}) == 1
    assert hub.subscribers(workspace.id) == 0


async def test_events_stored_elsewhere_reach_every_stream_with_one_read_of_the_store(app):
    """Another process stored them and this one was not told (a lost notification): the hub's sweep reads them
    once for all the streams. Before, each stream read the store every 2 s on its own."""
    workspace = await make_workspace(app)
    hub = EventHub()
    frames: list[list] = [[] for _ in range(STREAMS)]
    streams = [asyncio.create_task(collect(app, hub, workspace, 3, frames[i])) for i in range(STREAMS)]
    while hub.subscribers(workspace.id) < STREAMS:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # every stream has replayed (nothing) and waits on the hub
    reads = event_reads(app)
    async with app.state.sessions() as session:
        await append_events(session, workspace.id, [envelope(seq) for seq in (1, 2, 3)])  # no publish
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*streams), SWEEP_SECONDS + 5)
    assert time.monotonic() - started < SWEEP_SECONDS + 2 * TICK_SECONDS + 1
    assert all(len(got) == 3 for got in frames)
    assert len(reads) == 1, reads


async def test_a_quiet_stream_gets_its_ping_and_a_drain_ends_every_stream(app):
    workspace = await make_workspace(app)
    hub = EventHub()
    frames: list[list] = [[] for _ in range(STREAMS)]
    streams = [asyncio.create_task(collect(app, hub, workspace, 10**9, frames[i], heartbeat=0.5))
               for i in range(STREAMS)]
    await asyncio.sleep(1.5)
    assert all(None in got for got in frames)  # `: ping`, with no timer of their own
    draining.begin()
    try:
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*streams), 5)
        assert time.monotonic() - started < 1.5  # the hub's next tick (draining.CHECK_SECONDS), on a busy machine
    finally:
        draining._draining = False  # noqa: SLF001 - the process-wide flag; no other test may see it set
    assert hub.subscribers(workspace.id) == 0


@pytest.fixture(autouse=True)
def _never_left_draining():
    yield
    draining._draining = False  # noqa: SLF001
