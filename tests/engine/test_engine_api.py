"""The engine's HTTP API, with the real engine as a subprocess on a unix socket and a fake `claude`."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from tests.contract import validate_schema
from tests.engine.conftest import read_events

ENVELOPE_KEYS = {"seq", "id", "ts", "type", "payload"}


def contract_event(event: dict) -> dict:
    return {key: value for key, value in event.items() if key != "seq"}


async def default_chat(client) -> dict:
    chats = (await client.get("/chats")).json()["chats"]
    assert len(chats) == 1
    return chats[0]


def agent_log(tmp_path) -> list[dict]:
    path = tmp_path / "agent.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_requests_without_the_right_secret_get_401(make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client(secret=None) as anonymous, engine.client(secret="wrong") as wrong:
        assert (await anonymous.get("/health")).status_code == 401
        assert (await wrong.get("/chats")).status_code == 401
        assert (await wrong.get("/events")).status_code == 401
    async with engine.client() as client:
        assert (await client.get("/health")).json()["status"] == "ok"
        status = (await client.get("/status")).json()
        validate_schema(status, "EngineStatusSnapshot")
        assert status["chatsTotal"] == 1 and status["reposTotal"] == 1


async def test_chats_are_created_listed_read_and_deleted(make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools), REPLICAS_DEFAULT_PROVIDER="codex").start()
    async with engine.client() as client:
        default = await default_chat(client)
        assert default["provider"] == "codex"
        created = await client.post("/chats", json={"provider": "claude", "title": "Fix it", "id": "chat-1"})
        assert created.status_code == 201
        chat = created.json()
        validate_schema(chat, "EngineChatSummary")
        assert (chat["id"], chat["provider"], chat["title"], chat["processing"]) == ("chat-1", "claude", "Fix it",
                                                                                    False)
        assert (await client.get("/chats/chat-1")).json() == chat
        assert {c["id"] for c in (await client.get("/chats")).json()["chats"]} == {default["id"], "chat-1"}
        assert (await client.post("/chats", json={"provider": "claude", "id": "chat-1"})).status_code == 409
        assert (await client.post("/chats", json={"provider": "nope"})).status_code == 400
        assert (await client.delete("/chats/chat-1")).status_code == 204
        assert (await client.get("/chats/chat-1")).status_code == 404
        events = await read_events(client, 0, lambda e: e["type"] == "chat.deleted")
        types = [e["type"] for e in events]
        assert types[0] == "engine.ready"
        assert "repo.discovered" in types  # announced once the start's `git diff` is done, in the background
        assert "chat.created" in types
        for event in events:
            assert set(event) == ENVELOPE_KEYS
            validate_schema(contract_event(event), "EngineEvent")


async def test_a_message_runs_a_turn_and_the_journal_tells_it_in_order(tmp_path, make_engine, fake_tools, home):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        chat = await default_chat(client)
        after = (await client.get("/health")).json()["lastSeq"]
        sent = await client.post(f"/chats/{chat['id']}/messages", json={"message": "write:made.txt please"})
        assert sent.status_code == 202
        body = sent.json()
        assert (body["queued"], body["position"]) == (False, 0)
        events = await read_events(client, after, lambda e: e["type"] == "repo.status.changed")
        turn = [e for e in events if e["type"].startswith("chat.")]
        assert [e["type"] for e in turn] == ["chat.turn.accepted", "chat.turn.started", "chat.updated",
                                             "chat.turn.delta", "chat.turn.delta", "chat.turn.delta",
                                             "chat.turn.delta", "chat.turn.completed"]
        assert turn[0]["payload"] == {"chatId": chat["id"], "messageId": body["messageId"], "queued": False,
                                      "position": 0}
        assert turn[2]["payload"]["chat"]["processing"] is True
        assert [e["payload"]["event"]["type"] for e in turn[3:7]] == ["claude-user", "claude-system",
                                                                      "claude-assistant", "claude-result"]
        assert turn[3]["payload"]["event"]["payload"]["message"]["content"] == [
            {"type": "text", "text": "write:made.txt please"}]  # the user's message opens the turn
        assert "sender" not in turn[3]["payload"]  # sent with nobody named
        assert turn[-1]["payload"] == {"chatId": chat["id"], "isComplete": True}
        for event in events:
            validate_schema(contract_event(event), "EngineEvent")
        repos = events[-1]["payload"]["repos"]
        assert repos[0]["name"] == "app" and repos[0]["gitDiff"]["added"] == 1
        assert "fullDiff" not in repos[0]["gitDiff"]
        await read_events(client, events[-1]["seq"], lambda e: e["type"] == "chat.updated")
        assert (await client.get(f"/chats/{chat['id']}")).json()["processing"] is False

        diffs = (await client.get("/repos", params={"includeDiffs": "true"})).json()["repos"]
        validate_schema(diffs[0], "EngineRepoState")
        assert "+written" in diffs[0]["gitDiff"]["fullDiff"]

        sender = {"senderUserId": "user-1", "senderEmail": "alice@example.com"}
        await client.post(f"/chats/{chat['id']}/messages", json={"message": "second", "sender": sender})
        second = await read_events(client, events[-1]["seq"], lambda e: e["type"] == "chat.turn.completed"
                                   and e["seq"] > events[-1]["seq"] + 8)
        opening = next(e for e in second if e["type"] == "chat.turn.delta")
        assert opening["payload"]["sender"] == sender and opening["payload"]["event"]["type"] == "claude-user"
        history = (await client.get(f"/chats/{chat['id']}/history", params={"limit": 4})).json()
        assert history["total"] == 8 and history["hasMore"] is True and len(history["events"]) == 4
        older = (await client.get(f"/chats/{chat['id']}/history", params={"limit": 5, "offset": 4})).json()
        assert len(older["events"]) == 4 and older["hasMore"] is False
        for event in history["events"]:
            validate_schema(event, "AgentEvent")

    first, second = agent_log(tmp_path)
    assert first["cwd"] == str(home / "workspaces" / "app")
    assert first["prompt"] == "write:made.txt please" and "--resume" not in first["argv"]  # as sent
    assert second["prompt"] == "second"
    session = history["threadId"]
    assert second["argv"][second["argv"].index("--resume") + 1] == session


async def test_the_queue_is_fifo_and_can_be_reordered_trimmed_cleared_and_interrupted(tmp_path, make_engine,
                                                                                     fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        chat_id = (await default_chat(client))["id"]
        after = (await client.get("/health")).json()["lastSeq"]
        url = f"/chats/{chat_id}"
        first = (await client.post(f"{url}/messages", json={"message": "sleep:30"})).json()
        await read_events(client, after, lambda e: e["type"] == "chat.turn.started")
        queued = []
        for text in ("m1 sleep:30", "m2", "m3 sleep:30"):
            queued.append((await client.post(f"{url}/messages", json={"message": text})).json())
        assert [(q["queued"], q["position"]) for q in queued] == [(True, 1), (True, 2), (True, 3)]
        ids = [q["messageId"] for q in queued]
        queue = (await client.get(f"{url}/queue")).json()
        validate_schema(queue, "ChatQueueResponse")
        assert queue["processing"] is True and [m["id"] for m in queue["queue"]] == ids

        reordered = await client.patch(f"{url}/queue/reorder", json={"messageIds": [ids[2], ids[0]]})
        assert [m["id"] for m in reordered.json()["queue"]] == [ids[2], ids[0], ids[1]]
        assert (await client.patch(f"{url}/queue/reorder", json={"messageIds": ["nope"]})).status_code == 400
        assert (await client.delete(f"{url}/queue/{ids[0]}")).status_code == 200
        assert (await client.delete(f"{url}/queue/{ids[0]}")).status_code == 404
        assert [m["id"] for m in (await client.get(f"{url}/queue")).json()["queue"]] == [ids[2], ids[1]]

        interrupted = (await client.post(f"{url}/interrupt")).json()
        assert interrupted == {"chatId": chat_id, "interrupted": True, "queue": [ids[2], ids[1]]}
        events = await read_events(client, after, lambda e: e["type"] == "chat.turn.started"
                                   and e["payload"]["messageId"] == ids[2])
        completed = [e["payload"] for e in events if e["type"] == "chat.turn.completed"]
        assert completed == [{"chatId": chat_id, "isComplete": False}]
        assert any(e["type"] == "chat.interrupted" for e in events)
        assert not any(e["type"] == "error" for e in events)  # an interrupt is not an error

        cleared = await client.delete(f"{url}/queue")
        assert cleared.json()["queue"] == []
        await client.post(f"{url}/interrupt")
        events = await read_events(client, after, lambda e: e["type"] == "chat.updated"
                                   and not e["payload"]["chat"]["processing"])
        started = [e["payload"]["messageId"] for e in events if e["type"] == "chat.turn.started"]
        assert started == [first["messageId"], ids[2]]


async def test_chats_run_in_parallel(make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        a = (await default_chat(client))["id"]
        b = (await client.post("/chats", json={"provider": "claude"})).json()["id"]
        after = (await client.get("/health")).json()["lastSeq"]
        for chat_id in (a, b):
            sent = await client.post(f"/chats/{chat_id}/messages", json={"message": "sleep:30"})
            assert sent.json()["position"] == 0
        started = set()
        await read_events(client, after, lambda e: e["type"] == "chat.turn.started"
                          and (started.add(e["payload"]["chatId"]) or len(started) == 2))
        status = (await client.get("/status")).json()
        assert status["chatsProcessing"] == 2
        for chat_id in (a, b):
            await client.post(f"/chats/{chat_id}/interrupt")


async def test_a_crashing_agent_ends_the_turn_with_an_error_and_the_chat_goes_on(make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        chat_id = (await default_chat(client))["id"]
        after = (await client.get("/health")).json()["lastSeq"]
        await client.post(f"/chats/{chat_id}/messages", json={"message": "crash"})
        await client.post(f"/chats/{chat_id}/messages", json={"message": "fine"})
        events = await read_events(client, after, lambda e: e["type"] == "chat.updated"
                                   and not e["payload"]["chat"]["processing"])
        completed = [e["payload"]["isComplete"] for e in events if e["type"] == "chat.turn.completed"]
        assert completed == [False, True]
        errors = [e["payload"] for e in events if e["type"] == "error"]
        assert len(errors) == 1 and errors[0]["code"] == "agent_error" and "exited with code 1" in errors[0]["message"]


async def test_the_event_stream_replays_from_after_seq(make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        everything = await read_events(client, 0, lambda e: e["type"] == "hooks.completed")
        assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
        middle = everything[len(everything) // 2]["seq"]
        replay = await read_events(client, middle, lambda e: e["type"] == "hooks.completed")
        assert replay == everything[middle:]


async def test_a_restarted_engine_keeps_its_chats_and_seq_and_ends_the_turn_it_lost(tmp_path, make_engine,
                                                                                   fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        chat_id = (await default_chat(client))["id"]
        await client.post(f"/chats/{chat_id}/messages", json={"message": "hello"})
        done = await read_events(client, 0, lambda e: e["type"] == "chat.turn.completed")
        await client.post(f"/chats/{chat_id}/messages", json={"message": "sleep:60"})
        running = await read_events(client, done[-1]["seq"], lambda e: e["type"] == "chat.turn.delta")
        last_seq = running[-1]["seq"]
    engine.kill()

    engine = await engine.start()
    async with engine.client() as client:
        chats = (await client.get("/chats")).json()["chats"]
        assert [c["id"] for c in chats] == [chat_id]
        events = await read_events(client, last_seq, lambda e: e["type"] == "chat.turn.completed")
        assert events[0]["seq"] > last_seq
        assert "engine.ready" in [e["type"] for e in events]
        assert events[-2]["type"] == "error" and events[-2]["payload"]["code"] == "engine_restarted"
        assert events[-1]["payload"] == {"chatId": chat_id, "isComplete": False}
        assert (await client.get(f"/chats/{chat_id}")).json()["processing"] is False
        await client.post(f"/chats/{chat_id}/messages", json={"message": "after restart"})
        await read_events(client, events[-1]["seq"], lambda e: e["type"] == "chat.turn.completed")
    first, second, third = agent_log(tmp_path)
    session = second["argv"][second["argv"].index("--resume") + 1]
    assert third["argv"][third["argv"].index("--resume") + 1] == session


async def test_a_turn_that_ended_just_before_a_crash_is_not_reported_lost(tmp_path, home, make_engine, fake_tools):
    """The engine journals a turn's end, then saves its chats: killed in between, it restarts with the turn
    still marked running in chats.json but ended in the journal, and must not report it lost."""
    chats_file = home / ".replicas" / "engine" / "chats.json"
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        chat_id = (await default_chat(client))["id"]
        await client.post(f"/chats/{chat_id}/messages", json={"message": "sleep:2"})
        deadline = time.monotonic() + 30
        while not any(chat.get("running") for chat in json.loads(chats_file.read_text())["chats"]):
            assert time.monotonic() < deadline, "the turn never showed as running in chats.json"
            await asyncio.sleep(0.05)
        while_running = chats_file.read_text()
        done = await read_events(client, 0, lambda e: e["type"] == "chat.turn.completed")
        last_seq = done[-1]["seq"]
    engine.kill()
    chats_file.write_text(while_running)  # the state on disk of a crash between the journal and the save

    engine = await engine.start()
    async with engine.client() as client:
        events = await read_events(client, last_seq, lambda e: e["type"] == "engine.ready")
        assert [e for e in events if e["type"] in ("error", "chat.turn.completed")] == []
        assert (await client.get(f"/chats/{chat_id}")).json()["processing"] is False
        await client.post(f"/chats/{chat_id}/messages", json={"message": "after restart"})
        after = await read_events(client, last_seq, lambda e: e["type"] == "chat.turn.completed")
        assert [e["payload"]["isComplete"] for e in after if e["type"] == "chat.turn.completed"] == [True]
        assert not [e for e in after if e["type"] == "error"]


async def test_an_engine_started_before_its_home_waits_for_it_then_sees_the_checkouts(make_engine, fake_tools, home,
                                                                                     tmp_path):
    """A cold create starts the engine while the control plane still checks out (REPLICAS_ENGINE_START_AFTER):
    it answers nothing until the home is marked ready, then starts on the home as it is by then."""
    laid_out_later = tmp_path / "app"
    (home / "workspaces" / "app").rename(laid_out_later)
    engine = make_engine(REPLICAS_TOOLS_DIR=str(fake_tools), REPLICAS_ENGINE_START_AFTER=".replicas/home-ready")
    starting = asyncio.create_task(engine.start())
    await asyncio.sleep(1.5)  # far longer than an engine's start
    assert not starting.done() and engine.process.poll() is None
    assert not (home / ".replicas" / "engine").exists()  # nothing journaled yet: not started

    laid_out_later.rename(home / "workspaces" / "app")  # the checkout lands, then the marker
    (home / ".replicas").mkdir(exist_ok=True)
    (home / ".replicas" / "home-ready").write_text("")
    await asyncio.wait_for(starting, 10)
    async with engine.client() as client:
        events = await read_events(client, 0, lambda e: e["type"] == "repo.discovered")
    assert [repo["name"] for repo in events[-1]["payload"]["repos"]] == ["app"]


async def test_an_engine_waiting_for_its_home_stops_at_once(make_engine, fake_tools, home):
    engine = make_engine(REPLICAS_TOOLS_DIR=str(fake_tools), REPLICAS_ENGINE_START_AFTER=".replicas/home-ready")
    starting = asyncio.create_task(engine.start())
    await asyncio.sleep(1.0)
    started = time.monotonic()
    engine.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(engine.process.wait, 10)
    assert time.monotonic() - started < 5
    with pytest.raises(RuntimeError, match="engine exited"):
        await asyncio.wait_for(starting, 10)
