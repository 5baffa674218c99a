"""The agent in GitHub's loop, end to end: signed deliveries in GitHub's documented shapes into the real receiver,
the real Claude Code behind the scripted model in a real workspace, and GitHub's REST API played by a loopback
stand-in that records what GitHub would see.

The agent "opens a pull request" the way a workspace does: it commits on a branch, and the engine's publish path
pushes it and calls `POST /repos/acme/shop/pulls` (GITHUB_API_URL points at the stand-in). The checkout's origin
is renamed to the GitHub URL for that, with git's `insteadOf` sending the push to the local bare origin.
"""

from __future__ import annotations

import asyncio
import copy
import uuid

import pytest
from sqlalchemy import select

from replicas.store.team_models import TeamMessage, TeamThread
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
from tests.replicas.conftest import create, row_of, status_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.replica_settings(**FAST),
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


async def test_mention_to_pull_request_to_comment_then_reviews_checks_and_merge(app, client, anonymous,
                                                                                replica_env, model, stand_in):
    await github_variables(client, replica_env, stand_in)
    path = await connect(client, stand_in, "github", allowed_logins=["octocat", "@Hubot"],
                         bot_login="replicas-bot[bot]")
    model.add_turn(open_pull_request(),
                   Text("Plan: answer 400 for an empty cart. Done: checkout() now returns 400."))

    # An allowed login mentions @replicas on an issue: a workspace (source github) on acme/shop.
    mention = payload("github_issue_comment_mention")
    response = await post(anonymous, path, github(mention, event="issue_comment", delivery="d-mention"))
    assert response.status_code == 202, response.text
    [workspace] = await wait_for(lambda: github_workspaces(app), what="the github workspace")
    assert workspace.config["capabilities"]["pr_followups"] is True

    # The turn opened the pull request through the engine's publish path, then the issue got the comment.
    [comment] = await comments_on(stand_in, 12)
    [opened] = stand_in.made("POST", r"/github/repos/acme/shop/pulls$")
    assert opened.body["head"] == BRANCH and opened.body["base"] == "main"
    assert opened.headers["Authorization"] == "Bearer ghs_workspace_token"
    assert "Pull request: https://github.com/acme/shop/pull/7" in comment["body"]
    assert "checkout() now returns 400" in comment["body"]
    [posted] = stand_in.made("POST", r"/issues/12/comments$")
    assert posted.headers["Authorization"] == "Bearer ghs_installation_token"
    first = _sent_text(model, 0)
    assert "Checkout returns a 500 for an empty cart" in first and "Expected a friendly message" in first
    assert "@replicas can you fix this?" in first and "Plan first" in first

    # A redelivery and the server's own comment (GitHub delivers it too) reach nobody.
    assert (await post(anonymous, path, github(mention, event="issue_comment", delivery="d-mention"))
            ).status_code == 202
    own = copy.deepcopy(mention)
    own["comment"].update(id=comment_id(stand_in), body=comment["body"] + "\n\n@replicas", user={
        "login": "replicas-bot[bot]", "id": 99999, "type": "Bot"})
    own["sender"] = own["comment"]["user"]
    assert (await post(anonymous, path, github(own, event="issue_comment"))).status_code == 202
    # Someone not on the allow-list cannot start or steer anything.
    stranger = copy.deepcopy(mention)
    stranger["comment"]["user"] = stranger["sender"] = {"login": "mallory", "id": 1, "type": "User"}
    assert (await post(anonymous, path, github(stranger, event="issue_comment"))).status_code == 202

    # Two review comments in a burst: one follow-up message to the same workspace, then a comment on the PR.
    model.add_turn(Text("Addressed both review comments."))
    review = payload("github_pull_request_review_comment")
    second = copy.deepcopy(review)
    second["comment"].update(id=1800000002, path="checkout.py", line=2, body="Add a test for this.")
    for body, delivery in ((review, "d-review-1"), (second, "d-review-2")):
        assert (await post(anonymous, path, github(body, event="pull_request_review_comment", delivery=delivery))
                ).status_code == 202
    sent = await prompt_with(model, "Review comments on")
    assert "Review comments on https://github.com/acme/shop/pull/7" in sent
    assert "`app.py:3` (@hubot): An empty cart should answer 400" in sent
    assert "`checkout.py:2` (@hubot): Add a test for this." in sent
    [reply] = await comments_on(stand_in, 7)
    assert "Addressed both review comments." in reply["body"]
    assert len(await github_workspaces(app)) == 1

    # A failed check run: the job's name and the tail of its log.
    stand_in.logs[31000000001] = "\n".join(f"line {n}" for n in range(200)) + \
        "\nFAILED tests/test_app.py::test_empty_cart - assert 500 == 400\n"
    model.add_turn(Text("Fixed the failing test."))
    check = payload("github_check_run_failed")
    assert (await post(anonymous, path, github(check, event="check_run", delivery="d-check"))).status_code == 202
    sent = await prompt_with(model, "CI failed on")
    assert "CI failed on" in sent and "### test (3.12) (failure)" in sent
    assert "FAILED tests/test_app.py::test_empty_cart - assert 500 == 400" in sent and "line 199" in sent
    assert "line 10\n" not in sent  # only the tail
    await comments_on(stand_in, 7, count=2)
    # The same job reported again (a redelivery, or the workflow run) is not sent twice.
    assert (await post(anonymous, path, github(check, event="check_run", delivery="d-check-again"))
            ).status_code == 202

    # Merged: the last tracked pull request closed, so the workspace is archived after the grace period.
    closed = payload("github_pull_request_closed")
    assert (await post(anonymous, path, github(closed, event="pull_request", delivery="d-merged"))
            ).status_code == 202
    await wait_for(lambda: _status_is(app, str(workspace.id), "archived"), timeout=30, what="the archive")
    assert turns(model) == 3
    async with app.state.sessions() as session:
        kinds = sorted(m.kind for m in await session.scalars(select(TeamMessage)))
    assert kinds == ["check_failed", "mention", "pr_closed", "review", "review"]


def comment_id(stand_in) -> int:
    return stand_in.next_id  # the id of the comment the stand-in made last


async def _status_is(app, workspace_id: str, status: str) -> bool:
    return await status_of(app, workspace_id) == status


async def test_keep_open_on_pr_merge_keeps_the_workspace(app, client, anonymous, replica_env, model, stand_in):
    """Any workspace's pull request is tracked (here one created through the API): merged, it stays open when
    its preference says so."""
    await github_variables(client, replica_env, stand_in)
    path = await connect(client, stand_in, "github", allowed_logins=["octocat"])
    model.add_turn(open_pull_request(), Text("Opened the pull request."))
    created = await create(client, replica_env, "Fix the empty cart",
                           config={"preferences": {"keep_open_on_pr_merge": True}})

    async def has_pull_request():
        row = await row_of(app, created["id"])
        return row.pull_requests if row.pull_requests and row.status == "active" else None

    [pull] = await wait_for(has_pull_request, timeout=120, what="the pull request")
    assert pull["url"] == "https://github.com/acme/shop/pull/7"
    response = await post(anonymous, path, github(payload("github_pull_request_closed"), event="pull_request"))
    assert response.status_code == 202
    async with app.state.sessions() as session:
        [thread] = list(await session.scalars(select(TeamThread).where(TeamThread.key == "github:acme/shop#7")))
    assert thread.state == "merged" and thread.archive_at is None and thread.workspace_id == uuid.UUID(created["id"])
    await asyncio.sleep(FAST["pr_close_grace_seconds"] + 4 * FAST["team_loop_interval_seconds"])
    assert await status_of(app, created["id"]) == "active"



async def test_a_pull_request_closed_unmerged_archives_its_workspace_unless_keep_open_on_pr_close(
        app, client, anonymous, replica_env, model, stand_in):
    """Closed without merging: the workspace whose last tracked pull request it was is archived after the grace
    period, except one whose preferences say `keep_open_on_pr_close` (`keep_open_on_pr_merge` does not count)."""
    await github_variables(client, replica_env, stand_in)
    path = await connect(client, stand_in, "github", allowed_logins=["octocat"])
    created = {}
    for number, (name, preferences, branch) in enumerate((
            ("kept", {"keep_open_on_pr_close": True}, BRANCH),
            ("closed", {"keep_open_on_pr_merge": True}, "replicas/other-fix")), start=7):
        model.add_turn(open_pull_request(branch), Text(f"Opened pull request {number}."))
        created[name] = await create(client, replica_env, f"Fix it ({name})", name=name,
                                     config={"preferences": preferences})

        async def has_pull_request(rid=created[name]["id"]):
            row = await row_of(app, rid)
            return row.pull_requests if row.pull_requests and row.status == "active" else None

        [pull] = await wait_for(has_pull_request, timeout=120, what=f"pull request {number}")
        assert pull["url"] == f"https://github.com/acme/shop/pull/{number}"
        closed = copy.deepcopy(payload("github_pull_request_closed"))
        closed["number"] = number
        closed["pull_request"].update(number=number, merged=False, merged_at=None,
                                      html_url=f"https://github.com/acme/shop/pull/{number}",
                                      head={**closed["pull_request"]["head"], "ref": branch})
        response = await post(anonymous, path, github(closed, event="pull_request", delivery=f"d-close-{number}"))
        assert response.status_code == 202
        async with app.state.sessions() as session:
            [thread] = list(await session.scalars(select(TeamThread).where(
                TeamThread.key == f"github:acme/shop#{number}")))
        assert thread.state == "closed" and thread.workspace_id == uuid.UUID(created[name]["id"])

    await wait_for(lambda: _status_is(app, created["closed"]["id"], "archived"), timeout=30, what="the archive")
    await asyncio.sleep(FAST["pr_close_grace_seconds"] + 4 * FAST["team_loop_interval_seconds"])
    assert await status_of(app, created["kept"]["id"]) == "active"


async def test_a_mention_on_someone_elses_pull_request_starts_a_workspace_on_its_branch(
        app, client, anonymous, replica_env, model, stand_in):
    """`@replicas` on a pull request no workspace opened: a new workspace (source github) whose first message
    names the pull request's branch, read through GitHub's API, and asks for the work there; the answer comes
    back as a comment on that pull request."""
    await github_variables(client, replica_env, stand_in)
    path = await connect(client, stand_in, "github", allowed_logins=["octocat"])
    stand_in.pulls[42] = {"number": 42, "state": "open", "html_url": "https://github.com/acme/shop/pull/42",
                          "head": {"ref": "octocat/faster-cart", "sha": "c" * 40}, "base": {"ref": "main"},
                          "mergeable": True, "mergeable_state": "clean"}
    mention = copy.deepcopy(payload("github_issue_comment_mention"))
    mention["issue"].update(number=42, title="Make the cart faster", body="It is slow with 100 items.",
                            html_url="https://github.com/acme/shop/pull/42",
                            pull_request={"url": "https://api.github.com/repos/acme/shop/pulls/42",
                                          "html_url": "https://github.com/acme/shop/pull/42"})
    mention["comment"]["body"] = "@replicas please add a benchmark for this"
    model.add_turn(Text("Added a benchmark on the branch."))
    response = await post(anonymous, path, github(mention, event="issue_comment", delivery="d-pr-mention"))
    assert response.status_code == 202, response.text
    [workspace] = await wait_for(lambda: github_workspaces(app), what="the github workspace")
    sent = await prompt_with(model, "please add a benchmark")
    assert "`git fetch origin octocat/faster-cart && git switch octocat/faster-cart`" in sent, sent
    assert stand_in.made("GET", r"/github/repos/acme/shop/pulls/42$")
    [comment] = await comments_on(stand_in, 42)
    assert "Added a benchmark on the branch." in comment["body"]
    async with app.state.sessions() as session:
        [thread] = list(await session.scalars(select(TeamThread).where(TeamThread.key == "github:acme/shop#42")))
    assert thread.workspace_id == workspace.id and thread.details["head_branch"] == "octocat/faster-cart"


async def test_a_sleeping_workspace_wakes_for_a_review_and_one_without_pr_followups_gets_none(
        app, client, anonymous, replica_env, model, stand_in):
    """A review comment on the pull request of a workspace that sleeps wakes it and reaches it as a follow-up;
    the same on the pull request of a workspace created with `capabilities.pr_followups: false` reaches nobody."""
    await github_variables(client, replica_env, stand_in)
    path = await connect(client, stand_in, "github", allowed_logins=["octocat", "hubot"])
    made = {}
    for number, (name, capabilities, branch) in enumerate((
            ("sleeper", {}, BRANCH), ("quiet", {"pr_followups": False}, "replicas/quiet-fix")), start=7):
        model.add_turn(open_pull_request(branch), Text(f"Opened pull request {number}."))
        made[name] = (await create(client, replica_env, f"Fix it ({name})", name=name,
                                   config={"capabilities": capabilities}))["id"]

        async def has_pull_request(rid=made[name]):
            row = await row_of(app, rid)
            return row.pull_requests if row.pull_requests and row.status == "active" else None

        await wait_for(has_pull_request, timeout=120, what=f"pull request {number}")
    assert (await client.post(f"/v1/workspaces/{made['sleeper']}/sleep")).status_code == 200
    assert await status_of(app, made["sleeper"]) == "sleeping"

    prompts = len(model.model_requests())
    quiet_review = copy.deepcopy(payload("github_pull_request_review_comment"))
    quiet_review["pull_request"].update(number=8, html_url="https://github.com/acme/shop/pull/8",
                                        head={**quiet_review["pull_request"]["head"], "ref": "replicas/quiet-fix"})
    quiet_review["comment"]["id"] = 1800000099
    assert (await post(anonymous, path, github(quiet_review, event="pull_request_review_comment",
                                               delivery="d-quiet"))).status_code == 202

    model.add_turn(Text("Woke up and addressed it."))
    review = payload("github_pull_request_review_comment")
    assert (await post(anonymous, path, github(review, event="pull_request_review_comment", delivery="d-sleeper"))
            ).status_code == 202
    sent = await prompt_with(model, "Review comments on https://github.com/acme/shop/pull/7")
    assert "An empty cart should answer 400" in sent
    assert await status_of(app, made["sleeper"]) == "active"
    [reply] = await comments_on(stand_in, 7)
    assert "Woke up and addressed it." in reply["body"]
    await asyncio.sleep(FAST["review_batch_seconds"] + 4 * FAST["team_loop_interval_seconds"])
    assert len(model.model_requests()) == prompts + 1  # the quiet workspace's review went nowhere
    assert not any("/pull/8" in _sent_text(model, n) for n in range(len(model.model_requests())))
