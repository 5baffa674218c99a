"""Team-loop fixtures: the Replica API fixtures (real agent CLIs behind the scripted model, an environment bound
to `acme/shop`; the app runs the signed receivers and the team loop's watcher), and one loopback stand-in for
the providers' APIs (stand_ins.py) that each integration's `api_url` points at."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from replicas.store.models import Workspace
from replicas.testing import ShellCall
from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures
from tests.automations.test_receivers import SECRET, _sent_text, configure
from tests.integrations.stand_ins import StandIn
from tests.replicas.conftest import replica_backend, replica_env, settings, wait_for  # noqa: F401 - fixtures

PAYLOADS = Path(__file__).parent / "payloads"

FAST = {"team_loop_interval_seconds": 0.2, "review_batch_seconds": 1.0, "reply_wait_seconds": 3.0,
        "pr_close_grace_seconds": 0.5, "provider_retry_delays": [0.05, 0.1], "provider_timeout_seconds": 5.0,
        "team_route_wait_seconds": 2.0}
TOKENS = {"github": "ghs_installation_token", "gitlab": "glpat-token", "slack": "xoxb-bot-token",
          "linear": "lin_api_key"}
BRANCH = "replicas/fix-checkout"
GITLAB_ORIGIN = "https://gitlab.example.com/acme/shop.git"


@pytest.fixture
def stand_in():
    server = StandIn().start()
    yield server
    server.close()


async def connect(client, stand_in: StandIn, provider: str, **options) -> str:
    """Configure the provider's integration (secret, token, the stand-in's API URL, options); returns the
    receiver's path."""
    path = await configure(client, provider)
    response = await client.put(f"/v1/integrations/{provider}", json={
        "token": TOKENS[provider], "api_url": f"{stand_in.url}/{provider}", **options})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_configured"] is True and "token" not in body
    return path


def open_pull_request(branch: str = BRANCH, origin: str = "https://github.com/acme/shop.git") -> ShellCall:
    """What the agent runs: commit on a branch of a checkout whose origin is github.com/acme/shop; the engine
    pushes it after the turn (git's `insteadOf` sends the push to a bare repository in the workspace, GitHub's git
    side for this test) and opens the pull request through GitHub's API. With a GitLab `origin` the engine only
    pushes, and the team loop opens the merge request."""
    return ShellCall(
        "cd ~/workspaces/shop && git init -q --bare ~/origin-acme-shop.git"
        f" && git config url.$HOME/origin-acme-shop.git.insteadOf {origin}"
        f" && git remote set-url origin {origin}"
        f" && git switch -q -c {branch} && printf 'def checkout(cart):\\n    return 400\\n' > checkout.py"
        f" && git add checkout.py && git commit -qm 'Fix the empty-cart 500'")


def gitlab_hook(payload: dict, event: str, delivery: str | None = None, token: str = SECRET):
    """A GitLab webhook delivery: `X-Gitlab-Event` names the hook ("Note Hook", "Pipeline Hook", "Merge Request
    Hook", "Issue Hook"), `X-Gitlab-Token` carries the secret, `X-Gitlab-Event-UUID` identifies the delivery."""
    return json.dumps(payload).encode(), {
        "Content-Type": "application/json", "User-Agent": "GitLab/17.6.0", "X-Gitlab-Event": event,
        "X-Gitlab-Token": token, "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4()),
        "X-Gitlab-Instance": "https://gitlab.example.com"}


async def github_variables(client, env, stand_in) -> None:
    for key, value in {"GITHUB_TOKEN": "ghs_workspace_token", "GITHUB_API_URL": f"{stand_in.url}/github"}.items():
        response = await client.post(f"/v1/environments/{env.environment_id}/variables",
                                     json={"key": key, "value": value})
        assert response.status_code == 201, response.text


async def prompt_with(scripted, text: str) -> str:
    """The newest text sent to the scripted model that holds `text` (waited for: the agent's next turn)."""
    async def found():
        return next((sent for index in range(len(scripted.model_requests()) - 1, -1, -1)
                     if text in (sent := _sent_text(scripted, index))), None)

    return await wait_for(found, timeout=60, what=f"a model request with {text!r}")


def turns(scripted) -> int:
    """How many turns the agent started (prompts the scripted model saw)."""
    return scripted.cursor.turn + 1


def payload(name: str) -> dict:
    """A delivery's body in the provider's documented shape (tests/integrations/payloads/<name>.json)."""
    return json.loads((PAYLOADS / f"{name}.json").read_text())


async def comments_on(stand_in, number: int, count: int = 1) -> list[dict]:
    """The bodies of the comments posted on acme/shop's issue or pull request `number` (waited for)."""
    async def found():
        made = stand_in.made("POST", rf"/github/repos/acme/shop/issues/{number}/comments$")
        return made if len(made) >= count else None

    return [r.body for r in await wait_for(found, timeout=120, what=f"{count} comment(s) on #{number}")]


async def github_workspaces(app) -> list[Workspace]:
    async with app.state.sessions() as session:
        return list(await session.scalars(select(Workspace).where(Workspace.source == "github")
                                          .order_by(Workspace.created_at)))


async def notes_on(stand_in, noteable: str, count: int = 1) -> list:
    """The notes posted on acme/shop's `noteable` (`issues/4`, `merge_requests/1`), once `count` are (waited for)."""
    async def found():
        made = stand_in.made("POST", rf"/gitlab/projects/[^/]+/{noteable}/notes$")
        return made if len(made) >= count else None

    return await wait_for(found, timeout=120, what=f"{count} note(s) on {noteable}")
