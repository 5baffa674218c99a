"""A server says early which agents it cannot run: at start-up in its log, and with 400 (naming the agent
and the fix) for a create, a message or a chat for one, with nothing created or queued; `include=environment`
reports each agent's `available` as it is.

The tools dir here is the test's own: empty, or with the pinned Codex linked in from the shared cache (hard
links, so it lies inside the dir the sandbox binds, and can be removed again)."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from replicas.engine.agents import install
from replicas.store.models import Workspace
from replicas.testing import ShellCall, Text
from tests.contract import assert_contract
from tests.replicas.conftest import create, row_of, settled, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
INSTALL = "run `replicas agents install` on the server"


@pytest.fixture
def installed() -> tuple[str, ...]:
    """The agents in the test's tools dir (a test parametrizes it)."""
    return ()


def link_agent(agent_tools: Path, tools: Path, agent: str) -> None:
    """Put the cached pinned CLI of `agent` into `tools` (hard links; a copy across filesystems)."""
    try:
        shutil.copytree(agent_tools / agent, tools / agent, symlinks=True, copy_function=os.link)
    except OSError:
        shutil.rmtree(tools / agent, ignore_errors=True)
        shutil.copytree(agent_tools / agent, tools / agent, symlinks=True)


@pytest.fixture
def tools(tmp_path, agent_tools, installed) -> Path:
    tools = tmp_path / "tools"
    tools.mkdir()
    for agent in installed:
        link_agent(agent_tools, tools, agent)
    return tools


@pytest.fixture
def settings(settings, tools, monkeypatch):  # noqa: F811 - the Replica API's settings, with this tools dir
    # No agent on PATH either (where a machine has one there, the local runtime would run it).
    path = [entry for entry in os.environ.get("PATH", "").split(os.pathsep)
            if entry and not any(shutil.which(install.PACKAGES[a].binary, path=entry) for a in install.PACKAGES)
            and not shutil.which(install.CURSOR_BINARY, path=entry)]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    return settings.model_copy(update={"tools_dir": tools, "agent_check_ttl_seconds": 0})


def refused(response, agent: str, contract_path: str = "/v1/replica") -> None:
    """400 in the contract's error body, naming the agent and the command that installs it."""
    assert response.status_code == 400, response.text
    body = assert_contract(response, contract_path, "post")
    assert body["error"] == "Coding agent not available"
    assert body["details"].startswith(f"{agent} is not installed on this server"), body
    assert INSTALL in body["details"]


async def test_without_agents_create_is_400_nothing_is_left_and_start_up_said_so(
        app, client, caplog, settings, replica_env, model):
    started = [record.getMessage() for record in caplog.get_records("setup") if record.name == "replicas.replicas"]
    for agent in ("claude", "codex", "opencode"):
        assert any(line.startswith(f"agent {agent}: missing") and INSTALL in line for line in started), started
    assert any(line.startswith("agent cursor: missing") for line in started), started
    assert any("agents missing: claude, codex, cursor, opencode" in line for line in started), started

    for fields in ({}, {"coding_agent": "codex"}, {"coding_agent": "opencode", "model": "m"}):
        response = await client.post("/v1/replica", json={"name": "r", "environment_id": replica_env.environment_id,
                                                          "message": "hello", **fields})
        refused(response, fields.get("coding_agent", "claude"))
    cursor = await client.post("/v1/replica", json={"name": "r", "environment_id": replica_env.environment_id,
                                                     "message": "hello", "coding_agent": "cursor"})
    assert cursor.status_code == 400 and "cursor-agent" in cursor.json()["details"]

    assert (await client.get("/v1/replica")).json()["replicas"] == []
    async with app.state.sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(Workspace).where(
            Workspace.environment_id == uuid.UUID(replica_env.environment_id)))
    assert rows == 0
    workspaces = settings.data_dir / "workspaces"
    assert not workspaces.exists() or list(workspaces.iterdir()) == []
    assert model.requests == []


@pytest.mark.parametrize("installed", [("codex",)])
async def test_an_agent_gone_missing_refuses_messages_and_chats_and_queues_nothing(
        app, client, settings, tools, replica_env, model):
    # Codex at the scripted model's base URL, with no model asked for: the shipped default, which is offered
    # Codex's shell and runs the command.
    model.add_turn(ShellCall("echo codex-ran-$((6*7))"), Text("Done."))
    rid = (await create(client, replica_env, "run it", coding_agent="codex"))["id"]
    await wait_for(lambda: settled(app, rid), what="the first turn")
    first = model.model_requests()[0]
    assert first.model == "gpt-5.5" and "exec_command" in first.tool_names, (first.model, first.tool_names)
    history = (await client.get(f"/v1/replica/{rid}/history")).json()
    assert any("codex-ran-42" in (event["payload"].get("output") or "") for event in history["events"])

    environment = (await client.get(f"/v1/replica/{rid}", params={"include": "environment"})).json()
    agents = environment["replica"]["environment"]["coding_agents"]
    assert {name: value["available"] for name, value in agents.items()} == {
        "claude": False, "codex": True, "opencode": False, "cursor": False, "pi": False}

    shutil.rmtree(tools / "codex")
    chat = (await client.get(f"/v1/replica/{rid}/chats")).json()["chats"][0]["id"]
    requests_before, total_before = len(model.requests), history["total"]
    messages, chats = f"/v1/replica/{rid}/messages", f"/v1/replica/{rid}/chats"
    for body, agent in (({"message": "again"}, "codex"), ({"message": "again", "chat_id": chat}, "codex"),
                        ({"message": "hi", "coding_agent": "claude"}, "claude")):
        refused(await client.post(messages, json=body), agent, "/v1/replica/{id}/messages")
    for provider in ("opencode", "codex"):
        refused(await client.post(chats, json={"provider": provider}), provider, "/v1/replica/{id}/chats")

    row = await row_of(app, rid)
    assert row.pending_messages == []
    assert [c["id"] for c in (await client.get(f"/v1/replica/{rid}/chats")).json()["chats"]] == [chat]
    assert (await client.get(f"/v1/replica/{rid}/chats/{chat}/queue")).json()["queue"] == []
    assert (await client.get(f"/v1/replica/{rid}/history")).json()["total"] == total_before
    assert len(model.requests) == requests_before
    environment = (await client.get(f"/v1/replica/{rid}", params={"include": "environment"})).json()
    assert environment["replica"]["environment"]["coding_agents"]["codex"]["available"] is False


async def test_the_start_up_log_names_available_agents_with_their_version(app, caplog, tools, agent_tools):
    link_agent(agent_tools, tools, "codex")
    with caplog.at_level(logging.INFO, logger="replicas.replicas"):
        await app.state.replicas.agents.log_summary(logging.getLogger("replicas.replicas"))
    lines = [record.getMessage() for record in caplog.records]
    pinned = install.PACKAGES["codex"].version
    assert f"agent codex: available ({pinned})" in lines, lines
    assert any(line.startswith("agent claude: missing") for line in lines), lines
