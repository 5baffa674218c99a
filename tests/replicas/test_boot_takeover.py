"""A boot cut short by its process is not lost (services/transitions.py): the process that boots a workspace holds
its transition lease; once that lease lapses, a live process (or the same one, restarted) takes the boot over
and runs it again, so the replica comes up and answers its first message. Against a real `replicas serve`
killed with SIGKILL in the middle of a create's warm hook; and the leases themselves, on PostgreSQL, between two
owners."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from sqlalchemy import update

from replicas.services import auth as auth_service
from replicas.services.transitions import TransitionLeases
from replicas.settings import Settings
from replicas.store.db import make_engine, make_sessionmaker, migrate
from replicas.store.models import Lease, Workspace, aware, utcnow
from replicas.testing.script import Text
from tests.replicas.test_events_restart import VERSION, auth, running_server, setup_environment
from tests.replicas.test_warm_hooks import save_warm_hook

pytestmark = [pytest.mark.slow]


async def status_of(client: httpx.AsyncClient, replica_id: str) -> dict:
    response = await client.get(f"/v1/replica/{replica_id}")
    assert response.status_code == 200, response.text
    return response.json()["replica"]


async def test_a_create_cut_short_by_kill_9_is_booted_again_and_answers_its_message(tmp_path, agent_tools, model,
                                                                                    make_git_repo):
    async with running_server(tmp_path, agent_tools, REPLICAS_TRANSITION_LEASE_SECONDS="2") as server:
        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
            env_id = await setup_environment(client, make_git_repo, model)
            await save_warm_hook(client, env_id, "sleep 4\necho warmed\n")
            model.add_turn(Text("Booted, and here is my answer."))
            created = await client.post("/v1/replica", headers=VERSION, json={
                "name": "cut-short", "environment_id": env_id, "message": "Say something"})
            assert created.status_code == 201, created.text
            replica_id = created.json()["replica"]["id"]
            await asyncio.sleep(1.5)  # inside the warm hook's sleep
            assert (await status_of(client, replica_id))["status"] == "preparing"
        server.kill()

        await server.start()
        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
            deadline = time.monotonic() + 120
            while (replica := await status_of(client, replica_id))["status"] != "active":
                assert replica["status"] == "preparing", replica
                assert time.monotonic() < deadline, "the boot was not taken over"
                await asyncio.sleep(0.5)
            while True:  # the first message, kept while the boot was cut short, is answered once
                history = (await client.get(f"/v1/replica/{replica_id}/history")).json()
                results = [e for e in history["events"] if e["type"] == "claude-result"]
                if results:
                    break
                assert time.monotonic() < deadline, f"the first message was not answered: {history}"
                await asyncio.sleep(0.5)
            await asyncio.sleep(1)
            history = (await client.get(f"/v1/replica/{replica_id}/history")).json()
            assert len([e for e in history["events"] if e["type"] == "claude-result"]) == 1
            read = (await client.get(f"/v1/replica/{replica_id}/read")).json()
            assert "Booted, and here is my answer." in str(read)
            hooks = (await client.get(f"/v1/replica/{replica_id}/hooks")).json()
            [warm] = hooks["warm_hooks"]["logs"]  # the run that completed, once
            assert warm["exitCode"] == 0 and "warmed" in warm["output"]
        assert "left preparing by a process that stopped" in server.log_path.read_text()


async def test_a_lapsed_transition_lease_is_taken_over_by_another_owner_only(tmp_path, postgres_url):
    engine = make_engine(Settings(database_url=postgres_url).resolved_database_url)
    try:
        await migrate(engine)
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            org = await auth_service.get_or_create_organization(session, f"takeover-{uuid.uuid4().hex[:8]}")
            row = Workspace(organization_id=org.id, name="booting", status="preparing", runtime="kubernetes",
                            status_changed_at=utcnow())
            session.add(row)
            await session.commit()
        one = TransitionLeases(sessions, "one", runtime="kubernetes", ttl=1.0)
        two = TransitionLeases(sessions, "two", runtime="kubernetes", ttl=1.0)
        taken: list[tuple[str, uuid.UUID]] = []

        async def recover_by(owner: str):
            async def recover(workspace: Workspace) -> None:
                taken.append((owner, workspace.id))
            return recover

        assert await one.take(row.id)
        assert not await two.take(row.id)  # held
        await asyncio.sleep(1.2)
        await one.supervise(None)  # renewed: status older than the TTL, but its lease is live
        await two.supervise(await recover_by("two"))
        assert taken == []

        await asyncio.sleep(1.2)  # "one" stops renewing (its process died)
        await two.supervise(await recover_by("two"))
        assert taken == [("two", row.id)] and two.held == {str(row.id)}
        await one.supervise(await recover_by("one"))  # "one" comes back: nothing to take, "two" holds it
        assert taken == [("two", row.id)]

        await two.give_back(row.id)  # "two" finished: the workspace is no longer preparing
        async with sessions() as session:
            await session.execute(update(Workspace).where(Workspace.id == row.id).values(status="active"))
            await session.commit()
        await asyncio.sleep(1.2)
        await one.supervise(await recover_by("one"))
        assert taken == [("two", row.id)]
        async with sessions() as session:
            lease = await session.get(Lease, two.name(row.id))
            assert lease.owner == "two" and aware(lease.expires_at) <= utcnow()
    finally:
        await engine.dispose()
