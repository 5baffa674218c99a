"""GitLab deliveries that name no merge request, end to end: a failed branch pipeline (its hook has no
`merge_request`) reaches the workspace of the tracked merge request whose source is that branch, and a push to the
base branch makes the loop read its tracked merge requests, one of which GitLab says has conflicts now."""

from __future__ import annotations

import asyncio

import pytest

from replicas.testing import Text
from tests.automations.test_receivers import post
from tests.integrations.conftest import (
    BRANCH,
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

pytestmark = [pytest.mark.slow, pytest.mark.replica_settings(**FAST),
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

MERGE_REQUEST = "https://gitlab.example.com/acme/shop/-/merge_requests/1"


async def test_a_branch_pipeline_and_a_push_to_main_reach_the_merge_requests_workspace(app, client, anonymous,
                                                                                      replica_env, model, stand_in):
    path = await connect(client, stand_in, "gitlab", allowed_logins=["octocat"], bot_login="replicas-bot")
    model.add_turn(open_pull_request(origin=GITLAB_ORIGIN), Text("Done: checkout() now returns 400."))
    assert (await post(anonymous, path, gitlab_hook(payload("gitlab_issue_note_mention"), "Note Hook"))
            ).status_code == 202
    await notes_on(stand_in, "issues/4", 1)  # the merge request is opened and tracked

    # A branch pipeline (source push, `ref` the branch, no merge request in the hook) fails: its failed job and
    # trace tail go to the workspace as a follow-up on the merge request, answered there.
    stand_in.logs[52011] = "collected 12 items\nFAILED tests/test_app.py::test_totals - assert 9 == 10\n"
    model.add_turn(Text("Fixed the totals test."))
    pipeline = payload("gitlab_pipeline_branch_failed")
    assert "merge_request" not in pipeline and pipeline["object_attributes"]["ref"] == BRANCH
    assert (await post(anonymous, path, gitlab_hook(pipeline, "Pipeline Hook", delivery="uuid-branch"))
            ).status_code == 202
    sent = await prompt_with(model, "CI failed on")
    assert f"CI failed on {MERGE_REQUEST} (commit eeeeeeeeeeee)" in sent and "### pytest (failed)" in sent
    assert "FAILED tests/test_app.py::test_totals - assert 9 == 10" in sent and "lint" not in sent
    [answer] = await notes_on(stand_in, "merge_requests/1", 1)
    assert answer.body["body"] == "Fixed the totals test."

    # A branch pipeline of a branch no merge request is tracked for reaches nobody.
    other = payload("gitlab_pipeline_branch_failed")
    other["object_attributes"]["ref"] = "someone/else"
    assert (await post(anonymous, path, gitlab_hook(other, "Pipeline Hook"))).status_code == 202

    # Someone pushes to main; GitLab checks the merge request again in the background ("checking" on the first
    # read), then says it has conflicts: a conflict follow-up, once it is known.
    stand_in.merge_requests[1].update(merge_status="checking", detailed_merge_status="checking")
    stand_in.after_read["gitlab", 1] = [{"has_conflicts": True, "merge_status": "cannot_be_merged",
                                         "detailed_merge_status": "conflict"}]
    model.add_turn(Text("Merged main and resolved the conflicts."))
    push = payload("gitlab_push_main")
    assert (await post(anonymous, path, gitlab_hook(push, "Push Hook", delivery="uuid-push"))).status_code == 202
    sent = await prompt_with(model, "has merge conflicts")
    assert f"The merge request {MERGE_REQUEST} has merge conflicts with `main`" in sent
    assert "Merge `origin/main` into its branch" in sent
    checking, read = stand_in.made("GET", r"/gitlab/projects/[^/]+/merge_requests/1$")
    assert {k.lower(): v for k, v in read.headers.items()}["private-token"] == "glpat-token"
    await notes_on(stand_in, "merge_requests/1", 2)

    # The same push again (a redelivery) asks nothing more.
    assert (await post(anonymous, path, gitlab_hook(push, "Push Hook", delivery="uuid-push"))).status_code == 202
    await asyncio.sleep(1.0)  # several watcher passes
    assert turns(model) == 3 and len(stand_in.made("POST", r"/merge_requests/1/notes$")) == 2
