"""The agent in GitLab's loop, end to end: webhook deliveries in GitLab's documented shapes (note, pipeline and merge
request hooks, `X-Gitlab-Token`, `X-Gitlab-Event-UUID`) into the real receiver, the real Claude Code behind the
scripted model in a real workspace, and GitLab's REST API (v4) played by a loopback stand-in that records what
GitLab would see.

The agent commits on a branch of a checkout whose origin is gitlab.example.com/acme/shop (git's `insteadOf` sends the
push to a bare repository in the workspace); the engine pushes it, and the team loop opens its merge request through
GitLab's API before it answers on the issue.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from replicas.store.models import Workspace
from replicas.store.team_models import TeamMessage, TeamThread
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
    prompt_with,
    turns,
)
from tests.replicas.conftest import status_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.replica_settings(**FAST),
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

PAYLOADS = Path(__file__).parent / "payloads"
MERGE_REQUEST = "https://gitlab.example.com/acme/shop/-/merge_requests/1"


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def header(recorded, name: str) -> str | None:
    return {key.lower(): value for key, value in recorded.headers.items()}.get(name.lower())


async def gitlab_workspaces(app) -> list[Workspace]:
    async with app.state.sessions() as session:
        return list(await session.scalars(select(Workspace).where(Workspace.source == "gitlab")))


async def test_note_to_merge_request_to_note_then_follow_ups_and_merge(app, client, anonymous, replica_env, model,
                                                                       stand_in):
    path = await connect(client, stand_in, "gitlab", allowed_logins=["octocat", "hubot"], bot_login="replicas-bot")
    model.add_turn(open_pull_request(origin=GITLAB_ORIGIN),
                   Text("Plan: answer 400 for an empty cart. Done: checkout() now returns 400."))
    mention = payload("gitlab_issue_note_mention")

    # A forged X-Gitlab-Token is refused before anything is parsed: no workspace, no call to GitLab.
    forged = await post(anonymous, path, gitlab_hook(mention, "Note Hook", token="guessed"))
    assert forged.status_code == 401
    assert await gitlab_workspaces(app) == [] and stand_in.requests == []

    # An allowed user's `@replicas` note on an issue: a workspace (source gitlab) whose first message carries the
    # issue's title and description and the note.
    assert (await post(anonymous, path, gitlab_hook(mention, "Note Hook", delivery="uuid-mention"))).status_code == 202
    [workspace] = await wait_for(lambda: gitlab_workspaces(app), what="the gitlab workspace")
    first = await prompt_with(model, "GitLab issue acme/shop#4")
    assert "Checkout returns a 500 for an empty cart" in first and "Expected a friendly message" in first
    assert "@replicas can you fix this?" in first and "Plan first" in first

    # The turn pushed its branch; the merge request is opened, and the issue gets a note with its link and summary.
    [note] = await notes_on(stand_in, "issues/4")
    [opened] = stand_in.made("POST", r"/gitlab/projects/15/merge_requests$")
    assert opened.body["source_branch"] == BRANCH and opened.body["target_branch"] == "main"
    assert opened.body["title"] == 'Resolve "Checkout returns a 500 for an empty cart"'
    assert opened.body["description"].startswith("Closes #4")
    assert header(opened, "PRIVATE-TOKEN") == "glpat-token" and header(note, "PRIVATE-TOKEN") == "glpat-token"
    assert note.path == "/gitlab/projects/15/issues/4/notes"
    assert note.body["body"] == f"Merge request: {MERGE_REQUEST}\n\n" \
        "Plan: answer 400 for an empty cart. Done: checkout() now returns 400."
    listed = (await client.get(f"/v1/replica/{workspace.id}")).json()["replica"]
    assert {"repository": "shop", "number": 1, "url": MERGE_REQUEST} in listed["pull_requests"]

    # The same delivery again, and the server's own note (GitLab delivers it too), reach nobody.
    assert (await post(anonymous, path, gitlab_hook(mention, "Note Hook", delivery="uuid-mention"))).status_code == 202
    own = copy.deepcopy(mention)
    own["user"] = {"id": 1099, "name": "Replicas", "username": "replicas-bot"}
    own["object_attributes"].update(id=stand_in.next_id, note=note.body["body"] + "\n\n@replicas")
    assert (await post(anonymous, path, gitlab_hook(own, "Note Hook"))).status_code == 202

    # A note on that merge request is a follow-up to the same workspace, answered on the merge request.
    model.add_turn(Text("A missing cart answers 400 now too."))
    on_mr = payload("gitlab_merge_request_note")
    assert (await post(anonymous, path, gitlab_hook(on_mr, "Note Hook", delivery="uuid-mr-note"))).status_code == 202
    sent = await prompt_with(model, "please also answer 400 when the cart is missing")
    assert "@hubot on GitLab merge request acme/shop!1" in sent
    [answer] = await notes_on(stand_in, "merge_requests/1")
    assert answer.body["body"] == "A missing cart answers 400 now too."

    # A failed pipeline job: its name and the tail of its trace, fetched through the API.
    stand_in.logs[52001] = "\n".join(f"line {n}" for n in range(200)) + \
        "\nFAILED tests/test_app.py::test_empty_cart - assert 500 == 400\n"
    model.add_turn(Text("Fixed the failing test."))
    pipeline = payload("gitlab_pipeline_failed")
    assert (await post(anonymous, path, gitlab_hook(pipeline, "Pipeline Hook", delivery="uuid-pipeline"))
            ).status_code == 202
    sent = await prompt_with(model, "CI failed on")
    assert f"CI failed on {MERGE_REQUEST} (commit ffffffffffff)" in sent and "### pytest (failed)" in sent
    assert "https://gitlab.example.com/acme/shop/-/jobs/52001" in sent and "lint" not in sent
    assert "FAILED tests/test_app.py::test_empty_cart - assert 500 == 400" in sent and "line 199" in sent
    assert "line 10\n" not in sent  # only the tail
    [trace] = stand_in.made("GET", r"/gitlab/projects/15/jobs/52001/trace$")
    assert header(trace, "PRIVATE-TOKEN") == "glpat-token"
    await notes_on(stand_in, "merge_requests/1", count=2)
    assert (await post(anonymous, path, gitlab_hook(pipeline, "Pipeline Hook", delivery="uuid-pipeline"))
            ).status_code == 202

    # Merged: the workspace's last tracked merge request, so it is archived after the grace period.
    merged = payload("gitlab_merge_request_merged")
    assert (await post(anonymous, path, gitlab_hook(merged, "Merge Request Hook", delivery="uuid-merged"))
            ).status_code == 202
    await wait_for(lambda: _status_is(app, str(workspace.id), "archived"), timeout=30, what="the archive")
    assert turns(model) == 3 and len(await gitlab_workspaces(app)) == 1
    assert len(stand_in.made("POST", r"/merge_requests$")) == 1
    async with app.state.sessions() as session:
        kinds = sorted(m.kind for m in await session.scalars(select(TeamMessage)))
        [mr_thread] = list(await session.scalars(select(TeamThread).where(TeamThread.key == "gitlab:acme/shop!1")))
    assert kinds == ["check_failed", "job", "mention", "mention", "pr_closed"]
    assert mr_thread.state == "merged" and mr_thread.workspace_id == workspace.id


async def _status_is(app, workspace_id: str, status: str) -> bool:
    return await status_of(app, workspace_id) == status
