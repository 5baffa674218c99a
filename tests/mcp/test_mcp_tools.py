"""The MCP server over both transports, with the `mcp` SDK's own client: the hosted server's twelve tools,
each called for real (a replica with Claude Code behind the scripted model), REST names in and REST JSON
out, the API's refusals as tool errors, and the caller's key deciding what is seen."""

from __future__ import annotations

import json

import pytest

from replicas.mcp_server import TOOL_NAMES
from replicas.testing import Text
from tests.contract import validate_schema
from tests.mcp.conftest import key_of, mcp_client
from tests.replicas.conftest import settled, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


async def call(client, tool: str, **arguments) -> dict:
    """A tool's result as the JSON it carries (asserting it succeeded and its text and structure agree)."""
    result = await client.call_tool(tool, arguments)
    text = result.content[0].text
    assert not result.is_error, text
    body = json.loads(text)
    assert result.structured_content == body
    return body


async def refused(client, tool: str, **arguments) -> dict:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    return json.loads(result.content[0].text)


@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_every_tool_over_the_transport(app, org, client, make_org, replica_env, model, api_url, transport):
    alice = await org.add_user("alice@example.com")
    profile = (await alice.get("/v1/user/profile")).json()["profile"]
    async with mcp_client(transport, api_url, key_of(alice)) as mcp:
        listed = await mcp.list_tools()
        assert sorted(tool.name for tool in listed.tools) == sorted(TOOL_NAMES)
        schemas = {tool.name: tool.input_schema for tool in listed.tools}
        assert {"name", "message", "environment_id", "coding_agent", "thinking_level", "lifecycle_policy"} \
            <= set(schemas["create_replica"]["properties"])
        assert schemas["read_replica_history"]["required"] == ["replica_id"]

        # The repositories, as REST answers them.
        assert await call(mcp, "list_repositories") == (await client.get("/v1/replica/repositories")).json()
        assert await call(mcp, "list_repository_sets") == {"repository_sets": []}

        model.add_turn(Text("Hello from the replica."))
        created = await call(mcp, "create_replica", name="via-mcp", message="say hello",
                             environment_id=replica_env.environment_id)
        validate_schema(created, "CreateReplicaResponse")
        rid = created["replica"]["id"]
        assert created["replica"]["status"] == "preparing"
        await wait_for(lambda: settled(app, rid), what="the first turn")

        page = await call(mcp, "list_replicas", limit=5)
        assert [r["id"] for r in page["replicas"]] == [rid] and page["limit"] == 5
        assert (await call(mcp, "list_replicas", status="sleeping"))["replicas"] == []
        details = await call(mcp, "get_replica", replica_id=rid, include="diffs")
        assert details == (await alice.get(f"/v1/replica/{rid}", params={"include": "diffs"})).json()
        assert details["replica"]["name"] == "via-mcp"

        model.add_turn(Text("Second answer."))
        sent = await call(mcp, "send_replica_message", replica_id=rid, message="and again", thinking_level="high")
        assert sent["status"] == "sent" and sent["chat_id"]
        await wait_for(lambda: settled(app, rid, turns=2), what="the second turn")
        history = await call(mcp, "read_replica_history", replica_id=rid, limit=50)
        validate_schema({**history, "events": []}, "ReadReplicaHistoryResponse")
        texts = [e["payload"]["message"]["content"][0].get("text") for e in history["events"]
                 if e["type"] in ("claude-user", "claude-assistant")]
        assert texts[0] == "say hello" and "and again" in texts and texts[-1] == "Second answer."
        assert [s["senderEmail"] for s in history["senders"]] == ["alice@example.com"] * 2
        assert {s["senderUserId"] for s in history["senders"]} == {profile["userId"]}
        last = await call(mcp, "read_replica_history", replica_id=rid, limit=1, offset=0)
        assert last["events"] == history["events"][-1:] and last["has_more"] is True
        hooks = await call(mcp, "get_replica_hooks", replica_id=rid)
        assert set(hooks) == {"warm_hooks", "start_hooks"}

        chats = await call(mcp, "list_chats", replica_id=rid)
        assert [chat["provider"] for chat in chats["chats"]] == ["claude"]
        side = await call(mcp, "create_chat", replica_id=rid, provider="claude", title="side quest")
        assert side["title"] == "side quest"
        assert len((await call(mcp, "list_chats", replica_id=rid))["chats"]) == 2
        assert await call(mcp, "delete_chat", replica_id=rid, chat_id=side["id"]) == {"success": True}
        assert [c["id"] for c in (await call(mcp, "list_chats", replica_id=rid))["chats"]] == \
            [c["id"] for c in chats["chats"]]

        # The API's refusals come back as tool errors with the API's own message and status.
        missing = await refused(mcp, "get_replica", replica_id="00000000-0000-4000-8000-000000000000")
        rest = await alice.get("/v1/replica/00000000-0000-4000-8000-000000000000")
        assert missing == {"status": 404, **rest.json()}
        bad = await refused(mcp, "create_replica", name="has space", message="x",
                            environment_id=replica_env.environment_id)
        assert bad["status"] == 400 and "name" in bad["details"]
        assert (await mcp.call_tool("list_replicas", {"limit": 0})).is_error  # the tool's own schema

        # Another organization's key sees none of it.
        stranger = await make_org()
        async with mcp_client(transport, api_url, stranger.key) as theirs:
            assert (await call(theirs, "list_replicas"))["replicas"] == []
            assert (await refused(theirs, "delete_replica", replica_id=rid))["status"] == 404

        assert await call(mcp, "delete_replica", replica_id=rid) == {"success": True}
        assert (await refused(mcp, "get_replica", replica_id=rid))["status"] == 404
    assert model.exhausted == []


async def test_the_http_endpoint_answers_401_without_a_valid_key_and_only_post(api_url):
    import httpx

    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=api_url) as http:
        for auth, error in ((None, "Missing authorization token"), ("Bearer sk_replicas_" + "x" * 32, "Invalid token"),
                            ("Basic dXNlcjpwYXNz", "Missing authorization token")):
            sent = {**headers, **({"Authorization": auth} if auth else {})}
            response = await http.post("/v1/mcp", json=initialize, headers=sent)
            assert response.status_code == 401, response.text
            validate_schema(response.json(), "Error")
            assert response.json()["error"] == error
        response = await http.get("/v1/mcp")
        assert response.status_code == 405
        validate_schema(response.json(), "Error")
