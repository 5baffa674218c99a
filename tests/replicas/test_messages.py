"""Messages: queued behind a busy agent, the chat queue, waking a sleeper, another agent's chat."""

from __future__ import annotations

import pytest

from replicas.testing import ShellCall, Text
from tests.contract import assert_contract
from tests.replicas.conftest import assert_history, create, settled, status_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
QUEUE = "/v1/replica/{id}/chats/{chatId}/queue"


async def test_queue_while_busy_then_manage_it(app, client, replica_env, model):
    model.add_turn(Text("Hi."))
    rid = (await create(client, replica_env, "hello", name="busy"))["id"]
    await wait_for(lambda: settled(app, rid), what="turn 1")
    chat = (await client.get(f"/v1/replica/{rid}/chats")).json()["chats"][0]["id"]

    model.add_turn(ShellCall("sleep 4"), Text("Slept."))
    first = assert_contract(await client.post(f"/v1/replica/{rid}/messages", json={"message": "sleep a while"}),
                            "/v1/replica/{id}/messages")
    assert first["status"] == "sent"

    async def processing():
        chats = (await client.get(f"/v1/replica/{rid}/chats")).json()["chats"]
        return chats[0]["processing"]

    await wait_for(processing, what="the agent to be busy")
    queued = []
    for text in ("queued a", "queued b", "queued c"):
        response = await client.post(f"/v1/replica/{rid}/messages", json={"message": text})
        answer = assert_contract(response, "/v1/replica/{id}/messages")
        assert answer["status"] == "queued" and answer["chat_id"] == chat, answer
        queued.append(answer)
    assert [q["position"] for q in queued] == [1, 2, 3]
    ids = [q["message_id"] for q in queued]

    queue = assert_contract(await client.get(f"/v1/replica/{rid}/chats/{chat}/queue"), QUEUE)
    assert queue["chatId"] == chat and queue["processing"] is True
    assert [item["id"] for item in queue["queue"]] == ids
    assert [item["message"] for item in queue["queue"]] == ["queued a", "queued b", "queued c"]

    response = await client.patch(f"/v1/replica/{rid}/chats/{chat}/queue/reorder",
                                  json={"messageId": ids[2], "position": 0})
    reordered = assert_contract(response, QUEUE + "/reorder")
    assert reordered["success"] is True and [i["id"] for i in reordered["queue"]] == [ids[2], ids[0], ids[1]]
    response = await client.patch(f"/v1/replica/{rid}/chats/{chat}/queue/reorder",
                                  json={"messageId": "nope", "position": 0})
    assert response.status_code == 404
    assert_contract(response, QUEUE + "/reorder")

    removed = assert_contract(await client.delete(f"/v1/replica/{rid}/chats/{chat}/queue/{ids[0]}"),
                              QUEUE + "/{messageId}")
    assert removed["success"] is True and [i["id"] for i in removed["queue"]] == [ids[2], ids[1]]
    cleared = assert_contract(await client.delete(f"/v1/replica/{rid}/chats/{chat}/queue"), QUEUE)
    assert cleared == {"success": True, "queue": []}
    again = assert_contract(await client.delete(f"/v1/replica/{rid}/chats/{chat}/queue"), QUEUE)
    assert again == {"success": False, "queue": []}

    # The running turn went on; nothing that was cleared ran.
    await wait_for(lambda: settled(app, rid, turns=2), what="the slow turn")
    assert not any("queued" in r.conversation_text() for r in model.model_requests())
    assert model.exhausted == []


async def test_a_message_wakes_a_sleeping_replica(app, client, settings, replica_env, model):
    model.add_turn(Text("One."))
    rid = (await create(client, replica_env, "first", name="sleeper"))["id"]
    await wait_for(lambda: settled(app, rid), what="turn 1")
    chat = (await client.get(f"/v1/replica/{rid}/chats")).json()["chats"][0]["id"]
    before = assert_history(await client.get(f"/v1/replica/{rid}/history"))

    assert_contract(await client.post(f"/v1/workspaces/{rid}/sleep"), "/v1/workspaces/{workspaceId}/sleep")
    assert await status_of(app, rid) == "sleeping"
    model.add_turn(Text("Two."))
    response = await client.post(f"/v1/replica/{rid}/messages", json={"message": "wake up"})
    answer = assert_contract(response, "/v1/replica/{id}/messages")
    assert answer["status"] == "waking" and answer["chat_id"] == chat and answer["position"] is None
    await wait_for(lambda: settled(app, rid, turns=2), what="the message after the wake")
    after = assert_history(await client.get(f"/v1/replica/{rid}/history"))
    assert after["events"][:len(before["events"])] == before["events"]
    assert "Two." in str(after["events"][-1]["payload"])
    prompt = model.model_requests()[-1]
    assert "wake up" in prompt.conversation_text() and "One." in prompt.conversation_text()  # session resumed


async def test_coding_agent_codex_without_chat_goes_to_a_codex_chat(app, client, replica_env, model):
    model.add_turn(Text("Claude here."))
    rid = (await create(client, replica_env, "hello", name="two-agents"))["id"]
    await wait_for(lambda: settled(app, rid), what="turn 1")
    default_chat = (await client.get(f"/v1/replica/{rid}/chats")).json()["chats"][0]["id"]

    model.add_turn(Text("Codex here."))
    response = await client.post(f"/v1/replica/{rid}/messages", json={"message": "hi codex", "coding_agent": "codex"})
    answer = assert_contract(response, "/v1/replica/{id}/messages")
    assert answer["status"] == "sent" and answer["chat_id"] and answer["chat_id"] != default_chat
    await wait_for(lambda: settled(app, rid, turns=2), what="the codex turn")
    chats = assert_contract(await client.get(f"/v1/replica/{rid}/chats"), "/v1/replica/{id}/chats")["chats"]
    assert {c["id"]: c["provider"] for c in chats} == {default_chat: "claude", answer["chat_id"]: "codex"}
    assert model.model_requests()[-1].api == "openai"
    history = assert_history(await client.get(f"/v1/replica/{rid}/history", params={"chat_id": answer["chat_id"]}))
    assert "Codex here." in str(history["events"])

    # The next codex message finds the same chat.
    model.add_turn(Text("Codex again."))
    again = (await client.post(f"/v1/replica/{rid}/messages",
                               json={"message": "again", "coding_agent": "codex"})).json()
    assert again["chat_id"] == answer["chat_id"]
    await wait_for(lambda: settled(app, rid, turns=3), what="the second codex turn")
    assert model.exhausted == []


async def test_follow_up_sent_while_preparing_waits_its_turn(app, client, replica_env, model):
    """The quick start's steps 2 and 3 back to back: the follow-up reaches the agent after the first."""
    model.add_turn(ShellCall("sleep 1"), Text("First done."))
    model.add_turn(Text("Second done."))
    created = await create(client, replica_env, "first task", name="eager")
    rid = created["id"]
    early = assert_contract(await client.get(f"/v1/replica/{rid}", params={"include": "environment,diffs"}),
                            "/v1/replica/{id}")["replica"]
    assert early["status"] in ("preparing", "active") and early["waking"] is False
    assert_history(await client.get(f"/v1/replica/{rid}/history"))
    assert_contract(await client.get(f"/v1/replica/{rid}/hooks"), "/v1/replica/{id}/hooks")
    response = await client.post(f"/v1/replica/{rid}/messages", json={"message": "second task"})
    answer = assert_contract(response, "/v1/replica/{id}/messages")
    assert answer["status"] == "queued" and answer["position"] == 1 and answer["message_id"]
    await wait_for(lambda: settled(app, rid, turns=2), what="both turns")
    prompts = [r for r in model.model_requests() if r.kind == "prompt"]
    assert "first task" in prompts[0].conversation_text() and "second task" in prompts[-1].conversation_text()
    assert "second task" not in prompts[0].conversation_text()
    history = assert_history(await client.get(f"/v1/replica/{rid}/history", params={"limit": 500}))
    texts = [str(e["payload"]) for e in history["events"]]
    assert max(i for i, t in enumerate(texts) if "First done." in t) < min(
        i for i, t in enumerate(texts) if "Second done." in t)
    assert model.exhausted == []


async def test_delete_while_preparing_removes_the_sandbox(app, client, settings, replica_env, model):
    model.add_turn(Text("never mind"))
    rid = (await create(client, replica_env, "go", name="short-lived"))["id"]
    assert (await client.delete(f"/v1/replica/{rid}")).json() == {"success": True}
    response = await client.get(f"/v1/replica/{rid}")
    assert response.status_code == 404
    assert not (settings.data_dir / "workspaces" / rid).exists()
    assert (await client.get("/v1/replica")).json()["total"] == 0


async def test_the_workspaces_family(app, client, replica_env, model):
    model.add_turn(Text("One."))
    rid = (await create(client, replica_env, "first", name="dashboard"))["id"]
    await wait_for(lambda: settled(app, rid), what="turn 1")
    base = f"/v1/workspaces/{rid}"

    response = await client.post(f"{base}/chats", json={"provider": "claude", "title": "Side quest"})
    assert response.status_code == 201, response.text
    chat = assert_contract(response, "/v1/workspaces/{workspaceId}/chats")["chat"]
    assert chat["title"] == "Side quest" and chat["processing"] is False
    model.add_turn(Text("Two."))
    response = await client.post(f"{base}/chats/{chat['id']}/messages", json={"message": "side", "planMode": False})
    assert response.status_code == 200, response.text
    sent = assert_contract(response, "/v1/workspaces/{workspaceId}/chats/{chatId}/messages")
    assert sent["queued"] is False and sent["messageId"]
    await wait_for(lambda: settled(app, rid, turns=2), what="turn 2")
    listed = assert_contract(await client.get(f"{base}/chats"), "/v1/workspaces/{workspaceId}/chats")
    assert chat["id"] in [c["id"] for c in listed["chats"]]

    # Asleep: a chat message waits for the engine (202) and wakes it.
    await client.post(f"{base}/sleep")
    model.add_turn(Text("Three."))
    response = await client.post(f"{base}/chats/{chat['id']}/messages", json={"message": "after sleep"})
    assert response.status_code == 202, response.text
    waiting = assert_contract(response, "/v1/workspaces/{workspaceId}/chats/{chatId}/messages")
    assert waiting["queued"] is True
    await wait_for(lambda: settled(app, rid, turns=3), what="turn 3")

    # Deferred, for a provider without a chat: one is created, and the message lands there.
    await client.post(f"{base}/sleep")
    model.add_turn(Text("Codex deferred."))
    response = await client.post(f"{base}/messages/deferred", json={"provider": "codex", "message": "later"})
    assert response.status_code == 202, response.text
    deferred = assert_contract(response, "/v1/workspaces/{workspaceId}/messages/deferred")
    assert deferred["status"] == "waking" and deferred["chatId"]
    await wait_for(lambda: settled(app, rid, turns=4), what="the deferred turn")
    chats = (await client.get(f"/v1/replica/{rid}/chats")).json()["chats"]
    assert {"id": deferred["chatId"], "provider": "codex"}.items() <= next(
        c for c in chats if c["id"] == deferred["chatId"]).items()
    history = assert_history(await client.get(f"/v1/replica/{rid}/history", params={"chat_id": deferred["chatId"]}))
    assert "Codex deferred." in str(history["events"])
    assert model.exhausted == []


async def test_a_message_sent_as_the_replica_turns_active_does_not_overtake_the_first(app, client, replica_env,
                                                                                        model):
    model.add_turn(Text("First done."))
    model.add_turn(Text("Second done."))
    rid = (await create(client, replica_env, "first task", name="racer"))["id"]
    await wait_for(lambda: _is_active(app, rid), interval=0.001, what="active")
    await client.post(f"/v1/replica/{rid}/messages", json={"message": "second task"})
    await wait_for(lambda: settled(app, rid, turns=2), what="both turns")
    prompts = [r for r in model.model_requests() if r.kind == "prompt"]
    assert "first task" in prompts[0].conversation_text() and "second task" in prompts[1].conversation_text()


async def _is_active(app, rid):
    from tests.replicas.conftest import status_of

    return await status_of(app, rid) == "active"
