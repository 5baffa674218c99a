"""The quick start of the hosted Replica API docs, run against our app with only host and key changed:
a real Claude Code CLI behind the scripted model, every response checked against the contract. Each test
runs on both runtime backends (`local` and `docker`), as a user of either would follow the guide."""

from __future__ import annotations

import pytest

from replicas.testing import ShellCall, Text, WriteFile
from tests.agents.test_real_clis import PNG_IMAGE
from tests.contract import assert_contract, validate_schema
from tests.replicas.conftest import (
    ON_BOTH_BACKENDS,
    assert_history,
    checkout,
    create,
    row_of,
    settled,
    status_of,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True), ON_BOTH_BACKENDS]


async def test_quick_start_steps_one_to_four(app, client, settings, replica_env, model):
    # 1. List the repositories.
    listed = assert_contract(await client.get("/v1/replica/repositories"), "/v1/replica/repositories")
    assert [repo["name"] for repo in listed["repositories"]] == ["acme/shop"]

    # 2. Create, legacy: no version header, the call blocks until the replica is active.
    model.add_turn(Text("Looked at it."))
    response = await client.post("/v1/replica", json={
        "name": "fix-auth-bug", "environment_id": replica_env.environment_id,
        "message": "Fix the login timeout issue in src/auth.ts", "coding_agent": "claude", "model": "sonnet"})
    assert response.status_code == 201, response.text
    legacy = assert_contract(response, "/v1/replica")["replica"]
    assert legacy["status"] == "active" and legacy["source"] == "api"
    assert legacy["repositories"][0]["name"] == "acme/shop"
    await wait_for(lambda: settled(app, legacy["id"]), what="the legacy replica's first turn")
    first = model.model_requests()[0]
    assert "Fix the login timeout issue" in first.conversation_text()
    assert "sonnet" in first.model
    assert model.exhausted == []

    # 2'. Create with the version header: 201 `preparing` at once, then active with the message delivered.
    model.add_turn(ShellCall("pwd"), Text("Ready."))
    created = await create(client, replica_env, "/plan Say hello", name="fix-auth-bug-2", thinking_level="low",
                           images=[PNG_IMAGE])
    assert created["status"] == "preparing"
    rid = created["id"]
    await wait_for(lambda: settled(app, rid), what="the first message of the versioned replica")
    request = [r for r in model.model_requests() if r.kind == "prompt"][-1]
    assert "Say hello" in request.conversation_text() and "/plan Say" not in request.conversation_text()
    assert "plan mode" in request.conversation_text().lower()
    assert request.body["output_config"]["effort"] == "low"
    assert request.images()[0]["source"]["data"] == PNG_IMAGE["source"]["data"]

    # 3. A follow-up message: the agent edits a file.
    target = checkout(settings, rid) / "src" / "auth.py"
    model.add_turn(ShellCall(f"mkdir -p {target.parent}"), WriteFile(str(target), "TIMEOUT = 30\n"),
                   Text("Added the timeout."))
    response = await client.post(f"/v1/replica/{rid}/messages", json={"message": "Also add tests for the fix"})
    sent = assert_contract(response, "/v1/replica/{id}/messages")
    assert sent["status"] == "sent" and sent["chat_id"] and sent["message_id"]
    await wait_for(lambda: settled(app, rid, turns=2), what="the follow-up turn")
    assert target.read_text() == "TIMEOUT = 30\n"

    # 4. Status, with include=environment and include=diffs.
    response = await client.get(f"/v1/replica/{rid}", params={"include": "environment"})
    details = assert_contract(response, "/v1/replica/{id}")["replica"]
    assert details["status"] == "active" and details["waking"] is False and details["coding_agent"] is None
    environment = details["environment"]
    assert "ANTHROPIC_BASE_URL" in environment["env_vars_set"]
    assert environment["coding_agents"]["claude"] == {"available": True, "auth_method": "api_key"}
    assert environment["coding_agents"]["pi"]["available"] is False
    status = details["repository_statuses"][0]
    assert status["repository"] == "shop" and status["branch"] == "main" and status["start_hooks_completed"]
    assert status["git_diff"]["added"] >= 1 and status["git_diff"]["full_diff"] == ""
    assert [chat["provider"] for chat in details["chats"]] == ["claude"]

    response = await client.get(f"/v1/replica/{rid}", params={"include": "diffs,environment"})
    details = assert_contract(response, "/v1/replica/{id}")["replica"]
    diff = details["repository_statuses"][0]["git_diff"]["full_diff"]
    assert "src/auth.py" in diff and "+TIMEOUT = 30" in diff
    assert "environment" in details

    response = await client.get(f"/v1/replica/{rid}", params={"include": "secrets"})
    assert response.status_code == 400
    validate_schema(response.json(), "Error")  # getReplica lists no 400

    assert (await status_of(app, legacy["id"])) == "active"


async def test_chats_plan_mode_thinking_and_images(app, client, settings, replica_env, model):
    model.add_turn(Text("Hi."))
    created = await create(client, replica_env, "Hello", name="chatty")
    rid = created["id"]
    await wait_for(lambda: settled(app, rid), what="the first turn")
    root = checkout(settings, rid)

    # Chats: list, create (provider, title), send to that chat, delete.
    listed = assert_contract(await client.get(f"/v1/replica/{rid}/chats"), "/v1/replica/{id}/chats")
    assert len(listed["chats"]) == 1 and "waking" not in listed
    default_chat = listed["chats"][0]["id"]
    response = await client.post(f"/v1/replica/{rid}/chats", json={"provider": "claude", "title": "Refactoring"})
    assert response.status_code == 201, response.text
    chat = assert_contract(response, "/v1/replica/{id}/chats")
    assert chat["title"] == "Refactoring" and chat["provider"] == "claude" and chat["processing"] is False
    model.add_turn(WriteFile(str(root / "refactor.txt"), "done\n"), Text("Refactored."))
    sent = assert_contract(await client.post(f"/v1/replica/{rid}/messages", json={
        "message": "Continue the refactoring", "chat_id": chat["id"]}), "/v1/replica/{id}/messages")
    assert sent["chat_id"] == chat["id"] and sent["status"] == "sent"
    await wait_for(lambda: settled(app, rid, turns=2), what="the turn in the new chat")
    assert (root / "refactor.txt").read_text() == "done\n"
    chat_history = assert_history(await client.get(f"/v1/replica/{rid}/history", params={"chat_id": chat["id"]}))
    assert any("Refactored." in str(e["payload"]) for e in chat_history["events"])
    assert not any("Hi." in str(e["payload"]) for e in chat_history["events"])
    commands = assert_contract(await client.get(f"/v1/replica/{rid}/chats/{chat['id']}/slash-commands"),
                               "/v1/replica/{id}/chats/{chatId}/slash-commands")
    assert {"/plan", "/fast"} <= {c["command"] for c in commands["commands"]}
    for method, path, body in (("POST", f"/v1/replica/{rid}/messages", {"message": "hi", "chat_id": "nope"}),
                               ("DELETE", f"/v1/replica/{rid}/chats/nope", None),
                               ("GET", f"/v1/replica/{rid}/chats/nope/slash-commands", None),
                               ("GET", f"/v1/replica/{rid}/chats/nope/queue", None)):
        response = await client.request(method, path, json=body)
        assert response.status_code == 404, (path, response.text)
        assert_contract(response, path.replace(rid, "{id}").replace("nope", "{chatId}"))
    deleted = assert_contract(await client.delete(f"/v1/replica/{rid}/chats/{chat['id']}"),
                              "/v1/replica/{id}/chats/{chatId}")
    assert deleted == {"success": True}
    listed = assert_contract(await client.get(f"/v1/replica/{rid}/chats"), "/v1/replica/{id}/chats")
    assert [c["id"] for c in listed["chats"]] == [default_chat]
    response = await client.get(f"/v1/workspaces/{rid}/chats")
    workspace_chats = assert_contract(response, "/v1/workspaces/{workspaceId}/chats")
    # Right after the DELETE (not only once the engine's chat.deleted event is stored).
    assert chat["id"] in [c["id"] for c in workspace_chats["deletedChats"]]
    assert chat["id"] not in [c["id"] for c in workspace_chats["chats"]]

    # Plan mode, as a flag and as a leading `/plan`: the agent must not edit.
    for n, body in enumerate(({"message": "Refactor the auth module", "plan_mode": True},
                              {"message": "/plan Refactor the auth module again"})):
        planned = root / f"planned-{n}.txt"
        model.add_turn(WriteFile(str(planned), "x\n"), ShellCall(f"echo y > {root}/echoed-{n}.txt"),
                       Text("Here is the plan."))
        before = len(model.model_requests())
        sent = assert_contract(await client.post(f"/v1/replica/{rid}/messages", json=body),
                               "/v1/replica/{id}/messages")
        assert sent["chat_id"] == default_chat
        await wait_for(lambda n=n: settled(app, rid, turns=3 + n), what="the plan turn")
        assert not planned.exists() and not (root / f"echoed-{n}.txt").exists()
        prompt = model.model_requests()[before]
        assert "Refactor the auth module" in prompt.conversation_text()
        assert "/plan Refactor" not in prompt.conversation_text()
        assert "plan mode" in prompt.conversation_text().lower()

    # thinking_level max and a base64 png reach the agent.
    model.add_turn(Text("A red square."))
    before = len(model.model_requests())
    sent = assert_contract(await client.post(f"/v1/replica/{rid}/messages", json={
        "message": "Fix the layout issue shown in this screenshot", "thinking_level": "max",
        "images": [PNG_IMAGE]}), "/v1/replica/{id}/messages")
    await wait_for(lambda: settled(app, rid, turns=5), what="the image turn")
    request = model.model_requests()[before]
    effort = (request.body.get("output_config") or {}).get("effort")
    assert effort == "max" or request.body["thinking"].get("budget_tokens", 0) > 30000, request.body.get("thinking")
    assert request.images()[0]["source"]["data"] == PNG_IMAGE["source"]["data"]
    assert model.exhausted == []


async def test_history_paging_and_reading_a_sleeper(app, client, replica_env, model):
    model.add_turn(Text("One."))
    rid = (await create(client, replica_env, "first", name="historian"))["id"]
    await wait_for(lambda: settled(app, rid), what="turn 1")
    model.add_turn(ShellCall("true"), Text("Two."))
    await client.post(f"/v1/replica/{rid}/messages", json={"message": "second"})
    await wait_for(lambda: settled(app, rid, turns=2), what="turn 2")

    full = assert_history(await client.get(f"/v1/replica/{rid}/history", params={"limit": 500}))
    total = full["total"]
    assert total == len(full["events"]) and total >= 6 and full["has_more"] is False
    assert full["thread_id"]
    assert (await client.get(f"/v1/replica/{rid}/read", params={"limit": 500})).json() == full  # deprecated alias
    page = assert_history(await client.get(f"/v1/replica/{rid}/history", params={"limit": 2}))
    assert page["events"] == full["events"][-2:] and page["has_more"] is True and page["total"] == total
    older = assert_history(await client.get(f"/v1/replica/{rid}/history", params={"limit": 2, "offset": 2}))
    assert older["events"] == full["events"][-4:-2]
    last = assert_history(await client.get(f"/v1/replica/{rid}/history", params={"offset": total - 1}))
    assert last["events"] == full["events"][:1] and last["has_more"] is False
    response = await client.get(f"/v1/replica/{rid}/history", params={"chat_id": "no-such-chat"})
    assert response.status_code == 404
    assert_contract(response, "/v1/replica/{id}/history")

    # Asleep: history is served from the store and does not wake it.
    assert (await client.post(f"/v1/workspaces/{rid}/sleep")).json() == {"success": True}
    assert await status_of(app, rid) == "sleeping"
    asleep = assert_history(await client.get(f"/v1/replica/{rid}/history", params={"limit": 500}))
    assert asleep["events"] == full["events"] and asleep["waking"] in (None, False)
    assert await status_of(app, rid) == "sleeping"
    row = await row_of(app, rid)
    assert rid not in app.state.replicas._transitions and row.status == "sleeping"

    # The chats list, though, wakes it (spec §2.6), answering with the chats as last seen.
    chats = assert_contract(await client.get(f"/v1/replica/{rid}/chats"), "/v1/replica/{id}/chats")
    assert chats["waking"] is True and len(chats["chats"]) == 1 and chats["chats"][0]["processing"] is False
    await wait_for(lambda: _is_active(app, rid), what="the wake")


async def _is_active(app, rid):
    return await status_of(app, rid) == "active"


async def test_start_hook_logs(app, client, replica_env, model):
    response = await client.post(f"/v1/environments/{replica_env.environment_id}/start-hooks/save",
                                 json={"content": "#!/usr/bin/env bash\necho started-by-hook\n"})
    assert response.status_code == 201, response.text
    model.add_turn(Text("ok"))
    rid = (await create(client, replica_env, "go", name="hooked", versioned=False))["id"]
    await wait_for(lambda: settled(app, rid), what="the turn")

    async def logs():
        body = assert_contract(await client.get(f"/v1/replica/{rid}/hooks"), "/v1/replica/{id}/hooks")
        return body if body["start_hooks"]["logs"] else None

    hooks = await wait_for(logs, timeout=30, what="start hook logs")
    log = hooks["start_hooks"]["logs"][0]
    assert log["hookType"] == "environment" and log["exitCode"] == 0 and not log["timedOut"]
    assert "started-by-hook" in log["output"]
    assert hooks["warm_hooks"]["logs"] == []
    # Kept: served while asleep, without waking.
    await client.post(f"/v1/workspaces/{rid}/sleep")
    asleep = assert_contract(await client.get(f"/v1/replica/{rid}/hooks"), "/v1/replica/{id}/hooks")
    assert asleep["start_hooks"]["logs"] == hooks["start_hooks"]["logs"]
    assert await status_of(app, rid) == "sleeping"
