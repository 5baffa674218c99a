"""The GitHub loop's reviews and its own traffic, end to end (signed deliveries in GitHub's documented shapes, the
real receiver, the real Claude Code behind the scripted model, GitHub's REST API played by the loopback stand-in):
a review that requests changes reaches the pull request's workspace as a follow-up; an approval does not; the
workspace's own push of its branch, GitHub's `synchronize` of its pull request and the server's own review
comment reach nobody; and a server with another mention handle answers to that handle only."""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import func, select

from replicas.store.team_models import TeamMessage
from replicas.testing import Text
from tests.automations.test_receivers import _sent_text, github, post
from tests.integrations.conftest import (
    BRANCH,
    FAST,
    comments_on,
    connect,
    github_variables,
    github_workspaces,
    open_pull_request,
    payload,
    prompt_with,
    turns,
)
from tests.replicas.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

PULL = "https://github.com/acme/shop/pull/7"


async def _messages(app) -> int:
    async with app.state.sessions() as session:
        return await session.scalar(select(func.count()).select_from(TeamMessage))


async def _opened(app, client, anonymous, replica_env, model, stand_in) -> str:
    """A mention on issue 12 whose workspace opened pull request 7; returns the receiver's path."""
    await github_variables(client, replica_env, stand_in)
    path = await connect(client, stand_in, "github", allowed_logins=["octocat", "hubot"],
                         bot_login="replicas-bot[bot]")
    model.add_turn(open_pull_request(), Text("Opened the pull request."))
    assert (await post(anonymous, path, github(payload("github_issue_comment_mention"), event="issue_comment"))
            ).status_code == 202
    await comments_on(stand_in, 12)
    return path


@pytest.mark.replica_settings(**FAST)
async def test_a_review_requesting_changes_is_a_follow_up_and_the_workspaces_own_traffic_is_not(
        app, client, anonymous, replica_env, model, stand_in):
    path = await _opened(app, client, anonymous, replica_env, model, stand_in)
    [workspace] = await github_workspaces(app)

    # "Request changes" with a body: the workspace gets it, and its answer goes on the pull request.
    model.add_turn(Text("Validated the cart first; the 500 path stays for real errors."))
    review = payload("github_pull_request_review_changes_requested")
    assert (await post(anonymous, path, github(review, event="pull_request_review", delivery="d-changes"))
            ).status_code == 202
    sent = await prompt_with(model, f"Review comments on {PULL}:")
    assert ("- review (@octocat): Please validate the cart before checkout, and keep the 500 path for real "
            "errors.\n  https://github.com/acme/shop/pull/7#pullrequestreview-2100000002") in sent
    [answer] = await comments_on(stand_in, 7)
    assert answer["body"] == "Validated the cart first; the 500 path stays for real errors."
    settled = await _messages(app)

    # An approval (no mention), the workspace's own push of its branch, GitHub's `synchronize` of the pull request
    # that push caused, and a review comment the server's bot wrote: none of them is a message to anyone.
    approved = copy.deepcopy(review)
    approved["review"].update(id=2100000003, state="approved", body="Looks good.")
    own_push = payload("github_push_main")
    own_push.update(ref=f"refs/heads/{BRANCH}", before="f" * 40, after="5" * 40,
                    pusher={"name": "replicas-bot[bot]", "email": "bot@example.com"},
                    sender={"login": "replicas-bot[bot]", "id": 99999, "type": "Bot"})
    synchronize = {"action": "synchronize", "number": 7, "before": "f" * 40, "after": "5" * 40,
                   "pull_request": {**review["pull_request"], "mergeable": None, "mergeable_state": "unknown",
                                    "head": {**review["pull_request"]["head"], "sha": "5" * 40}},
                   "repository": review["repository"], "sender": own_push["sender"]}
    bot_comment = payload("github_pull_request_review_comment")
    bot_comment["comment"].update(id=1800000099, body="Noted: validating the cart now. @replicas",
                                  user={"login": "replicas-bot[bot]", "id": 99999, "type": "Bot"})
    bot_comment["sender"] = bot_comment["comment"]["user"]
    for body, event in ((approved, "pull_request_review"), (own_push, "push"), (synchronize, "pull_request"),
                        (bot_comment, "pull_request_review_comment")):
        response = await post(anonymous, path, github(body, event=event))
        assert response.status_code == 202, (event, response.text)
    # A delivery that is acted on gets its work done before the next one of the provider is; this mention (another
    # comment on the issue, by an allowed login) is the marker that everything before it was handled.
    model.add_turn(Text("Still on it."))
    marker = payload("github_issue_comment_mention")
    marker["comment"].update(id=1700000099, body="@replicas how is it going?")
    assert (await post(anonymous, path, github(marker, event="issue_comment"))).status_code == 202
    await prompt_with(model, "how is it going?")
    assert await _messages(app) == settled + 1
    assert turns(model) == 3 and len(await github_workspaces(app)) == 1
    assert not any("Looks good." in _sent_text(model, n) or "Noted: validating" in _sent_text(model, n)
                   for n in range(len(model.model_requests())))
    assert len(stand_in.made("POST", r"/issues/7/comments$")) == 1
    assert workspace.id == (await github_workspaces(app))[0].id


@pytest.mark.replica_settings(**FAST, mention_handle="acme-agent")
async def test_a_server_with_its_own_mention_handle_answers_to_that_handle_only(
        app, client, anonymous, replica_env, model, stand_in):
    await github_variables(client, replica_env, stand_in)
    path = await connect(client, stand_in, "github", allowed_logins=["octocat"], bot_login="replicas-bot[bot]")
    ignored = payload("github_issue_comment_mention")  # "@replicas can you fix this?"
    assert (await post(anonymous, path, github(ignored, event="issue_comment"))).status_code == 202
    model.add_turn(Text("On it."))
    named = copy.deepcopy(ignored)
    named["comment"].update(id=1700000042, body="@Acme-Agent can you fix this? (@replicas is not us)")
    assert (await post(anonymous, path, github(named, event="issue_comment"))).status_code == 202
    [workspace] = await wait_for(lambda: github_workspaces(app), what="the github workspace")
    sent = await prompt_with(model, "@Acme-Agent can you fix this?")
    assert "Checkout returns a 500 for an empty cart" in sent
    [comment] = await comments_on(stand_in, 12)
    assert "On it." in comment["body"] and workspace.source == "github"
    assert turns(model) == 1 and await _messages(app) == 1
