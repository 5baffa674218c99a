"""The GitHub loop's other paths, end to end (signed deliveries in GitHub's documented shapes, the real receiver, the
real Claude Code behind the scripted model, GitHub's REST API played by the loopback stand-in): a push to the base
branch that leaves the workspace's pull request conflicting, a failed workflow run (its jobs listed through the API,
retried when it fails, answered in the background when it is slow, the failing one's name and log tail sent), a
closed issue archiving its workspace, and a review on a pull request whose workspace was deleted, which a new
workspace takes up on the pull request's branch."""

from __future__ import annotations

import copy
import threading
import time

import pytest

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
from tests.replicas.conftest import status_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.replica_settings(**FAST),
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

PULL = "https://github.com/acme/shop/pull/7"
RUN = 12000000002


async def status_is(app, workspace_id: str, status: str) -> bool:
    return await status_of(app, workspace_id) == status


async def test_conflicts_workflow_failure_issue_close_and_a_deleted_workspace(app, client, anonymous, replica_env,
                                                                              model, stand_in):
    await github_variables(client, replica_env, stand_in)
    path = await connect(client, stand_in, "github", allowed_logins=["octocat", "hubot"],
                         bot_login="replicas-bot[bot]")
    model.add_turn(open_pull_request(), Text("Opened the pull request."))
    assert (await post(anonymous, path, github(payload("github_issue_comment_mention"), event="issue_comment"))
            ).status_code == 202
    await comments_on(stand_in, 12)
    [workspace] = await github_workspaces(app)

    # Someone pushes to main and the pull request conflicts now: GitHub's answer on a read says so, and the
    # workspace is told to merge main and resolve them.
    stand_in.pulls[7].update(mergeable=False, mergeable_state="dirty")
    model.add_turn(Text("Merged main and resolved the conflicts."))
    assert (await post(anonymous, path, github(payload("github_push_main"), event="push"))).status_code == 202
    sent = await prompt_with(model, "has merge conflicts")
    assert f"The pull request {PULL} has merge conflicts with `main`" in sent
    assert "Merge `origin/main` into its branch" in sent
    assert stand_in.made("GET", r"/github/repos/acme/shop/pulls/7$")
    [answer] = await comments_on(stand_in, 7)
    assert answer["body"] == "Merged main and resolved the conflicts."

    # A failed workflow run: its jobs are listed through the API, and the failing one goes with its log's tail.
    stand_in.jobs[RUN] = [
        {"id": 31000000011, "run_id": RUN, "name": "lint", "status": "completed", "conclusion": "success",
         "html_url": f"https://github.com/acme/shop/actions/runs/{RUN}/job/31000000011"},
        {"id": 31000000012, "run_id": RUN, "name": "test (3.12)", "status": "completed", "conclusion": "failure",
         "html_url": f"https://github.com/acme/shop/actions/runs/{RUN}/job/31000000012"}]
    stand_in.logs[31000000012] = "\n".join(f"step {n}" for n in range(300)) + \
        "\nFAILED tests/test_app.py::test_missing_cart - KeyError: 'cart'\n"
    model.add_turn(Text("Fixed the missing-cart test."))
    workflow_run = payload("github_workflow_run_failed")
    # GitHub's API fails twice (502), then is slow: the listing is retried, and the delivery is answered within
    # `team_route_wait_seconds` (GitHub gives it 10 s) while the follow-up waits for the answer in the background.
    jobs_path = f"/github/repos/acme/shop/actions/runs/{RUN}/jobs"
    stand_in.fail_next = 2
    stand_in.held[("GET", jobs_path)] = gate = threading.Event()
    started = time.monotonic()
    assert (await post(anonymous, path, github(workflow_run, event="workflow_run", delivery="d-run"))
            ).status_code == 202
    assert time.monotonic() - started < 4
    assert len(stand_in.made("GET", jobs_path)) == 3
    assert not any("CI failed on" in _sent_text(model, n) for n in range(len(model.model_requests())))
    gate.set()
    sent = await prompt_with(model, "CI failed on")
    assert f"CI failed on {PULL} (commit ffffffffffff)" in sent
    assert f"### test (3.12) (failure)\nhttps://github.com/acme/shop/actions/runs/{RUN}/job/31000000012" in sent
    assert "FAILED tests/test_app.py::test_missing_cart - KeyError: 'cart'" in sent and "step 299" in sent
    assert "lint" not in sent and "step 10\n" not in sent
    listed = stand_in.made("GET", rf"/github/repos/acme/shop/actions/runs/{RUN}/jobs")[-1]
    assert listed.headers["Authorization"] == "Bearer ghs_installation_token"
    await comments_on(stand_in, 7, count=2)
    # The same run delivered again (GitHub retries) sends nothing new.
    assert (await post(anonymous, path, github(workflow_run, event="workflow_run", delivery="d-run"))
            ).status_code == 202

    # The issue is closed: its workspace is archived.
    assert (await post(anonymous, path, github(payload("github_issues_closed"), event="issues"))).status_code == 202
    await wait_for(lambda: status_is(app, str(workspace.id), "archived"), timeout=30, what="the archive")

    # The workspace is deleted; a review comment on its pull request starts a new one on the pull request's branch.
    assert (await client.delete(f"/v1/replica/{workspace.id}")).status_code == 200
    model.add_turn(Text("Addressed the review from a new workspace."))
    review = payload("github_pull_request_review_comment")
    assert (await post(anonymous, path, github(review, event="pull_request_review_comment", delivery="d-review"))
            ).status_code == 202
    sent = await prompt_with(model, "This workspace replaces one that was deleted")
    assert f"Review comments on {PULL}" in sent and "`app.py:3` (@hubot): An empty cart should answer 400" in sent
    assert f"`git fetch origin {BRANCH} && git switch {BRANCH}`" in sent
    [replacement] = await github_workspaces(app)  # the deleted one is gone
    assert replacement.id != workspace.id and replacement.environment_id == workspace.environment_id
    comments = await comments_on(stand_in, 7, count=3)
    assert comments[-1]["body"] == "Addressed the review from a new workspace."
    assert turns(model) == 4 and len(stand_in.made("POST", r"/issues/12/comments$")) == 1


async def test_a_check_run_that_names_no_pull_request_reaches_the_one_of_its_branch(app, client, anonymous,
                                                                                   replica_env, model, stand_in):
    """GitHub leaves a run's `pull_requests` empty for a pull request from a fork (or opened after the run began):
    the open tracked pull request whose head is the run's branch gets the failure; a run on another branch, none."""
    await github_variables(client, replica_env, stand_in)
    path = await connect(client, stand_in, "github", allowed_logins=["octocat"])
    model.add_turn(open_pull_request(), Text("Opened the pull request."))
    assert (await post(anonymous, path, github(payload("github_issue_comment_mention"), event="issue_comment"))
            ).status_code == 202
    await comments_on(stand_in, 12)

    def check_on(branch: str, run_id: int) -> dict:
        check = copy.deepcopy(payload("github_check_run_failed"))
        check["check_run"].update(id=run_id, pull_requests=[])
        check["check_run"]["check_suite"]["head_branch"] = branch
        return check

    stand_in.logs[31000000077] = "FAILED tests/test_app.py::test_total - assert 3 == 2\n"
    elsewhere = check_on("someone/else", 31000000078)
    assert (await post(anonymous, path, github(elsewhere, event="check_run", delivery="d-elsewhere"))
            ).status_code == 202
    model.add_turn(Text("Fixed the total."))
    assert (await post(anonymous, path, github(check_on(BRANCH, 31000000077), event="check_run",
                                               delivery="d-no-pr"))).status_code == 202
    sent = await prompt_with(model, "CI failed on")
    assert PULL in sent and "FAILED tests/test_app.py::test_total - assert 3 == 2" in sent
    [answer] = await comments_on(stand_in, 7)
    assert answer["body"] == "Fixed the total."
    assert turns(model) == 2  # the run on another branch reached nobody
