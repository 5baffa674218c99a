"""The SDK driving replicas on a live server (SQLite and PostgreSQL), with the real Claude Code behind the
scripted model: every replica method, page-by-page listing, the sync and async event streams, and a stream
that survives its connection being cut (it resumes after the last event it saw, and yields each once)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from replicas.client import AsyncReplicas, ConflictError, Event, NotFoundError, Replicas
from replicas.testing import ShellCall, Text
from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures
from tests.client.tcp_proxy import TcpProxy
from tests.conftest import git
from tests.live_server import LiveServer, destroy_workspaces, replica_settings, settle, shop_environment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory, agent_tools) -> Iterator[LiveServer]:  # noqa: F811
    with LiveServer(replica_settings(request, tmp_path_factory, agent_tools)) as live:
        yield live


@pytest.fixture
def shop(server, tmp_path, model) -> Iterator[tuple[Replicas, str]]:  # noqa: F811
    """A client of a new organization with the `shop` environment, and that environment's id."""
    origin = tmp_path / "shop"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "README.md").write_text("# shop\n")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "initial")
    key = server.new_org_key()
    environment = shop_environment(server, key, origin, model)
    with Replicas(server.url, api_key=key) as client:
        yield client, environment["id"]
    destroy_workspaces(server)


def test_replica_methods(shop, model):  # noqa: F811
    client, env_id = shop
    model.add_turn(Text("One."))
    model.add_turn(Text("Two."))
    first = client.replicas.create(name="first", message="Hello", environment_id=env_id)
    second = client.replicas.create(name="second", message="Hello too", environment_id=env_id, coding_agent="claude")
    assert first.status == "preparing" and first.repositories[0].name == "acme/shop"
    settle(client, first.id, 1)
    settle(client, second.id, 1)

    page = client.replicas.list(limit=1)
    assert page.total == 2 and page.total_pages == 2 and [r.id for r in page.items] == [second.id]
    assert [r.id for r in client.replicas.iterate(limit=1)] == [second.id, first.id]
    assert [r.id for r in client.replicas.iterate(status="active")] == [second.id, first.id]

    details = client.replicas.get(first.id, include=["environment"])
    assert details.status == "active" and details.environment["coding_agents"]["claude"]["available"]
    assert details.repository_statuses[0].branch == "main" and len(details.chats) == 1

    model.add_turn(ShellCall("printf 'x\\n' > x.txt"), Text("Wrote x."))
    sent = client.replicas.send(first.id, "Write x", chat_id=details.chats[0].id)
    assert sent.status == "sent" and sent.chat_id == details.chats[0].id and sent.message_id
    settle(client, first.id, 2)
    history = client.replicas.history(first.id, limit=500)
    assert history.total == len(history.events) and not history.has_more
    assert any(e.type == "claude-assistant" and "Wrote x." in str(e.payload) for e in history.events)
    assert client.replicas.history(first.id, limit=2, offset=1).events == history.events[-3:-1]
    statuses = client.replicas.diff(first.id)
    assert statuses[0].git_diff.added == 1 and "x.txt" in statuses[0].git_diff.full_diff

    chat = client.replicas.create_chat(first.id, provider="claude", title="Side")
    assert chat.title == "Side" and {c.id for c in client.replicas.chats(first.id)} >= {chat.id}
    assert client.replicas.delete_chat(first.id, chat.id) is True
    hooks = client.replicas.hooks(first.id)
    assert hooks.warm_hooks.logs == [] and isinstance(hooks.start_hooks.logs, list)

    assert client.replicas.sleep(first.id) is True
    assert client.replicas.history(first.id, limit=500).events == history.events  # asleep, from the store
    woken = client.replicas.wake(first.id)
    assert woken.waking is True
    assert client.replicas.archive(second.id) is True
    model.add_turn(Text("Three."))
    third = client.replicas.create(name="third", message="Hi", environment_id=env_id)
    with pytest.raises(ConflictError):  # still preparing: it cannot be put to sleep
        client.replicas.sleep(third.id)
    for replica in (first, second, third):
        assert client.replicas.delete(replica.id) is True
    with pytest.raises(NotFoundError):
        client.replicas.get(first.id)


def test_events_from_the_first_and_live(shop, model):  # noqa: F811
    client, env_id = shop
    model.add_turn(ShellCall("true"), Text("Done."))
    replica = client.replicas.create(name="evented", message="Go", environment_id=env_id)
    events: list[Event] = []
    with client.replicas.events(replica.id, after=0) as stream:
        for event in stream:
            events.append(event)
            if event.type == "chat.turn.completed":
                break
    types = [e.type for e in events]
    assert "chat.turn.started" in types and types[-1] == "chat.turn.completed"
    assert events[-1].payload["isComplete"] is True
    sequenced = [e.seq for e in events if e.seq is not None]
    assert sequenced == sorted(set(sequenced)) and stream.last_event_id == sequenced[-1]
    assert any("Done." in str(e.payload) for e in events if e.type == "chat.turn.delta")

    # Connected first, then sent: every event of the answer is on the stream.
    model.add_turn(Text("Again."))
    with client.replicas.events(replica.id, snapshot=False) as stream:
        sent = client.replicas.send(replica.id, "Again")
        live = []
        for event in stream:
            live.append(event)
            if event.type == "chat.turn.completed":
                break
    assert all(e.seq is not None and e.seq > sequenced[-1] for e in live)
    assert [e.payload.get("messageId") for e in live if e.type == "chat.turn.started"] == [sent.message_id]


def test_an_event_stream_cut_mid_way_resumes_after_the_last_event_seen(server, shop, model):  # noqa: F811
    client, env_id = shop
    model.add_turn(ShellCall("true"), Text("First turn."))
    replica = client.replicas.create(name="flaky", message="Start", environment_id=env_id)
    settle(client, replica.id, 1)

    seen: list[Event] = []
    last_seen: dict[int, int | None] = {}  # connection number -> the last event seen on it
    completed = 0
    with TcpProxy(server.port) as proxy, Replicas(proxy.url, api_key=client.credentials.api_key) as flaky:
        with flaky.replicas.events(replica.id, after=0, snapshot=False) as stream:
            for event in stream:
                seen.append(event)
                last_seen[stream.cursor.connections] = event.seq
                if len(seen) == 4:
                    proxy.cut()  # while replaying what is stored (what was already received still comes)
                if event.type == "chat.turn.completed":
                    completed += 1
                    if completed == 2:
                        break
                    model.add_turn(ShellCall("sleep 1"), Text("Second turn."))
                    client.replicas.send(replica.id, "Continue")
                elif completed == 1 and event.type == "chat.turn.delta" and stream.cursor.connections == 2:
                    proxy.cut()  # while the agent works
        assert stream.cursor.connections == 3
        asked = [re.search(rb"last-event-id: (\d+)", request, re.I) for request in proxy.requests]
    # `after=0` first, then each reconnection asked for what follows the last event seen before it.
    assert [int(match.group(1)) for match in asked] == [0, last_seen[1], last_seen[2]]

    # Each event once, none missing: the same as one uninterrupted replay.
    replay: list[Event] = []
    with client.replicas.events(replica.id, after=0, snapshot=False) as whole:
        for event in whole:
            replay.append(event)
            if event.seq == seen[-1].seq:
                break
    assert [(e.seq, e.type) for e in seen] == [(e.seq, e.type) for e in replay]
    assert any("Second turn." in str(e.payload) for e in seen)


def test_the_async_client_follows_a_replica(server, shop, model):  # noqa: F811
    client, env_id = shop
    model.add_turn(Text("Async answer."))

    async def scenario() -> list[Event]:
        async with AsyncReplicas(server.url, api_key=client.credentials.api_key) as aclient:
            replica = await aclient.replicas.create(name="async", message="Hi", environment_id=env_id)
            events = []
            async with aclient.replicas.events(replica.id, after=0) as stream:
                async for event in stream:
                    events.append(event)
                    if event.type == "chat.turn.completed":
                        break
            assert [r.id async for r in aclient.replicas.iterate()] == [replica.id]
            assert (await aclient.replicas.get(replica.id)).name == "async"
            return events

    events = asyncio.run(scenario())
    assert any("Async answer." in str(e.payload) for e in events)
