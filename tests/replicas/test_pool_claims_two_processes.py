"""Two `replicas serve` processes on one PostgreSQL hand out one pool's ready workspaces: 50 concurrent creates,
split between them, and no workspace is handed out twice.

What is under test is the claim (one conditional UPDATE with SKIP LOCKED, warm_pools.claim) across processes and
connections, through real HTTP to two real servers. The pool's 50 ready workspaces are real records made by the
product's own WorkspaceManager, without engines (50 engines do not fit on a 2-core machine); a claimed one
therefore fails its activation afterwards, which does not concern the hand-out. A claimed pool workspace that
runs its first turn with the real agent is tested in test_warm_pools_fill.py.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select

from replicas.crypto import SecretBox
from replicas.services.principal import Principal
from replicas.services.workspaces import POOLED, WorkspaceManager
from replicas.settings import Settings
from replicas.store.db import make_engine, make_sessionmaker
from replicas.store.models import Organization, WarmPoolConfig, WarmPoolWorkspace
from tests.cli.test_cli import _env
from tests.replicas.test_events_restart import KEY, Server, auth

pytestmark = [pytest.mark.slow]
CREATES = 50
SECRET = "two-processes-secret-key"


async def test_fifty_concurrent_creates_on_two_processes_claim_each_workspace_once(tmp_path, own_database,
                                                                                   agent_tools):  # noqa: F811
    data_dir = tmp_path / "data"
    env = _env(data_dir, REPLICAS_BOOTSTRAP_API_KEY=KEY, REPLICAS_TOOLS_DIR=str(agent_tools),
               REPLICAS_DATABASE_URL=own_database, REPLICAS_SECRET_KEY=SECRET, REPLICAS_POOL_ENABLED="false",
               REPLICAS_CRON_ENABLED="false", REPLICAS_MAX_ACTIVE_WORKSPACES="200")
    servers = [Server(data_dir, env), Server(data_dir, env)]
    for server in servers:
        await server.start()
    try:
        async with httpx.AsyncClient(base_url=servers[0].base, headers=auth(), timeout=60) as client:
            created = await client.post("/v1/environments", json={"name": "pooled"})
            assert created.status_code == 201, created.text
            env_id = created.json()["environment"]["id"]
            enabled = await client.put(f"/v1/environments/{env_id}/warm-pools", json={"enabled": True,
                                                                                     "target_size": 0})
            assert enabled.status_code == 200, enabled.text

        settings = Settings(data_dir=data_dir, database_url=own_database, secret_key=SECRET)
        engine = make_engine(settings.resolved_database_url)
        sessions = make_sessionmaker(engine)
        try:
            async with sessions() as session:
                org_id = await session.scalar(select(Organization.id))
                config = await session.scalar(select(WarmPoolConfig))
            manager = WorkspaceManager(settings, sessions, SecretBox.from_settings(SECRET, data_dir))
            ready = set()
            for _ in range(CREATES):
                row = await manager.create_record(Principal.system(org_id), env_id, name="warm-pool", status=POOLED,
                                                  source="warm_pool")
                ready.add(str(row.id))
            async with sessions() as session:
                session.add_all([WarmPoolWorkspace(organization_id=org_id, warm_pool_config_id=config.id,
                                                   sandbox_id=sandbox, status="ready", generation=config.generation)
                                 for sandbox in ready])
                await session.commit()

            async def create(n: int) -> str:
                server = servers[n % 2]
                async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=120) as client:
                    response = await client.post("/v1/replica", json={"name": f"c{n}", "environment_id": env_id,
                                                                      "message": "hello"})
                assert response.status_code == 201, response.text
                return response.json()["replica"]["id"]

            handed_out = await asyncio.gather(*(create(n) for n in range(CREATES)))
            assert len(set(handed_out)) == CREATES, "a pool workspace was handed out twice"
            assert set(handed_out) == ready, "a create went cold although ready workspaces were left"
            async with sessions() as session:
                statuses = list(await session.scalars(select(WarmPoolWorkspace.status)))
            assert statuses == ["assigned"] * CREATES
        finally:
            await engine.dispose()
    finally:
        for server in servers:
            server.stop()
