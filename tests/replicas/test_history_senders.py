"""History shows both sides: each user message in its agent's own shape, and `senders` says who sent it.

Real agent CLIs behind the scripted model. A personal key sends as its user whatever the body says; an org
key may name the person it sends for (`senderUserId`, `senderEmail`) or nobody. A sender's `recordedAt` is
the timestamp of its user message's event, and a page carries the senders of the user messages in it, also
when it starts in the middle of a turn.
"""

from __future__ import annotations

import pytest

from replicas.testing import ShellCall, Text
from tests.replicas.conftest import assert_history, create, settled, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


def user_text(event: dict) -> str | None:
    """The text of a user message event of any agent; None for the agent's own events (and tool results)."""
    payload = event["payload"]
    if event["type"] == "claude-user":
        texts = [block["text"] for block in payload["message"]["content"] if block["type"] == "text"]
        return texts[0] if texts else None
    if event["type"] == "event_msg" and payload["type"] == "user_message":
        return payload["message"]
    if event["type"] == "opencode-message.updated" and payload.get("info", {}).get("role") == "user":
        return next(part["text"] for part in payload["parts"] if part["type"] == "text")
    return None


async def history(client, rid: str, **params) -> dict:
    return assert_history(await client.get(f"/v1/replica/{rid}/history", params={"limit": 500, **params}))


async def profile_of(client) -> dict:
    return (await client.get("/v1/user/profile")).json()["profile"]


async def test_user_messages_and_their_senders_including_a_page_from_mid_turn(app, org, client, replica_env, model):
    alice, bob = await org.add_user("alice@example.com"), await org.add_user("bob@example.com")
    alice_id, bob_id = (await profile_of(alice))["userId"], (await profile_of(bob))["userId"]

    model.add_turn(Text("One."))
    rid = (await create(alice, replica_env, "first, from alice", name="conversation"))["id"]
    await wait_for(lambda: settled(app, rid), what="turn 1")
    steps = [
        # bob claims to be someone else: a personal key sends as its own user.
        (bob, {"message": "second, from bob", "senderUserId": "forged", "senderEmail": "forged@example.com"}),
        (client, {"message": "third, for carol", "senderUserId": "carol-1", "senderEmail": "carol@example.com"}),
        (client, {"message": "fourth, from the org key"}),
    ]
    for turn, (sender, body) in enumerate(steps, start=2):
        model.add_turn(ShellCall("true"), Text(f"Reply {turn}."))
        sent = await sender.post(f"/v1/replica/{rid}/messages", json=body)
        assert sent.status_code == 200, sent.text
        await wait_for(lambda turn=turn: settled(app, rid, turns=turn), what=f"turn {turn}")
    assert model.exhausted == []

    full = await history(client, rid)
    events = full["events"]
    users = [i for i, event in enumerate(events) if user_text(event) is not None]
    assert [user_text(events[i]) for i in users] == [
        "first, from alice", "second, from bob", "third, for carol", "fourth, from the org key"]
    assert users[0] == 0  # the user's message opens its turn
    assert all(events[i]["type"] == "claude-user" for i in users)
    assert full["senders"] == [
        {"senderUserId": alice_id, "senderEmail": "alice@example.com", "recordedAt": events[users[0]]["timestamp"]},
        {"senderUserId": bob_id, "senderEmail": "bob@example.com", "recordedAt": events[users[1]]["timestamp"]},
        {"senderUserId": "carol-1", "senderEmail": "carol@example.com", "recordedAt": events[users[2]]["timestamp"]},
    ]

    # A page that starts in the middle of turn 2 (after bob's message) and ends with carol's message.
    start, end = users[1] + 1, users[2] + 1
    page = await history(client, rid, limit=end - start, offset=full["total"] - end)
    assert page["events"] == events[start:end] and page["has_more"] is True
    assert user_text(page["events"][0]) is None and page["events"][0]["type"] != "claude-user"
    assert page["senders"] == [full["senders"][2]]
    # The page before it holds bob's message and his sender; the rest of turn 2 is not in it.
    older = await history(client, rid, limit=2, offset=full["total"] - start)
    assert older["events"] == events[start - 2:start]
    assert older["senders"] == [full["senders"][1]]
    # A page with no user message has no senders.
    inside = await history(client, rid, limit=1, offset=full["total"] - start - 1)
    assert inside["events"] == [events[start]] and inside["senders"] == []


@pytest.mark.parametrize("agent", ["codex", "opencode"])
async def test_other_agents_keep_the_users_message_in_their_own_shape(app, org, replica_env, model, agent):
    alice = await org.add_user("alice@example.com")
    alice_id = (await profile_of(alice))["userId"]
    model.add_turn(Text("Done."))
    rid = (await create(alice, replica_env, f"hello {agent}", name=agent, coding_agent=agent))["id"]
    await wait_for(lambda: settled(app, rid), what="the turn")
    full = await history(alice, rid)
    first = full["events"][0]
    assert user_text(first) == f"hello {agent}"
    assert first["type"] == {"codex": "event_msg", "opencode": "opencode-message.updated"}[agent]
    assert [user_text(event) for event in full["events"]].count(f"hello {agent}") == 1
    assert full["senders"] == [{"senderUserId": alice_id, "senderEmail": "alice@example.com",
                                "recordedAt": first["timestamp"]}]
