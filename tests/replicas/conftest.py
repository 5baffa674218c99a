"""Replica API fixtures: the app with the real agent CLIs and the scripted model, and an environment
bound to a real git repository whose variables point the agents at the scripted model."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from replicas.settings import Settings
from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures


@pytest.fixture
def settings(tmp_path, database_url, agent_tools) -> Settings:  # noqa: F811 - overrides the root fixture
    return Settings(data_dir=tmp_path / "data", database_url=database_url, secret_key=None, tools_dir=agent_tools,
                    webhook_retry_delays=[0.2, 0.5], webhook_poll_seconds=0.1, lifecycle_interval_seconds=0.2)


@dataclass
class ReplicaEnv:
    environment_id: str
    origin: Path
    repository_id: str


@pytest.fixture
async def replica_env(client, make_git_repo, model) -> ReplicaEnv:  # noqa: F811
    """An environment bound to a `shop` repository, with the scripted model's variables."""
    origin = make_git_repo("shop", {"README.md": "# shop\n", "app.py": "print('hi')\n"})
    repo = (await client.post("/v1/replica/repositories", json={"name": "acme/shop", "url": str(origin)})).json()
    env = (await client.post("/v1/environments", json={"name": "shop", "repository_id": repo["repository"]["id"]}))
    env_id = env.json()["environment"]["id"]
    for key, value in {**model.anthropic_env(), **model.openai_env(), "REPLICAS_AGENT_MAX_RETRIES": "1"}.items():
        response = await client.post(f"/v1/environments/{env_id}/variables", json={"key": key, "value": value})
        assert response.status_code == 201, response.text
    return ReplicaEnv(env_id, origin, repo["repository"]["id"])


async def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    """Poll an async predicate until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def replica(client: httpx.AsyncClient, replica_id: str) -> dict:
    response = await client.get(f"/v1/replica/{replica_id}")
    assert response.status_code == 200, response.text
    return response.json()["replica"]


async def settled(app, replica_id: str, turns: int = 1) -> dict | None:
    """The workspace's projected snapshot once `turns` turns completed and no chat is processing."""
    import uuid

    from replicas.store.models import Workspace

    async with app.state.sessions() as session:
        row = await session.get(Workspace, uuid.UUID(replica_id))
    snapshot = row.snapshot or {}
    busy = any(chat.get("processing") for chat in snapshot.get("chats", []))
    if snapshot.get("turns_completed", 0) >= turns and not busy and not row.pending_messages:
        return snapshot
    return None
