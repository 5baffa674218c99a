"""`POST /v1/slack/threads/attach` (contract §3.10): a Slack thread routed to a workspace made through the API; a
reply in the thread (a signed Events API delivery) then reaches that workspace, whose answer the real Claude Code
writes and the Slack stand-in receives in the thread. Agent mode attaches only to its own workspace; the errors."""

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

    # Attach to the other workspace first, then switch the thread to this one.
    assert (await client.post(ATTACH, json={**body, "workspace_id": other["id"]})).status_code == 200
    response = await client.post(ATTACH, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    validate_schema(answer, "SlackThreadAttachResponse")
    assert answer["workspace"] == {"id": made["id"], "name": made["name"]}
    assert answer["thread"]["workspace_id"] == made["id"] and answer["thread"]["slack_team_id"] == "T123ABC456"
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
    forbidden = await anonymous.post(ATTACH, headers=agent, json={**body, "workspace_id": other["id"]})
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "The workspace agent cannot route this " \
        "Slack thread"
    wrong = await anonymous.post(ATTACH, headers={**agent, "Authorization": "Bearer guessed"}, json=body)
    assert wrong.status_code == 401
