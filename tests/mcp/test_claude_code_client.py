"""A real MCP client that we did not write drives our server: Claude Code (the pinned CLI), configured with the
Replicas MCP server, is asked by the scripted model to call `list_replicas`, and gets the REST JSON back."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from replicas.engine.agents import install as agent_install
from replicas.engine.agents.claude import GATEWAY_MODEL
from replicas.mcp_server import TOOL_NAMES
from replicas.testing import Text, ToolCall
from tests.mcp.conftest import REPLICAS_CLI, key_of
from tests.replicas.conftest import create, settled, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

TOOL = "mcp__replicas__list_replicas"  # Claude Code's name for server `replicas`, tool `list_replicas`


def mcp_config(transport: str, api_url: str, key: str) -> dict:
    if transport == "http":
        server = {"type": "http", "url": f"{api_url}/v1/mcp", "headers": {"Authorization": f"Bearer {key}"}}
    else:
        server = {"type": "stdio", "command": REPLICAS_CLI, "args": ["mcp"],
                  "env": {"REPLICAS_API_URL": api_url, "REPLICAS_API_KEY": key}}
    return {"mcpServers": {"replicas": server}}


async def run_claude(binary: Path, home: Path, config: dict, prompt: str, model) -> list[dict]:
    """`claude -p` with only our MCP server configured; its stream-json lines."""
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": str(home), "LANG": "C.UTF-8",
           "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "CLAUDE_CODE_MAX_RETRIES": "1", **model.anthropic_env(),
           # MCP tools up front, not deferred behind ToolSearch: the model is shown our tool's own schema.
           "ENABLE_TOOL_SEARCH": "false"}
    if os.geteuid() == 0:
        env["IS_SANDBOX"] = "1"  # --dangerously-skip-permissions is refused as root otherwise
    process = await asyncio.create_subprocess_exec(
        str(binary), "-p", prompt, "--output-format", "stream-json", "--verbose", "--model", GATEWAY_MODEL,
        "--mcp-config", json.dumps(config), "--strict-mcp-config", "--dangerously-skip-permissions",
        cwd=home, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_claude_code_calls_list_replicas_on_our_server(app, org, client, replica_env, model, agent_tools,
                                                             api_url, tmp_path, transport):
    model.add_turn(Text("Ready."))
    rid = (await create(client, replica_env, "hello", name="listed-by-claude"))["id"]
    await wait_for(lambda: settled(app, rid), what="the replica's own turn")
    expected = (await client.get("/v1/replica")).json()

    model.add_turn(ToolCall(TOOL, {}), Text("You have one replica: listed-by-claude."))
    home = tmp_path / "claude-home"
    home.mkdir()
    lines = await run_claude(agent_install.find_binary("claude", agent_tools), home,
                             mcp_config(transport, api_url, key_of(client)), "Which replicas do I have?", model)

    init = next(line for line in lines if line.get("type") == "system" and line.get("subtype") == "init")
    assert [(s["name"], s["status"]) for s in init["mcp_servers"]] == [("replicas", "connected")], init
    assert TOOL in init["tools"]
    uses = [block for line in lines if line.get("type") == "assistant"
            for block in line["message"]["content"] if block.get("type") == "tool_use"]
    assert [use["name"] for use in uses] == [TOOL]
    results = [block for line in lines if line.get("type") == "user"
               for block in line["message"]["content"] if block.get("type") == "tool_result"]
    assert len(results) == 1 and not results[0].get("is_error"), results
    content = results[0]["content"]
    text = content if isinstance(content, str) else "".join(part.get("text", "") for part in content)
    assert json.loads(text) == expected  # the REST JSON, as the API answers it
    assert lines[-1]["type"] == "result" and lines[-1]["result"] == "You have one replica: listed-by-claude."

    # The model was offered our twelve tools with their schemas, and got our server's answer back.
    prompt, continuation = model.model_requests()[-2:]
    offered = {tool["name"]: tool for tool in prompt.body["tools"] if tool["name"].startswith("mcp__replicas__")}
    assert sorted(offered) == sorted(f"mcp__replicas__{name}" for name in TOOL_NAMES)
    assert {"page", "limit", "status"} <= set(offered[TOOL]["input_schema"]["properties"])
    assert "listed-by-claude" in continuation.conversation_text()
    assert model.exhausted == []
