"""Every agent receives exactly what the user sent: through the API, the real CLIs, the scripted model.

A replica per agent gets a message with every character a shell or an argument parser would change
(quotes, backslashes, `$`, backticks, LF, CRLF, a trailing newline, non-ASCII), then follow-ups that
resume the session: `--help` as the whole message, `-x foo`, and 100 KB of text. The scripted model
records each request; the user's message must be one of the user text parts it received, byte for byte
(the agents add parts of their own beside it: system reminders, environment context).
"""

from __future__ import annotations

import pytest

from replicas.testing import RecordedRequest, Text
from tests.agents.test_argv import PROMPT_CASES
from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures
from tests.contract import assert_contract
from tests.replicas.conftest import (  # noqa: F401 - fixtures
    create,
    replica_backend,
    replica_env,
    settings,
    settled,
    wait_for,
)

AGENTS = ["claude", "codex", "opencode"]
SPECIAL = "\n".join(PROMPT_CASES[name] for name in (
    "quotes", "backslashes", "dollars", "backticks", "newlines", "crlf", "non-ascii", "trailing newline"))
MESSAGES = [SPECIAL, PROMPT_CASES["leading --help"], PROMPT_CASES["leading -x"], PROMPT_CASES["100 KB"]]


def first_difference(sent: str, texts: list[str]) -> str:
    """Where the received text closest in length to `sent` first differs from it (for the failure)."""
    if not texts:
        return "the request held no user text"
    closest = min(texts, key=lambda text: abs(len(text) - len(sent)))
    index = next((i for i, (a, b) in enumerate(zip(sent, closest, strict=False)) if a != b),
                 min(len(sent), len(closest)))
    start, end = max(0, index - 20), index + 20
    return (f"{len(texts)} user texts; the closest ({len(closest)} chars, sent {len(sent)}) differs at "
            f"{index}: sent {sent[start:end]!r}, received {closest[start:end]!r}")


def prompt_request(server, turn: int) -> RecordedRequest:
    requests = [r for r in server.model_requests() if r.kind == "prompt" and r.turn == turn]
    assert requests, f"no prompt request for turn {turn}"
    return requests[0]


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("agent", AGENTS)
async def test_the_model_receives_each_message_byte_for_byte(agent, app, client, replica_env, model):  # noqa: F811
    for n in range(len(MESSAGES)):
        model.add_turn(Text(f"Reply {n}."))
    rid = (await create(client, replica_env, MESSAGES[0], name=f"fidelity-{agent}", coding_agent=agent))["id"]
    await wait_for(lambda: settled(app, rid), timeout=120, what=f"{agent}'s first turn")
    for n, message in enumerate(MESSAGES[1:], start=2):
        response = await client.post(f"/v1/replica/{rid}/messages", json={"message": message})
        assert assert_contract(response, "/v1/replica/{id}/messages")["status"] == "sent"
        await wait_for(lambda n=n: settled(app, rid, turns=n), timeout=120, what=f"{agent}'s turn {n}")

    for turn, sent in enumerate(MESSAGES):
        request = prompt_request(model, turn)
        texts = request.user_texts()
        assert sent in texts, f"{agent} turn {turn + 1}: {first_difference(sent, texts)}"
        earlier = [prompt_request(model, before).user_texts() for before in range(turn)]
        assert not any(sent in texts for texts in earlier)  # each turn's own request carried it
    assert model.exhausted == []
    chats = (await client.get(f"/v1/replica/{rid}/chats")).json()["chats"]
    assert [chat["provider"] for chat in chats] == [agent]  # one chat, resumed for every follow-up


def test_user_texts_are_the_text_parts_of_user_turns_as_received():
    anthropic = RecordedRequest("POST", "/v1/messages", "", {}, api="anthropic", body={"messages": [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"},
                                     {"type": "text", "text": ' a "b"\r\n'},
                                     {"type": "image", "source": {}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "reply"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "out"}]},
        {"role": "user", "content": "plain\n"}]})
    assert anthropic.user_texts() == ["<system-reminder>x</system-reminder>", ' a "b"\r\n', "plain\n"]
    openai = RecordedRequest("POST", "/v1/responses", "", {}, api="openai", body={"input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<env/>"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "--help"}, {"type": "input_image"}]},
        {"type": "function_call_output", "call_id": "c", "output": "x"},
        {"role": "user", "content": "s"}]})
    assert openai.user_texts() == ["<env/>", "--help", "s"]
    assert RecordedRequest("POST", "/v1/responses", "", {}, api="openai", body={"input": "x"}).user_texts() == ["x"]


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("agent", AGENTS)
async def test_the_environments_system_prompt_reaches_the_agent_beside_the_message(
        agent, app, client, replica_env, model):  # noqa: F811
    """The environment's system prompt reaches each agent through its own instruction files (CLAUDE.md,
    AGENTS.md), on every turn, and never changes the user's message."""
    rules = "Always answer in haiku (rule ZX-4471)."
    patched = await client.patch(f"/v1/environments/{replica_env.environment_id}", json={"system_prompt": rules})
    assert patched.status_code == 200, patched.text
    model.add_turn(Text("First."))
    model.add_turn(Text("Second."))
    rid = (await create(client, replica_env, SPECIAL, name=f"rules-{agent}", coding_agent=agent))["id"]
    await wait_for(lambda: settled(app, rid), timeout=120, what=f"{agent}'s first turn")
    response = await client.post(f"/v1/replica/{rid}/messages", json={"message": "and again"})
    assert response.status_code == 200, response.text
    await wait_for(lambda: settled(app, rid, turns=2), timeout=120, what=f"{agent}'s second turn")
    for turn, sent in enumerate([SPECIAL, "and again"]):
        request = prompt_request(model, turn)
        texts = request.user_texts()
        assert sent in texts, f"{agent} turn {turn + 1}: {first_difference(sent, texts)}"
        assert "ZX-4471" in request.system_text + request.conversation_text(), f"{agent} turn {turn + 1}"
