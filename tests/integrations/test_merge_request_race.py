"""The merge request the team loop opens and a pull request the engine reports at the same moment both reach the
workspace's `pull_requests`: while GitLab is still answering the merge request's creation, the engine's
`repo.status.changed` (a pull request of another checkout) is stored and projected; neither write drops the other."""

from __future__ import annotations

import copy
import threading

import pytest
from sqlalchemy import select

from replicas.events import store_events
from replicas.store.models import Workspace
from replicas.testing import Text
from tests.automations.test_receivers import post
from tests.integrations.conftest import FAST, GITLAB_ORIGIN, connect, gitlab_hook, notes_on, open_pull_request, payload
from tests.replicas.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.replica_settings(**FAST),
              pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)]

MERGE_REQUEST = "https://gitlab.example.com/acme/shop/-/merge_requests/1"
OTHER_PULL = "https://github.com/acme/payments/pull/12"


async def test_the_merge_request_and_a_pull_request_reported_meanwhile_both_stay(app, client, anonymous,
                                                                                   replica_env, model, stand_in):
    gate = stand_in.held["POST", "/gitlab/projects/15/merge_requests"] = threading.Event()
    path = await connect(client, stand_in, "gitlab", allowed_logins=["octocat"], bot_login="replicas-bot")
    model.add_turn(open_pull_request(origin=GITLAB_ORIGIN), Text("Done: checkout() now returns 400."))
    assert (await post(anonymous, path, gitlab_hook(payload("gitlab_issue_note_mention"), "Note Hook"))
            ).status_code == 202

    async def opening():
        return stand_in.made("POST", r"/gitlab/projects/15/merge_requests$") or None

    await wait_for(opening, timeout=120, what="the merge request's creation")
    # GitLab has not answered yet; meanwhile the engine reports a pull request and its projection commits.
    async with app.state.sessions() as session:
        workspace = await session.scalar(select(Workspace).where(Workspace.source == "gitlab"))
        repos = copy.deepcopy(workspace.snapshot["repos"])
        repos[0]["prUrls"] = [*repos[0].get("prUrls", []), OTHER_PULL]
        await store_events(session, workspace.id, [{
            "seq": workspace.last_event_seq + 1, "id": "evt-race", "ts": "2026-12-03T14:00:00Z",
            "type": "repo.status.changed", "payload": {"repos": repos}}], app.state.replicas._on_stored)
    gate.set()

    [note] = await notes_on(stand_in, "issues/4")
    assert MERGE_REQUEST in note.body["body"]
    listed = (await client.get(f"/v1/replica/{workspace.id}")).json()["replica"]["pull_requests"]
    urls = [pr["url"] for pr in listed]
    assert MERGE_REQUEST in urls and OTHER_PULL in urls, urls
    assert len(urls) == len(set(urls))
