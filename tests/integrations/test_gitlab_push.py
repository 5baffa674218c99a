"""A workspace the team loop starts on a GitLab thread pushes with the GitLab integration's stored token: its
origin is a GitLab instance's git side on loopback (`git http-backend` behind the stand-in, which refuses a
request without the token, as GitLab does), the real agent commits on a branch, the engine pushes it, and the
merge request is opened and linked on the issue. The token is in no file of the workspace and in no event, and the
engine sends it to that instance's origins only."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from replicas.engine.journal import Journal
from replicas.engine.publish import Publisher
from replicas.store.models import Workspace, WorkspaceEvent
from replicas.testing import ShellCall, Text
from tests.automations.test_receivers import post
from tests.integrations.conftest import BRANCH, FAST, TOKENS, connect, gitlab_hook, notes_on, payload
from tests.replicas.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.replica_settings(**FAST)]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_gitlab_workspace_pushes_with_the_integrations_token(app, client, anonymous, replica_env, model,
                                                                     stand_in, tmp_path):
    stand_in.git_root, stand_in.git_token = tmp_path / "gitlab-git", TOKENS["gitlab"]
    bare = stand_in.git_root / "acme" / "shop.git"
    git("init", "-q", "--bare", str(bare))
    stand_in.gitlab_host = stand_in.url  # the instance answers the API under /gitlab and git under /acme/shop.git
    origin = f"{stand_in.url}/acme/shop.git"

    # Without the token, the instance refuses git (what a workspace without push access would meet).
    refused = subprocess.run(["git", "ls-remote", origin], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path)})
    assert refused.returncode != 0 and "could not read Username" in refused.stderr  # after the 401
    assert [r.headers.get("Authorization") for r in stand_in.git_requests] == [None]
    stand_in.git_requests.clear()

    path = await connect(client, stand_in, "gitlab", allowed_logins=["octocat"], bot_login="replicas-bot")
    model.add_turn(ShellCall(
        f"cd ~/workspaces/shop && git remote set-url origin {origin} && git switch -q -c {BRANCH}"
        " && printf 'def checkout(cart):\\n    return 400\\n' > checkout.py"
        " && git add checkout.py && git commit -qm 'Fix the empty-cart 500'"),
        Text("Done: checkout() now returns 400."))
    mention = payload("gitlab_issue_note_mention")
    assert (await post(anonymous, path, gitlab_hook(mention, "Note Hook"))).status_code == 202

    # The engine pushed the branch to the instance, authenticated with the integration's token.
    async def pushed():
        found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{BRANCH}"], cwd=bare,
                               capture_output=True, text=True)
        return found.stdout.strip() or None

    head = await wait_for(pushed, timeout=120, what="the branch on the GitLab origin")
    assert git("show", f"{head}:checkout.py", cwd=bare) == "def checkout(cart):\n    return 400"
    receive = [r for r in stand_in.git_requests if r.path.endswith("/git-receive-pack")]
    assert receive and all(stand_in.git_password(r.headers.get("Authorization")) == TOKENS["gitlab"]
                           for r in stand_in.git_requests)

    # The merge request of that branch is opened and linked on the issue.
    [note] = await notes_on(stand_in, "issues/4")
    assert note.body["body"].startswith(f"Merge request: {stand_in.url}/acme/shop/-/merge_requests/1")
    [opened] = stand_in.made("POST", r"/gitlab/projects/15/merge_requests$")
    assert opened.body["source_branch"] == BRANCH

    # The token was never written down: not in the checkout's config or remote, the home's git files, the events.
    async with app.state.sessions() as session:
        [workspace] = list(await session.scalars(select(Workspace).where(Workspace.source == "gitlab")))
        events = [json.dumps(e.payload) for e in await session.scalars(
            select(WorkspaceEvent).where(WorkspaceEvent.workspace_id == workspace.id))]
    home = Path(app.state.replicas.manager.runtime.load_state(workspace.runtime_state).home)
    checkout = home / "workspaces" / "shop"
    assert git("remote", "get-url", "origin", cwd=checkout) == origin
    written = [checkout / ".git" / "config", home / ".gitconfig", home / ".git-credentials"]
    assert not any(TOKENS["gitlab"] in p.read_text() for p in written if p.exists())
    assert events and not any(TOKENS["gitlab"] in e for e in events)


async def test_the_engine_sends_gitlabs_token_to_that_instance_only(tmp_path, make_git_repo, stand_in):
    stand_in.git_root, stand_in.git_token = tmp_path / "gitlab-git", TOKENS["gitlab"]
    bare = stand_in.git_root / "acme" / "shop.git"
    git("clone", "-q", "--bare", str(make_git_repo("seed")), str(bare))
    checkout = tmp_path / "home" / "workspaces" / "shop"
    git("clone", "-q", str(bare), str(checkout))
    git("remote", "set-url", "origin", f"{stand_in.url}/acme/shop.git", cwd=checkout)
    git("switch", "-q", "-c", BRANCH, cwd=checkout)
    (checkout / "checkout.py").write_text("def checkout(cart):\n    return 400\n")
    git("add", "checkout.py", cwd=checkout)
    git("-c", "user.name=a", "-c", "user.email=a@example.com", "commit", "-qm", "Fix", cwd=checkout)
    journal = Journal(tmp_path / "state" / "events.jsonl").open()

    def publisher(host: str) -> Publisher:
        env = {"PATH": os.environ["PATH"], "GITLAB_TOKEN": TOKENS["gitlab"], "GITLAB_HOST": host}
        return Publisher(tmp_path / "state" / host.rsplit(":", 1)[-1], env, journal)

    # Another instance's token is not this origin's: nothing is sent, the instance refuses, the error says so.
    [refused] = await publisher("http://127.0.0.1:1").publish_all([checkout])
    assert refused.error["code"] == "push_failed" and TOKENS["gitlab"] not in json.dumps(refused.error)
    assert stand_in.git_requests and all("Authorization" not in r.headers for r in stand_in.git_requests)

    # The instance's own origin gets it (on http here: the instance's URL says http).
    [pushed] = await publisher(stand_in.url).publish_all([checkout])
    assert pushed.pushed and pushed.record["url"] == f"{stand_in.url}/acme/shop.git#{BRANCH}"
    assert git("rev-parse", f"refs/heads/{BRANCH}", cwd=bare) == git("rev-parse", "HEAD", cwd=checkout)
    assert TOKENS["gitlab"] not in (checkout / ".git" / "config").read_text()
