"""The Test of an environment's MCP server (SQLite and PostgreSQL), with real MCP servers of the `mcp` SDK: a stdio
server shipped as an environment file starts in the environment's sandbox (its variables reach it, its stderr
streams back) and answers the handshake with its tools; a broken one says why; an http server is reached
through the outbound policy, and refused by it when private addresses are off."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator

import pytest

from tests.live_server import serving

# The server a test ships as an environment file: its tool is named after a variable of the environment, so a
# tool list that names it proves the server ran with the environment's variables.
GREETER = """\
import os, sys
from mcp.server.mcpserver import MCPServer

server = MCPServer("greeter", version="1.2.3")

def greet(name: str) -> str:
    return "hello " + name

server.add_tool(greet, name=os.environ["GREETER_TOOL"])
print("greeter: starting with", os.environ["GREETER_TOOL"], file=sys.stderr, flush=True)
server.run()
"""


async def add_mcp(client, env_id: str, name: str, transport: str, config: dict) -> str:
    response = await client.post(f"/v1/environments/{env_id}/mcps",
                                 json={"name": name, "transport": transport, "config": config})
    assert response.status_code == 201, response.text
    return response.json()["environment_mcp"]["id"]


@pytest.fixture
async def greeter_env(client) -> str:
    """An environment with the greeter as a file (~/greeter.py) and the variable it reads."""
    env_id = (await client.post("/v1/environments", json={"name": "tools"})).json()["environment"]["id"]
    made = await client.post(f"/v1/environments/{env_id}/files",
                             json={"name": "greeter", "path": "~/greeter.py", "content": GREETER})
    assert made.status_code == 201, made.text
    made = await client.post(f"/v1/environments/{env_id}/variables", json={"key": "GREETER_TOOL", "value": "say_hi"})
    assert made.status_code == 201, made.text
    return env_id


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_a_stdio_server_answers_from_the_environments_sandbox(client, greeter_env):
    mcp_id = await add_mcp(client, greeter_env, "greeter", "stdio",
                           {"command": sys.executable, "args": ["greeter.py"], "env": {"UNUSED": "x"}})
    response = await client.post(f"/v1/environments/{greeter_env}/mcps/{mcp_id}/test/stream", timeout=120)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "progress" and kinds[-1] == "complete" and kinds.count("complete") == 1
    assert "Provisioning an isolated sandbox" in events[0][1]["message"]
    output = "".join(data["output"] for kind, data in events if kind == "output")
    assert "greeter: starting with say_hi" in output and "REPLICAS_MCP_PROBE_RESULT" not in output
    complete = events[-1][1]
    assert complete == {"type": "complete", "ok": True, "transport": "stdio", "tools": ["say_hi"], "error": None,
                        "server": {"name": "greeter", "version": "1.2.3"},
                        "protocol_version": complete["protocol_version"]}
    assert complete["protocol_version"]


async def test_a_broken_stdio_server_fails_the_check_with_its_own_words(client, greeter_env):
    mcp_id = await add_mcp(client, greeter_env, "broken", "stdio",
                           {"command": "bash", "args": ["-c", "echo 'missing GREETER_KEY' >&2; exit 3"]})
    response = await client.post(f"/v1/environments/{greeter_env}/mcps/{mcp_id}/test", timeout=120)
    assert response.status_code == 200, response.text
    test = response.json()["test"]
    assert test["ok"] is False and test["transport"] == "stdio" and test["tools"] == [] and test["server"] is None
    assert "missing GREETER_KEY" in test["output"] and test["error"]


@pytest.fixture
async def http_mcp_url() -> AsyncIterator[str]:
    """A real Streamable HTTP MCP server of the SDK on a loopback port."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings

    server = MCPServer("remote-tools", version="0.9")

    @server.tool()
    def lookup(term: str) -> str:
        """Look a term up."""
        return term

    app = server.streamable_http_app(streamable_http_path="/mcp", json_response=True,
                                     transport_security=TransportSecuritySettings(
                                         enable_dns_rebinding_protection=False))
    async with serving(app, lifespan="on", graceful=1) as url:
        yield f"{url}/mcp"


async def test_an_http_server_answers_through_the_outbound_policy(client, http_mcp_url):
    env_id = (await client.post("/v1/environments", json={"name": "remote"})).json()["environment"]["id"]
    mcp_id = await add_mcp(client, env_id, "remote", "http", {"url": http_mcp_url, "headers": {"X-Token": "t"}})
    test = (await client.post(f"/v1/environments/{env_id}/mcps/{mcp_id}/test", timeout=60)).json()["test"]
    assert test["ok"] is True, test
    assert test["server"] == {"name": "remote-tools", "version": "0.9"} and test["tools"] == ["lookup"]

    dead = await add_mcp(client, env_id, "dead", "http", {"url": "http://127.0.0.1:9/mcp"})
    test = (await client.post(f"/v1/environments/{env_id}/mcps/{dead}/test", timeout=60)).json()["test"]
    assert test["ok"] is False and test["error"]


@pytest.mark.replica_settings(allow_private_outbound=False)
async def test_a_server_on_a_refused_address_is_never_reached(client, http_mcp_url):
    env_id = (await client.post("/v1/environments", json={"name": "remote"})).json()["environment"]["id"]
    # Stored by a name (names are judged when used): it resolves to loopback, which this server refuses.
    url = http_mcp_url.replace("127.0.0.1", "localhost")
    mcp_id = await add_mcp(client, env_id, "local", "http", {"url": url})
    response = await client.post(f"/v1/environments/{env_id}/mcps/{mcp_id}/test/stream", timeout=60)
    complete = sse_events(response.text)[-1]
    assert complete[0] == "complete" and complete[1]["ok"] is False
    assert "loopback" in complete[1]["error"], complete


async def test_another_organizations_server_is_not_found(client, make_org, greeter_env):
    mcp_id = await add_mcp(client, greeter_env, "greeter", "stdio", {"command": sys.executable, "args": ["greeter.py"]})
    other = await make_org()
    for path in ("test", "test/stream"):
        response = await other.client.post(f"/v1/environments/{greeter_env}/mcps/{mcp_id}/{path}")
        assert response.status_code == 404 and set(response.json()) == {"error", "details"}
    missing = await client.post(f"/v1/environments/{greeter_env}/mcps/00000000-0000-0000-0000-000000000000/test")
    assert missing.status_code == 404 and missing.json()["error"] == "Environment MCP not found"


async def test_a_server_not_saved_yet_is_tested_and_nothing_is_stored(client, greeter_env, http_mcp_url):
    """The add/edit form's Test: `POST .../mcps/test[/stream]` with the server as the form holds it."""
    draft = {"name": "greeter", "transport": "stdio", "config": {"command": sys.executable, "args": ["greeter.py"]}}
    response = await client.post(f"/v1/environments/{greeter_env}/mcps/test/stream", json=draft, timeout=120)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    output = "".join(data["output"] for kind, data in events if kind == "output")
    assert "greeter: starting with say_hi" in output
    assert events[-1][0] == "complete" and events[-1][1]["ok"] is True and events[-1][1]["tools"] == ["say_hi"]

    remote = {"transport": "http", "config": {"url": http_mcp_url}}  # no name: it only labels the check
    test = (await client.post(f"/v1/environments/{greeter_env}/mcps/test", json=remote, timeout=60)).json()["test"]
    assert test["ok"] is True and test["server"] == {"name": "remote-tools", "version": "0.9"}, test

    listed = await client.get(f"/v1/environments/{greeter_env}/mcps")
    assert listed.json()["environment_mcps"] == []


async def test_a_draft_is_checked_as_a_create_is(client, make_org, greeter_env):
    base = f"/v1/environments/{greeter_env}/mcps"
    for body, details in (({"transport": "stdio", "config": {"args": ["x"]}}, "config.command"),
                          ({"transport": "http", "config": {"url": "ftp://example.com"}}, "config.url"),
                          ({"transport": "carrier-pigeon", "config": {}}, "transport")):
        for path in ("test", "test/stream"):
            response = await client.post(f"{base}/{path}", json=body)
            assert response.status_code == 400, response.text
            assert set(response.json()) == {"error", "details"} and details in response.json()["details"]
    other = await make_org()
    response = await other.client.post(f"{base}/test", json={"transport": "http",
                                                             "config": {"url": "http://127.0.0.1:9/mcp"}})
    assert response.status_code == 404 and set(response.json()) == {"error", "details"}
