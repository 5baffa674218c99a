"""The agent in Slack's and Linear's loops, end to end: signed Events API and Linear webhook deliveries into the
real receivers, the real Claude Code behind the scripted model, and the Slack Web API and Linear's GraphQL API
played by the loopback stand-in, which records what Slack and Linear would see: a Slack thread with follow-ups,
`[env:name]` and `/plan` in a mention, a Linear assignment and a Linear comment's mention."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from replicas.store.models import Workspace
from replicas.testing import Text
from tests.automations.test_receivers import linear, post, slack
from tests.integrations.conftest import FAST, connect, github_variables, open_pull_request, prompt_with, turns
from tests.replicas.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.replica_settings(**FAST),
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

PAYLOADS = Path(__file__).parent / "payloads"
ROOT_TS = "1712000001.000100"
REPLICAS_USER = "5f0c0a3e-7b2d-4d5e-9f11-replicas0001"


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def reply(ts: str, text: str) -> dict:
    body = payload("slack_thread_reply")
    body["event"].update(ts=ts, event_ts=ts, text=text)
    body["event_id"] = f"Ev{ts.replace('.', '')}"
    return body


async def thread_posts(stand_in, count: int) -> list[dict]:
    async def found():
        made = [r.body for r in stand_in.made("POST", r"/slack/chat.postMessage$")]
        return made if len(made) >= count else None

    return await wait_for(found, timeout=120, what=f"{count} message(s) in the thread")


async def workspaces_from(app, source: str) -> list[Workspace]:
    async with app.state.sessions() as session:
        return list(await session.scalars(select(Workspace).where(Workspace.source == source)))


async def test_a_slack_thread_is_one_workspace_with_follow_ups_and_replies(app, client, anonymous,
                                                                           replica_env, model, stand_in):
    path = await connect(client, stand_in, "slack")
    model.add_turn(Text("The checkout now answers 400 for an empty cart."))

    mention = payload("slack_app_mention")
    assert (await post(anonymous, path, slack(mention))).status_code == 202
    # Slack also delivers the mention as a channel message: the same message, nothing new.
    as_message = copy.deepcopy(mention)
    as_message["event"]["type"], as_message["event_id"] = "message", "Ev0MENTION02"
    assert (await post(anonymous, path, slack(as_message))).status_code == 202

    [first] = await thread_posts(stand_in, 1)
    assert first == {"channel": "C123ABC456", "thread_ts": ROOT_TS, "unfurl_links": False,
                     "text": "The checkout now answers 400 for an empty cart."}
    [reaction] = stand_in.made("POST", r"/slack/reactions.add$")
    assert reaction.body == {"channel": "C123ABC456", "timestamp": ROOT_TS, "name": "eyes"}
    assert reaction.headers["Authorization"] == "Bearer xoxb-bot-token"
    [workspace] = await workspaces_from(app, "slack")
    sent = await prompt_with(model, "A request from Slack")
    assert "the checkout page returns a 500 when the cart is empty" in sent
    assert "<@U0BOT00001>" not in sent and "[env:shop]" not in sent

    # Two follow-ups in the thread, each answered in the thread by the same workspace.
    for n, (ts, text) in enumerate((("1712000050.000200", "Also keep the cart page working."),
                                    ("1712000060.000300", "And add a test, please.")), start=2):
        model.add_turn(Text(f"Done with follow-up {n - 1}."))
        assert (await post(anonymous, path, slack(reply(ts, text)))).status_code == 202
        assert text in await prompt_with(model, text)
        posts = await thread_posts(stand_in, n)
        assert posts[-1]["text"] == f"Done with follow-up {n - 1}." and posts[-1]["thread_ts"] == ROOT_TS

    # A redelivered or an older message is not sent again; the bot's own posts are not messages to it.
    assert (await post(anonymous, path, slack(reply("1712000060.000300", "And add a test, please.")))
            ).status_code == 202
    assert (await post(anonymous, path, slack(reply("1712000055.000000", "an edit from the past")))
            ).status_code == 202
    own = reply("1712000070.000400", "Done with follow-up 2.")
    own["event"]["bot_id"] = "B0BOT"
    assert (await post(anonymous, path, slack(own))).status_code == 202
    assert turns(model) == 3 and len(await workspaces_from(app, "slack")) == 1
    assert workspace.id == (await workspaces_from(app, "slack"))[0].id
    assert len(stand_in.made("POST", r"/slack/reactions.add$")) == 1


async def test_a_linear_issue_assigned_to_replicas_gets_a_workspace_and_the_pull_request_link(
        app, client, anonymous, replica_env, model, stand_in):
    await github_variables(client, replica_env, stand_in)
    path = await connect(client, stand_in, "linear", bot_user_id=REPLICAS_USER,
                         default_environment_id=replica_env.environment_id)
    model.add_turn(open_pull_request(), Text("Opened a pull request: empty carts get a 400."))
    assigned = payload("linear_issue_assigned")
    assert (await post(anonymous, path, linear(assigned))).status_code == 202

    async def commented():
        return stand_in.made("POST", r"/linear/graphql$")

    [comment] = await wait_for(commented, timeout=120, what="the comment on the Linear issue")
    assert "commentCreate" in comment.body["query"] and comment.headers["Authorization"] == "lin_api_key"
    issue_input = comment.body["variables"]["input"]
    assert issue_input["issueId"] == "2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9"
    assert "Pull request: https://github.com/acme/shop/pull/7" in issue_input["body"]
    assert "empty carts get a 400" in issue_input["body"]
    [workspace] = await workspaces_from(app, "linear")
    sent = await prompt_with(model, "Linear issue ENG-123")
    assert "Checkout fails for an empty cart" in sent and "Plan first" in sent

    # Assigned again (another update of the same issue): the issue already has its workspace; no new one.
    other = copy.deepcopy(assigned)
    other["updatedFrom"] = {"updatedAt": "2026-11-30T12:05:00.000Z", "priority": 3}
    assert (await post(anonymous, path, linear(other))).status_code == 202
    assert len(await workspaces_from(app, "linear")) == 1 and workspace.source == "linear"

    # The issue is completed (moved to a state of type `completed`): its workspace is archived.
    done = copy.deepcopy(assigned)
    done["data"].update(stateId="d0e5e0a1-0000-4000-8000-0000000000d0", state={
        "id": "d0e5e0a1-0000-4000-8000-0000000000d0", "color": "#5e6ad2", "name": "Done", "type": "completed"})
    done["updatedFrom"] = {"updatedAt": "2026-11-30T12:00:00.000Z", "stateId": assigned["data"]["stateId"]}
    assert (await post(anonymous, path, linear(done))).status_code == 202
    await wait_for(lambda: _status_is(app, workspace.id, "archived"), timeout=30, what="the archive")
    assert turns(model) == 1 and len(stand_in.made("POST", r"/linear/graphql$")) == 1


async def _status_is(app, workspace_id, status: str) -> bool:
    async with app.state.sessions() as session:
        return (await session.get(Workspace, workspace_id)).status == status


async def test_a_slack_mention_picks_its_environment_by_name_and_asks_for_plan_mode(app, client, anonymous,
                                                                                   replica_env, model, stand_in):
    """`[env:name]` chooses among the organization's environments (here not the default), and `/plan` starts the
    workspace in plan mode; neither reaches the agent's text."""
    other = await client.post("/v1/environments", json={"name": "Shop API",
                                                        "repository_id": replica_env.repository_id})
    assert other.status_code == 201, other.text
    other_id = other.json()["environment"]["id"]
    for key, value in {**model.anthropic_env(), "REPLICAS_AGENT_MAX_RETRIES": "1"}.items():
        assert (await client.post(f"/v1/environments/{other_id}/variables",
                                  json={"key": key, "value": value})).status_code == 201
    path = await connect(client, stand_in, "slack", default_environment_id=replica_env.environment_id)
    model.add_turn(Text("Plan: split checkout() into validate() and charge()."))
    mention = payload("slack_app_mention")
    mention["event"]["text"] = "<@U0BOT00001> /plan [env:Shop API] how would you split checkout()?"
    assert (await post(anonymous, path, slack(mention))).status_code == 202
    [workspace] = await wait_for(lambda: workspaces_from(app, "slack"), what="the slack workspace")
    assert str(workspace.environment_id) == other_id
    sent = await prompt_with(model, "how would you split checkout()?")
    assert "/plan how" not in sent and "/plan [env" not in sent and "[env:" not in sent
    request = model.model_requests()[-1].conversation_text()
    assert "plan mode" in request.lower(), request[-1500:]  # Claude Code's own plan-mode instructions
    [answer] = await thread_posts(stand_in, 1)
    assert answer["text"] == "Plan: split checkout() into validate() and charge()."


async def test_a_mention_in_a_linear_comment_starts_a_workspace_and_answers_on_the_issue(
        app, client, anonymous, replica_env, model, stand_in):
    path = await connect(client, stand_in, "linear", bot_user_id=REPLICAS_USER,
                         default_environment_id=replica_env.environment_id)
    model.add_turn(Text("Looked into it: the cart total is computed twice."))
    comment = {"type": "Comment", "action": "create", "createdAt": "2026-11-30T12:00:00.000Z",
               "actor": {"id": "u-jane", "name": "Jane", "type": "user"},
               "data": {"id": "c1a2b3c4-0000-4000-8000-00000000c001", "body": "@replicas can you take this?",
                        "userId": "u-jane", "issueId": "i1a2b3c4-0000-4000-8000-0000000000i1",
                        "issue": {"id": "i1a2b3c4-0000-4000-8000-0000000000i1", "identifier": "ENG-7",
                                  "title": "The cart total is wrong"}},
               "url": "https://linear.app/acme/issue/ENG-7#comment-c1a2b3c4", "webhookTimestamp": 1764504000000}
    assert (await post(anonymous, path, linear(comment))).status_code == 202
    [workspace] = await wait_for(lambda: workspaces_from(app, "linear"), what="the linear workspace")
    sent = await prompt_with(model, "can you take this?")
    assert "ENG-7" in sent and "The cart total is wrong" in sent

    async def commented():
        return stand_in.made("POST", r"/linear/graphql$")

    [answer] = await wait_for(commented, timeout=120, what="the comment on the Linear issue")
    assert answer.body["variables"]["input"]["issueId"] == "i1a2b3c4-0000-4000-8000-0000000000i1"
    assert "the cart total is computed twice" in answer.body["variables"]["input"]["body"]
    # Linear delivers the server's own comment too: it starts nothing.
    own = copy.deepcopy(comment)
    own["data"].update(id="c1a2b3c4-0000-4000-8000-00000000c002", userId=REPLICAS_USER,
                       body=answer.body["variables"]["input"]["body"] + "\n\n@replicas")
    own["actor"] = {"id": REPLICAS_USER, "name": "Replicas", "type": "user"}
    assert (await post(anonymous, path, linear(own))).status_code == 202
    assert len(await workspaces_from(app, "linear")) == 1 and turns(model) == 1 and workspace.source == "linear"
