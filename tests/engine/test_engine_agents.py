"""The engine with the REAL Claude Code and Codex CLIs behind the scripted model (slow).

The CLIs come from the cache that tests/agents/test_real_clis.py installs them into (its `agent_tools`
and `model` fixtures, shared through tests/engine/conftest.py). Each test prints
"message sent → first chat.turn.delta" as seen on the events stream.
"""

from __future__ import annotations

import time

import pytest

from replicas.testing import Fail, ShellCall, Text, WriteFile
from tests.conftest import git
from tests.engine.conftest import read_events

pytestmark = pytest.mark.slow


@pytest.fixture
async def engine(make_engine, agent_tools, model):
    return await make_engine(REPLICAS_TOOLS_DIR=str(agent_tools), REPLICAS_AGENT_MAX_RETRIES="1",
                             REPLICAS_AGENT_IDLE_TIMEOUT="60", **model.anthropic_env(), **model.openai_env()).start()


async def send_and_wait(client, chat_id: str, message: str, **options) -> tuple[list[dict], float]:
    """Send a message; return the turn's events (through chat.turn.completed) and the seconds from
    sending to the first chat.turn.delta on the stream that came from the CLI."""
    after = (await client.get("/health")).json()["lastSeq"]
    sent_at = time.monotonic()
    response = await client.post(f"/chats/{chat_id}/messages", json={"message": message, **options})
    assert response.status_code == 202
    first_delta: list[float] = []

    opened: list[bool] = []

    def until(event: dict) -> bool:
        # The turn opens with the user's own message (journaled by the engine); time the CLI's first event.
        if event["type"] == "chat.turn.delta" and event["payload"].get("chatId") == chat_id and not first_delta:
            if opened:
                first_delta.append(time.monotonic() - sent_at)
            opened.append(True)
        return event["type"] == "chat.turn.completed" and event["payload"]["chatId"] == chat_id

    events = await read_events(client, after, until, timeout=180)
    return [e for e in events if e["payload"].get("chatId") in (chat_id, None)], first_delta[0]


def deltas(events: list[dict]) -> list[dict]:
    return [e["payload"]["event"] for e in events if e["type"] == "chat.turn.delta"]


async def test_claude_edits_the_repo_and_a_follow_up_resumes_its_session(engine, model, home):
    repo = home / "workspaces" / "app"
    model.add_turn(WriteFile(str(repo / "hello.txt"), "hello from claude\n"), Text("created"))
    model.add_turn(ShellCall("cat hello.txt"), Text("read it"))
    async with engine.client() as client:
        chat_id = (await client.get("/chats")).json()["chats"][0]["id"]
        events, latency = await send_and_wait(client, chat_id, "first prompt: create hello.txt")
        print(f"\nclaude: message sent -> first chat.turn.delta {latency:.2f} s")
        assert events[-1]["payload"]["isComplete"] is True
        assert deltas(events)[-1]["type"] == "claude-result"
        repos = (await client.get("/repos", params={"includeDiffs": "true"})).json()["repos"]
        assert repos[0]["gitDiff"]["added"] == 1 and "+hello from claude" in repos[0]["gitDiff"]["fullDiff"]
        first_session = (await client.get(f"/chats/{chat_id}/history")).json()["threadId"]

        events, _ = await send_and_wait(client, chat_id, "second prompt: read it back")
        assert events[-1]["payload"]["isComplete"] is True
        assert (await client.get(f"/chats/{chat_id}/history")).json()["threadId"] == first_session
    follow_up = [r for r in model.model_requests() if r.turn == 1]
    assert follow_up and "first prompt: create hello.txt" in follow_up[0].conversation_text()


async def test_a_claude_chat_and_a_codex_chat_work_in_one_engine(engine, model, home):
    repo = home / "workspaces" / "app"
    async with engine.client() as client:
        claude_chat = (await client.post("/chats", json={"provider": "claude"})).json()["id"]
        codex_chat = (await client.post("/chats", json={"provider": "codex"})).json()["id"]
        model.add_turn(WriteFile(str(repo / "from-codex.txt"), "codex\n"), Text("codex done"))
        events, latency = await send_and_wait(client, codex_chat, "write from-codex.txt")
        print(f"\ncodex: message sent -> first chat.turn.delta {latency:.2f} s")
        assert events[-1]["payload"]["isComplete"] is True
        assert {d["type"] for d in deltas(events)} <= {"event_msg", "response_item"}
        model.add_turn(WriteFile(str(repo / "from-claude.txt"), "claude\n"), Text("claude done"))
        events, _ = await send_and_wait(client, claude_chat, "write from-claude.txt")
        assert events[-1]["payload"]["isComplete"] is True
        assert (repo / "from-codex.txt").read_text() == "codex\n"
        assert (repo / "from-claude.txt").read_text() == "claude\n"
        repos = (await client.get("/repos")).json()["repos"]
        assert repos[0]["gitDiff"]["added"] == 2


@pytest.mark.parametrize("provider", ["claude", "codex"])
async def test_plan_mode_makes_no_edits(provider, engine, model, home):
    repo = home / "workspaces" / "app"
    model.add_turn(WriteFile(str(repo / "planned.txt"), "x\n"), ShellCall(f"echo y > {repo / 'echoed.txt'}"),
                   Text("Here is the plan."))
    async with engine.client() as client:
        chat_id = (await client.post("/chats", json={"provider": provider})).json()["id"]
        events, _ = await send_and_wait(client, chat_id, "Plan the change", planMode=True)
        assert events[-1]["payload"]["isComplete"] is True
    assert not (repo / "planned.txt").exists() and not (repo / "echoed.txt").exists()
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("provider", ["claude", "codex"])
async def test_a_crashing_model_ends_the_turn_with_an_error_and_the_next_message_works(provider, engine, model,
                                                                                        home):
    repo = home / "workspaces" / "app"
    model.add_turn(Fail(status=500, message="scripted outage"))
    model.add_turn(WriteFile(str(repo / "after.txt"), "ok\n"), Text("recovered"))
    async with engine.client() as client:
        chat_id = (await client.post("/chats", json={"provider": provider})).json()["id"]
        failed, _ = await send_and_wait(client, chat_id, "this one fails")
        assert failed[-1]["payload"]["isComplete"] is False
        assert any(e["type"] == "error" and e["payload"]["code"] == "agent_error" for e in failed)
        recovered, _ = await send_and_wait(client, chat_id, "try again")
        assert recovered[-1]["payload"]["isComplete"] is True
    assert (repo / "after.txt").read_text() == "ok\n"
