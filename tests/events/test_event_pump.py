"""The control plane's durable event log: the pump pulls the real engine's journal (fake `claude`) into the
store, survives control-plane and engine restarts, and `follow` hands every event out exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from replicas.events import EventHub, EventPump, SubscriptionOverflow, append_events, follow, read_events
from replicas.services import auth
from replicas.store.models import Workspace
from tests.engine.conftest import read_events as engine_events


async def make_workspace(app) -> Workspace:
    async with app.state.sessions() as session:
        org = await auth.get_or_create_organization(session, f"org-{uuid.uuid4().hex[:8]}")
        workspace = Workspace(organization_id=org.id, name="events", status="active")
        session.add(workspace)
        await session.commit()
        return workspace


async def stored(app, workspace: Workspace) -> list[dict]:
    async with app.state.sessions() as session:
        return await read_events(session, workspace.id, 0, 100_000)


async def stored_seq(app, workspace: Workspace) -> int:
    async with app.state.sessions() as session:
        return (await session.get(Workspace, workspace.id, populate_existing=True)).last_event_seq


async def wait_stored(app, workspace: Workspace, until, timeout: float = 30) -> list[dict]:
    """The stored events, up to and including the first one `until` accepts, once it is stored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = await stored(app, workspace)
        for index, event in enumerate(events):
            if until(event):
                return events[:index + 1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"not stored within {timeout}s; stored: {[e['type'] for e in events]}")


def assert_contiguous(events: list[dict], first: int = 1) -> None:
    assert [e["seq"] for e in events] == list(range(first, first + len(events)))


def make_pump(app, engine, hub: EventHub | None = None) -> EventPump:
    return EventPump(app.state.sessions, lambda workspace: engine.client(timeout=None), hub or EventHub(),
                     backoff_initial=0.05, backoff_max=0.5)


async def send(engine, message: str) -> None:
    async with engine.client() as client:
        chat = (await client.get("/chats")).json()["chats"][0]
        assert (await client.post(f"/chats/{chat['id']}/messages", json={"message": message})).status_code == 202


async def journal(engine, upto: int) -> list[dict]:
    async with engine.client() as client:
        return await engine_events(client, 0, lambda e: e["seq"] >= upto)


def completed(event: dict) -> bool:
    return event["type"] == "chat.turn.completed"


async def test_a_turn_is_stored_in_order_with_no_gaps(app, make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    workspace = await make_workspace(app)
    pump = make_pump(app, engine)
    pump.start(workspace)
    try:
        await send(engine, "hello")
        events = await wait_stored(app, workspace, completed)
    finally:
        await pump.stop(workspace.id)
    assert_contiguous(events)
    assert events == await journal(engine, events[-1]["seq"])
    types = [e["type"] for e in events]
    assert types[0] == "engine.ready"
    assert types.index("chat.turn.accepted") < types.index("chat.turn.started") < types.index("chat.turn.completed")
    assert await stored_seq(app, workspace) >= events[-1]["seq"]
    async with app.state.sessions() as session:  # storing again is a no-op
        assert await append_events(session, workspace.id, events) == 0
    assert_contiguous(await stored(app, workspace))


async def test_a_new_pump_resumes_from_the_stored_seq_mid_turn(app, make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    workspace = await make_workspace(app)
    first = make_pump(app, engine)
    first.start(workspace)
    await send(engine, "sleep:1.5")
    before = await wait_stored(app, workspace, lambda e: e["type"] == "chat.turn.started")
    await first.stop(workspace.id)  # the control plane goes away mid-turn
    assert not any(completed(e) for e in await stored(app, workspace))

    second = make_pump(app, engine)  # a restarted control plane: new hub, new pump
    second.start(workspace)
    try:
        events = await wait_stored(app, workspace, completed)
    finally:
        await second.stop(workspace.id)
    assert events[:len(before)] == before
    assert_contiguous(events)
    assert events == await journal(engine, events[-1]["seq"])


async def test_the_pump_survives_an_engine_restart(app, make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    workspace = await make_workspace(app)
    pump = make_pump(app, engine)
    pump.start(workspace)
    try:
        await send(engine, "sleep:60")
        before = await wait_stored(app, workspace, lambda e: e["type"] == "chat.turn.delta")
        engine.kill()
        await asyncio.sleep(0.3)  # the pump sees the stream drop and retries against a dead socket
        assert pump.running(workspace.id)
        await engine.start()  # its journal continues the seq, and it ends the turn it lost
        events = await wait_stored(app, workspace, completed)
    finally:
        await pump.stop(workspace.id)
    assert events[:len(before)] == before
    assert_contiguous(events)
    assert events == await journal(engine, events[-1]["seq"])
    assert any(e["type"] == "error" and e["payload"].get("code") == "engine_restarted" for e in events)
    assert events[-1]["payload"]["isComplete"] is False


async def test_two_followers_get_every_event_after_n_exactly_once(app, make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    workspace = await make_workspace(app)
    hub = EventHub()
    pump = make_pump(app, engine, hub)
    pump.start(workspace)

    async def collect(after: int, turns: int) -> list[dict]:
        got: list[dict] = []
        async for event in follow(app.state.sessions, hub, workspace.id, after):
            got.append(event)
            turns -= completed(event)
            if turns == 0:
                return got
        raise AssertionError("follow ended")

    try:
        await send(engine, "hello")
        first_turn = await wait_stored(app, workspace, completed)
        after = first_turn[len(first_turn) // 2]["seq"]  # half replayed from the store, the rest live
        followers = [asyncio.create_task(collect(after, turns=2)) for _ in range(2)]
        await send(engine, "sleep:0.3 again")
        results = await asyncio.wait_for(asyncio.gather(*followers), 30)
    finally:
        await pump.stop(workspace.id)
    everything = await stored(app, workspace)
    for got in results:
        assert_contiguous(got, after + 1)
        assert got == everything[after:after + len(got)]
        assert sum(completed(e) for e in got) == 2
    assert hub.subscribers(workspace.id) == 0


def envelope(seq: int) -> dict:
    return {"seq": seq, "id": f"evt-{seq}", "ts": "2026-11-26T00:00:00Z", "type": "chat.turn.delta",
            "payload": {"n": seq}}


async def test_store_is_idempotent_and_a_slow_follower_recovers_from_overflow(app):
    workspace = await make_workspace(app)
    sessions = app.state.sessions
    async with sessions() as session:
        assert await append_events(session, workspace.id, [envelope(s) for s in (1, 2, 3)]) == 3
    async with sessions() as session:
        assert await append_events(session, workspace.id, [envelope(s) for s in (2, 3, 4)]) == 1
    assert_contiguous(await stored(app, workspace))
    assert await stored_seq(app, workspace) == 4

    hub = EventHub(maxsize=2)
    with hub.subscribe(workspace.id) as subscription:
        for seq in (5, 6, 7):
            await hub.publish(workspace.id, envelope(seq))
        assert hub.subscribers(workspace.id) == 0  # dropped on overflow
        assert [(await anext(subscription))["seq"] for _ in range(2)] == [5, 6]
        with pytest.raises(SubscriptionOverflow):
            await anext(subscription)

    received: list[int] = []

    async def slow() -> None:
        async for event in follow(sessions, hub, workspace.id, after=1):
            received.append(event["seq"])
            await asyncio.sleep(0.005)
            if event["seq"] == 60:
                return

    consumer = asyncio.create_task(slow())
    for seq in range(5, 61):  # store (commit) then publish, as the pump does
        async with sessions() as session:
            await append_events(session, workspace.id, [envelope(seq)])
        await hub.publish(workspace.id, envelope(seq))
        await asyncio.sleep(0)
    await asyncio.wait_for(consumer, 30)
    assert received == list(range(2, 61))
