"""Team-loop fixtures: the Replica API fixtures (real agent CLIs behind the scripted model, an environment bound
to `acme/shop`), the signed receivers, the team loop's watcher wherever app.py does not start it yet, and one
loopback stand-in for the providers' APIs (stand_ins.py) that each integration's `api_url` points at."""

from __future__ import annotations

import pytest

from replicas.services import loops, team_watcher
from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures
from tests.automations.test_receivers import configure
from tests.integrations.stand_ins import StandIn
from tests.replicas.conftest import replica_backend, replica_env, settings  # noqa: F401 - fixtures

FAST = {"team_loop_interval_seconds": 0.2, "review_batch_seconds": 1.0, "reply_wait_seconds": 3.0,
        "pr_close_grace_seconds": 0.5, "provider_retry_delays": [0.05, 0.1], "provider_timeout_seconds": 5.0}
TOKENS = {"github": "ghs_installation_token", "gitlab": "glpat-token", "slack": "xoxb-bot-token",
          "linear": "lin_api_key"}


@pytest.fixture
async def loop_app(app):
    """The app with the team loop's watcher running."""
    task = None
    if getattr(app.state, "team_watcher", None) is None:
        task = app.state.team_watcher = team_watcher.start(app.state)
    yield app
    if task is not None:
        await loops.cancel(task)
        app.state.team_watcher = None


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
