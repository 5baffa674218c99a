"""Automation fixtures: the Replica API fixtures (real agent CLIs behind the scripted model, an environment
bound to a real git repository), plus the automations router and reconcile loop wherever app.py does not
wire them yet."""

from __future__ import annotations

import httpx
import pytest

from replicas.api.routers import automations as automations_router
from replicas.services import automations as service
from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures
from tests.replicas.conftest import replica_backend, replica_env, settings  # noqa: F401 - fixtures

VERSIONED = {"X-Replicas-Api-Version": "2026-05-17"}


@pytest.fixture
async def wired(app):
    """The app with the automations router and the reconcile loop."""
    if not any(getattr(r, "path", None) == "/v1/automations" for r in app.routes):
        app.include_router(automations_router.router)
    task = None
    if getattr(app.state, "automation_reconciler", None) is None:
        task = app.state.automation_reconciler = service.start_reconciler(app.state)
    yield app
    if task is not None:
        await service.stop_reconciler(task)
        app.state.automation_reconciler = None


async def plain_environment(client: httpx.AsyncClient, name: str = "plain") -> str:
    """A repository-less team environment (enough for CRUD)."""
    response = await client.post("/v1/environments", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()["environment"]["id"]


def automation_body(env: str, **fields) -> dict:
    return {"name": "nightly", "prompt": "Summarise the repository", "environment_id": env,
            "triggers": [{"type": "cron", "config": {"schedule": "0 9 * * 1-5", "timezone": "Europe/Paris"}}],
            **fields}
