"""`POST /v1/slack/threads/attach` (contract §3.10): a Slack thread routed to a workspace made through the API; a
reply in the thread (a signed Events API delivery) then reaches that workspace, whose answer the real Claude Code
writes and the Slack stand-in receives in the thread. Agent mode attaches only to its own workspace and cannot take
a thread another workspace holds (409); the errors; the thread's first message in the record; the audit log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replicas.testing import Text
from tests.automations.test_receivers import post, slack
from tests.contract import validate_schema
from tests.integrations.conftest import FAST, connect, prompt_with
from tests.replicas.conftest import create, row_of, settled, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.replica_settings(**FAST),
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

PAYLOADS = Path(__file__).parent / "payloads"
ATTACH = "/v1/slack/threads/attach"
THREAD_TS = "1712000090.000100"


def reply_in_thread(ts: str, text: str) -> dict:
    body = json.loads((PAYLOADS / "slack_thread_reply.json").read_text())
    body["event"].update(ts=ts, event_ts=ts, text=text, thread_ts=THREAD_TS)
    body["event_id"] = f"Ev{ts.replace('.', '')}"
    return body


async def test_an_attached_thread_routes_its_replies_to_the_workspace(app, client, anonymous, make_org, replica_env,
                                                                     model, stand_in):
    model.add_turn(Text("Ready."))
    made = await create(client, replica_env, "Get ready for the checkout work.")
    await wait_for(lambda: settled(app, made["id"]), timeout=120, what="the first turn")
    model.add_turn(Text("Standing by."))
    other = await create(client, replica_env, "Stand by.", name="other")
    await wait_for(lambda: settled(app, other["id"]), timeout=120, what="the other's first turn")

    # Slack is not connected yet: no team to route in.
    body = {"channel_id": "C123ABC456", "thread_ts": THREAD_TS, "workspace_id": made["id"]}
    refused = await client.post(ATTACH, json=body)
    assert refused.status_code == 400 and refused.json()["error"] == "Slack is not connected"
    path = await connect(client, stand_in, "slack")

    # Errors: the target is required outside agent mode, must be the organization's, and the IDs must be Slack's.
    assert (await client.post(ATTACH, json={"channel_id": "C123ABC456", "thread_ts": THREAD_TS})).status_code == 400
    assert (await client.post(ATTACH, json={"thread_ts": THREAD_TS, "workspace_id": made["id"]})).status_code == 400
    assert (await client.post(ATTACH, json={**body, "thread_ts": "yesterday"})).status_code == 400
    stranger = (await make_org()).client
    assert (await stranger.post(ATTACH, json=body)).status_code == 404
    assert (await anonymous.post(ATTACH, json=body)).status_code == 401

    # Attach to the other workspace first (the thread's first message and author read from Slack), then switch the
    # thread to this one.
    stand_in.slack_messages["C123ABC456", THREAD_TS] = {"type": "message", "user": "U0REPORTER", "ts": THREAD_TS,
                                                        "text": "The checkout is down again", "thread_ts": THREAD_TS}
    first = await client.post(ATTACH, json={**body, "workspace_id": other["id"]})
    assert first.status_code == 200
    assert first.json()["thread"]["metadata"] == {"channel_id": "C123ABC456", "thread_ts": THREAD_TS,
                                                  "original_message": "The checkout is down again",
                                                  "user_id": "U0REPORTER", "message_ts": THREAD_TS}
    [replies] = stand_in.made("GET", r"/slack/conversations.replies")
    assert f"ts={THREAD_TS}" in replies.path and replies.headers["Authorization"] == "Bearer xoxb-bot-token"
    response = await client.post(ATTACH, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    validate_schema(answer, "SlackThreadAttachResponse")
    assert answer["workspace"] == {"id": made["id"], "name": made["name"]}
    assert answer["thread"]["workspace_id"] == made["id"] and answer["thread"]["slack_team_id"] == "T123ABC456"
    assert answer["thread"]["metadata"]["original_message"] == "The checkout is down again"
    assert (answer["thread"]["channel_id"], answer["thread"]["thread_ts"]) == ("C123ABC456", THREAD_TS)
    assert len(stand_in.made("POST", r"/slack/auth.test$")) == 1  # the team is learnt once

    # A reply in the thread is a follow-up to the attached workspace; its answer is posted in the thread.
    model.add_turn(Text("On it: the checkout answers 400 now."))
    reply = reply_in_thread("1712000091.000200", "Please make the empty cart answer 400.")
    assert (await post(anonymous, path, slack(reply))).status_code == 202
    sent = await prompt_with(model, "Please make the empty cart answer 400.")
    assert "Reply in the Slack thread" in sent

    async def posted():
        return [r.body for r in stand_in.made("POST", r"/slack/chat.postMessage$")]

    [message] = await wait_for(posted, timeout=120, what="the answer in the thread")
    assert message == {"channel": "C123ABC456", "thread_ts": THREAD_TS, "text": "On it: the checkout answers 400 now.",
                       "unfurl_links": False}

    # Agent mode: a workspace may attach a thread to itself only.
    row = await row_of(app, made["id"])
    agent = {"Authorization": f"Bearer {app.state.box.decrypt(row.engine_secret_encrypted)}",
             "X-Workspace-Id": made["id"]}
    own = await anonymous.post(ATTACH, headers=agent, json={"channel_id": "C123ABC456", "thread_ts": "1712000095.0001"})
    assert own.status_code == 200 and own.json()["thread"]["workspace_id"] == made["id"]
    # Slack has no such message for the stand-in (thread_not_found): the record goes without it.
    assert own.json()["thread"]["metadata"]["original_message"] == "" == own.json()["thread"]["metadata"]["user_id"]
    # The other workspace's agent cannot take this thread from this one: 409, and the thread stays where it was.
    other_row = await row_of(app, other["id"])
    other_agent = {"Authorization": f"Bearer {app.state.box.decrypt(other_row.engine_secret_encrypted)}",
                   "X-Workspace-Id": other["id"]}
    taken = await anonymous.post(ATTACH, headers=other_agent, json={"channel_id": "C123ABC456", "thread_ts": THREAD_TS})
    assert taken.status_code == 409, taken.text
    assert taken.json()["error"] == "The Slack thread is routed to another workspace"
    again = await anonymous.post(ATTACH, headers=agent, json={"channel_id": "C123ABC456", "thread_ts": THREAD_TS})
    assert again.status_code == 200 and again.json()["thread"]["workspace_id"] == made["id"]
    forbidden = await anonymous.post(ATTACH, headers=agent, json={**body, "workspace_id": other["id"]})
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "The workspace agent cannot route this " \
        "Slack thread"
    wrong = await anonymous.post(ATTACH, headers={**agent, "Authorization": "Bearer guessed"}, json=body)
    assert wrong.status_code == 401

    # A thread a mention started (no environment matched: only a notice) records that mention as its first message.
    mention = json.loads((PAYLOADS / "slack_app_mention.json").read_text())
    mention["event"].update(text="<@U0BOT00001> [env:nowhere] the checkout page returns a 500", ts="1712000100.000100",
                            event_ts="1712000100.000100")
    assert (await post(anonymous, path, slack(mention))).status_code == 202
    started = await client.post(ATTACH, json={**body, "thread_ts": "1712000100.000100"})
    assert started.status_code == 200, started.text
    assert started.json()["thread"]["metadata"] == {
        "channel_id": "C123ABC456", "thread_ts": "1712000100.000100", "message_ts": "1712000100.000100",
        "original_message": "the checkout page returns a 500", "user_id": "U123ABC456"}
    assert len(stand_in.made("GET", r"/slack/conversations.replies")) == 2  # not asked for a thread it knew

    # Every attach is in the audit log (none of the refused ones), by who did it, with the thread's workspace
    # before and after.
    events = (await client.get("/v1/audit-log", params={"action": "slack_thread.attach", "limit": 100})).json()
    attaches = [(e["actor_name"], (e["before"] or {}).get("workspace_id"), e["after"]["workspace_id"],
                 e["after"]["thread_ts"], e["resource_type"]) for e in events["audit_events"]]
    agent_name = f"workspace:{made['name']}"
    assert sorted(attaches, key=str) == sorted([
        ("api_key:test", None, other["id"], THREAD_TS, "slack_thread"),
        ("api_key:test", other["id"], made["id"], THREAD_TS, "slack_thread"),
        (agent_name, None, made["id"], "1712000095.0001", "slack_thread"),
        (agent_name, made["id"], made["id"], THREAD_TS, "slack_thread"),
        ("api_key:test", None, made["id"], "1712000100.000100", "slack_thread")], key=str)
