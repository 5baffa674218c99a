"""GitLab's loop beyond notes and pipelines, end to end (deliveries in GitLab's documented shapes into the real
receiver, the real Claude Code behind the scripted model, GitLab's REST API v4 played by the loopback stand-in):
a note by someone off the allow-list starts nothing and calls nothing; review comments on the merge request's diff
(`DiffNote`s) in a burst reach the workspace as one follow-up with file, line and text; closing the issue archives
the workspace, and a later note on its merge request wakes it again."""

from __future__ import annotations

import copy

import pytest

from replicas.testing import Text
from tests.automations.test_receivers import post
from tests.integrations.conftest import (
    FAST,
    GITLAB_ORIGIN,
    connect,
    gitlab_hook,
    notes_on,
    open_pull_request,
    payload,
    prompt_with,
    turns,
)
from tests.integrations.test_gitlab_loop import MERGE_REQUEST, gitlab_workspaces
from tests.replicas.conftest import status_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.replica_settings(**FAST),
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


async def test_allow_list_diff_review_comments_and_issue_close(app, client, anonymous, replica_env, model, stand_in):
    path = await connect(client, stand_in, "gitlab", allowed_logins=["octocat", "hubot"], bot_login="replicas-bot")
    mention = payload("gitlab_issue_note_mention")

    # Someone off the allow-list mentions @replicas: nothing starts, GitLab is not even called.
    stranger = copy.deepcopy(mention)
    stranger["user"] = {"id": 1666, "name": "Mallory", "username": "mallory", "avatar_url": None}
    stranger["object_attributes"].update(id=3011, author_id=1666)
    assert (await post(anonymous, path, gitlab_hook(stranger, "Note Hook"))).status_code == 202
    model.add_turn(open_pull_request(origin=GITLAB_ORIGIN), Text("Opened the merge request."))
    assert (await post(anonymous, path, gitlab_hook(mention, "Note Hook"))).status_code == 202
    [workspace] = await wait_for(lambda: gitlab_workspaces(app), what="the gitlab workspace")
    await notes_on(stand_in, "issues/4")
    assert turns(model) == 1 and "Mallory" not in str(stand_in.requests)

    # Two comments on lines of the merge request's diff, in a burst: one follow-up with both, answered on the MR.
    model.add_turn(Text("Addressed both review comments."))
    first = payload("gitlab_merge_request_diff_note")
    second = copy.deepcopy(first)
    second["object_attributes"].update(id=3031, note="Add a test for this.",
                                       url=f"{MERGE_REQUEST}#note_3031")
    second["object_attributes"]["position"].update(new_path="checkout.py", old_path="checkout.py", new_line=2)
    for body in (first, second):
        assert (await post(anonymous, path, gitlab_hook(body, "Note Hook"))).status_code == 202
    sent = await prompt_with(model, f"Review comments on {MERGE_REQUEST}:")
    assert "- `app.py:3` (@hubot): An empty cart should answer 400 with a message, not 500." in sent
    assert f"  {MERGE_REQUEST}#note_3030" in sent
    assert "- `checkout.py:2` (@hubot): Add a test for this." in sent
    [answer] = await notes_on(stand_in, "merge_requests/1")
    assert answer.body["body"] == "Addressed both review comments."
    assert turns(model) == 2

    # The issue is closed: its workspace is archived.
    closed = payload("gitlab_issue_closed")
    assert (await post(anonymous, path, gitlab_hook(closed, "Issue Hook"))).status_code == 202
    await wait_for(lambda: _status_is(app, str(workspace.id), "archived"), timeout=30, what="the archive")

    # A note on its merge request afterwards wakes the archived workspace, which answers there.
    model.add_turn(Text("Back on it: a missing cart answers 400 too."))
    note = payload("gitlab_merge_request_note")
    assert (await post(anonymous, path, gitlab_hook(note, "Note Hook"))).status_code == 202
    sent = await prompt_with(model, "please also answer 400 when the cart is missing")
    assert "@hubot on GitLab merge request acme/shop!1" in sent
    answers = await notes_on(stand_in, "merge_requests/1", count=2)
    assert answers[-1].body["body"] == "Back on it: a missing cart answers 400 too."
    assert await status_of(app, str(workspace.id)) == "active"
    assert len(await gitlab_workspaces(app)) == 1 and turns(model) == 3


async def _status_is(app, workspace_id: str, status: str) -> bool:
    return await status_of(app, workspace_id) == status
