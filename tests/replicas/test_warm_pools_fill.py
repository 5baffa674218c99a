"""Warm pools, filled and claimed, through the API with the real Claude Code CLI behind the scripted model.

A pool fills to its target with `ready` workspaces (warmed, engine up, start hooks not run yet) that no replica
list shows; a create claims one (same workspace: renamed, attributed, start hooks run at the claim, first turn
runs) and the pool refills. Saving a new warm hook expires the ready ones (a claimed one keeps running); a warm
hook that always fails makes the pool back off instead of retrying in a loop; a ready workspace older than the
pool's maximum age is replaced; pool workspaces stay within their own limit. SQLite; the fill, the claim, the
expiry and the backoff on both backends.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import datetime

import pytest
from sqlalchemy import func, select, update

from replicas.store.models import WarmPoolConfig, Workspace
from replicas.testing import Text
from tests.api.test_env_hooks import parse_sse
from tests.contract import assert_contract
from tests.replicas.conftest import create, on_both_backends, row_of, settled, status_of, wait_for

FAST = dict(pool_enabled=True, pool_interval_seconds=0.2)
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
POOLS = "/v1/environments/{environmentId}/warm-pools"
WORKSPACES = "/v1/warm-pools/{configId}/workspaces"


async def enable(app, client, env_id: str, target: int) -> dict:
    # The PostgreSQL database is shared by the session: no other test's pool may be filled here.
    async with app.state.sessions() as session:
        await session.execute(update(WarmPoolConfig).values(enabled=False))
        await session.commit()
    response = await client.put(POOLS.replace("{environmentId}", env_id), json={"enabled": True,
                                                                                "target_size": target})
    assert response.status_code == 200, response.text
    return assert_contract(response, POOLS)["warm_pool"]


async def pool_state(client, env_id: str) -> dict:
    response = await client.get(f"/v1/environments/{env_id}/warm-hooks")
    assert response.status_code == 200, response.text
    return response.json()["warm_pool"]


async def workspaces(client, pool: dict) -> list[dict]:
    response = await client.get(WORKSPACES.replace("{configId}", pool["id"]))
    return assert_contract(response, WORKSPACES)["workspaces"]


async def ready(client, pool: dict, count: int, generation: int = 1) -> list[dict]:
    async def found():
        rows = [w for w in await workspaces(client, pool) if w["status"] == "ready" and w["generation"] >= generation]
        return rows if len(rows) >= count else None
    return await wait_for(found, timeout=120, what=f"{count} ready pool workspaces")


async def drain(app, client, env_id: str) -> None:
    """Disable the pool and wait for its warm-ups to end (so that no engine starts after the teardown)."""
    await client.put(POOLS.replace("{environmentId}", env_id), json={"enabled": False})
    await wait_for(lambda: _idle(app), timeout=60, what="no warm-up in flight")


async def _idle(app) -> bool:
    return not app.state.replicas.pools._warming


def home(settings, workspace_id: str):
    return settings.data_dir / "workspaces" / workspace_id / "home"


@on_both_backends()
@pytest.mark.replica_settings(**FAST)
async def test_pool_fills_a_create_claims_and_the_pool_refills(app, client, settings, replica_env, model):
    env_id = replica_env.environment_id
    response = await client.post(f"/v1/environments/{env_id}/start-hooks/save",
                                 json={"content": "date +%s.%N >> ~/start-hook-ran.txt\n"})
    assert response.status_code == 201, response.text
    pool = await enable(app, client, env_id, 2)
    try:
        # The SSE stream of a workspace being warmed: its status now (warming, or already snapshotting when the
        # seed is quick), then `complete` once ready.
        first = await wait_for(lambda: _any(client, pool), timeout=30, what="a pool workspace")
        body = await asyncio.wait_for(client.get(f"/v1/warm-pool-workspaces/{first['id']}/stream"), timeout=120)
        frames = [(kind, data) for kind, data in parse_sse(body.text) if kind != "output"]
        kinds = [(kind, data["status"]) for kind, data in frames]
        assert all(kind == "status" and status in ("warming", "snapshotting") for kind, status in kinds[:-1]), kinds
        assert kinds[-1] == ("complete", "ready"), kinds

        pooled = await ready(client, pool, 2)
        state = await pool_state(client, env_id)
        assert state["ready_count"] == 2 and state["error_count"] == 0
        # Not replicas yet: no list shows them, no read finds them, and the start hooks wait for the claim.
        listed = (await client.get("/v1/replica")).json()
        assert listed["total"] == 0, listed
        assert (await client.get(f"/v1/replica/{pooled[0]['sandbox_id']}")).status_code == 404
        assert [(await row_of(app, w["sandbox_id"])).status for w in pooled] == ["pooled", "pooled"]
        assert not any((home(settings, w["sandbox_id"]) / "start-hook-ran.txt").exists() for w in pooled)

        model.add_turn(Text("Claimed and ready."))
        replica = await create(client, replica_env, "Hello from the pool", name="claimed")
        rid = replica["id"]
        assert rid in {w["sandbox_id"] for w in pooled}, "the create did not claim a pool workspace"
        assert replica["name"] == "claimed"
        snapshot = await wait_for(lambda: settled(app, rid), timeout=120, what="the claimed replica's first turn")
        assert "Claimed and ready." in str(snapshot.get("last_text"))
        row = await row_of(app, rid)
        assert row.status == "active" and row.source == "api" and row.name == "claimed"
        assert (home(settings, rid) / "start-hook-ran.txt").exists()
        records = {w["sandbox_id"]: w for w in await workspaces(client, pool)}
        assert records[rid]["status"] == "assigned"
        listed = (await client.get("/v1/replica")).json()
        assert [item["id"] for item in listed["replicas"]] == [rid]

        # The pool refills to its target.
        refilled = await ready(client, pool, 2)
        assert rid not in {w["sandbox_id"] for w in refilled}

        # Claim -> active, a few times.
        timings = []
        for n in range(3):
            await ready(client, pool, 1)
            model.add_turn(Text(f"Turn {n}."))
            started = time.monotonic()
            claimed = await create(client, replica_env, f"Claim {n}", name=f"c{n}")
            await wait_for(lambda cid=claimed["id"]: _active(app, cid), interval=0.01, what="active")
            timings.append(time.monotonic() - started)
            assert claimed["id"] not in {w["sandbox_id"] for w in await workspaces(client, pool)
                                         if w["status"] == "ready"}
        print(f"\nclaim -> active: p50 {statistics.median(timings) * 1000:.0f} ms "
              f"({', '.join(f'{t * 1000:.0f}' for t in timings)} ms)")
    finally:
        await drain(app, client, env_id)


async def _any(client, pool):
    rows = await workspaces(client, pool)
    return rows[-1] if rows else None


async def _active(app, rid: str) -> bool:
    return await status_of(app, rid) == "active"


@on_both_backends()
@pytest.mark.replica_settings(**FAST)
async def test_a_new_warm_hook_expires_ready_workspaces_and_leaves_claimed_ones_running(app, client, replica_env,
                                                                                      model):
    env_id = replica_env.environment_id
    pool = await enable(app, client, env_id, 1)
    try:
        model.add_turn(Text("Working."))
        claimed = await ready(client, pool, 1)
        rid = (await create(client, replica_env, "Go", name="keep"))["id"]
        assert rid == claimed[0]["sandbox_id"]
        await wait_for(lambda: settled(app, rid), timeout=120, what="the first turn")
        old = (await ready(client, pool, 1))[0]

        response = await client.post(f"/v1/environments/{env_id}/warm-hooks/save", json={"content": "echo v2\n"})
        assert response.status_code == 201, response.text
        fresh = (await ready(client, pool, 1, generation=2))[0]
        records = {w["id"]: w for w in await workspaces(client, pool)}
        assert records[old["id"]]["status"] == "expired"
        assert "warm hook" in records[old["id"]]["error_message"]
        assert await row_of(app, old["sandbox_id"]) is None, "the expired workspace was not destroyed"
        assert fresh["sandbox_id"] != old["sandbox_id"]
        # The claimed one is untouched: still active, its engine still answers.
        assert await status_of(app, rid) == "active"
        chats = await client.get(f"/v1/replica/{rid}/chats")
        assert chats.status_code == 200, chats.text
        assert records[next(k for k, w in records.items() if w["sandbox_id"] == rid)]["status"] == "assigned"
    finally:
        await drain(app, client, env_id)


@on_both_backends()
@pytest.mark.replica_settings(**FAST, pool_retry_base_seconds=0.5, pool_retry_max_seconds=4)
async def test_a_failing_warm_hook_backs_off_exponentially(app, client, replica_env):
    env_id = replica_env.environment_id
    response = await client.post(f"/v1/environments/{env_id}/warm-hooks/save", json={"content": "echo no; exit 3\n"})
    assert response.status_code == 201, response.text
    pool = await enable(app, client, env_id, 3)
    try:
        async def failures(count: int):
            state = await pool_state(client, env_id)
            return state if state["error_count"] >= count else None

        def backoff(count: int) -> float:
            return min(0.5 * 2 ** (count - 1), 4.0)

        def gap(state: dict) -> float:
            return _at(state["next_retry_at"]) - _at(state["last_error_at"])

        first = await wait_for(lambda: failures(1), interval=0.05, timeout=60, what="a failure")
        count = first["error_count"]
        assert count == 1  # the first pass's three warm-ups failed together: one step of backoff
        assert 0 < gap(first) <= backoff(count) + 0.05, first  # a later failure of the round moves last_error_at
        seen_at = time.monotonic()
        second = await wait_for(lambda: failures(count + 1), interval=0.05, timeout=60, what="the retry's failure")
        # The retry waited out the backoff, and, failing, one probe at a time: one more failure.
        assert time.monotonic() - seen_at >= backoff(count) - 0.3
        assert second["error_count"] == count + 1
        third = await wait_for(lambda: failures(count + 2), interval=0.05, timeout=60, what="another failure")
        assert third["error_count"] == count + 2
        assert abs(gap(third) - backoff(count + 2)) < 0.05, third
        assert _at(third["next_retry_at"]) > _at(second["next_retry_at"]) > _at(first["next_retry_at"])
        assert "Warm hook failed" in third["last_error_message"]
        assert third["ready_count"] == 0
        rows = await workspaces(client, pool)
        failed = [w for w in rows if w["status"] == "failed"]
        assert failed and all("Warm hook failed" in w["error_message"] for w in failed)
        # No tight loop: within the capped backoff (4 s), at most one more attempt.
        await asyncio.sleep(1.0)
        assert (await pool_state(client, env_id))["error_count"] <= count + 3
        async with app.state.sessions() as session:
            leftover = await session.scalar(select(func.count()).select_from(Workspace)
                                            .where(Workspace.status.in_(("pooled", "error"))))
        assert leftover <= 1  # at most the probe in flight; failed ones are destroyed
    finally:
        await drain(app, client, env_id)


def _at(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@pytest.mark.replica_settings(**FAST, pool_max_age_seconds=3, max_pool_workspaces=1)
async def test_old_ready_workspaces_expire_and_the_pool_stays_within_its_own_limit(app, client, replica_env):
    env_id = replica_env.environment_id
    pool = await enable(app, client, env_id, 3)
    try:
        first = (await ready(client, pool, 1))[0]
        state = await pool_state(client, env_id)
        assert state["ready_count"] + state["warming_count"] == 1, state  # REPLICAS_MAX_POOL_WORKSPACES=1

        async def replaced():
            rows = await workspaces(client, pool)
            old = next(w for w in rows if w["id"] == first["id"])
            fresh = [w for w in rows if w["status"] == "ready" and w["id"] != first["id"]]
            return old["status"] == "expired" and fresh
        await wait_for(replaced, timeout=60, what="the old workspace expired and replaced")
        records = {w["id"]: w for w in await workspaces(client, pool)}
        assert "maximum age" in records[first["id"]]["error_message"]
        assert await row_of(app, first["sandbox_id"]) is None
        assert uuid.UUID(first["sandbox_id"])
    finally:
        await drain(app, client, env_id)


@pytest.mark.replica_settings(**FAST)
async def test_a_create_for_another_agent_claims_too_and_its_chat_is_that_agents(app, client, replica_env, model):
    env_id = replica_env.environment_id
    pool = await enable(app, client, env_id, 1)
    try:
        pooled = await ready(client, pool, 1)
        model.add_turn(Text("Codex, from the pool."))
        replica = await create(client, replica_env, "Hello Codex", name="codexed", coding_agent="codex")
        rid = replica["id"]
        assert rid == pooled[0]["sandbox_id"], "a codex create did not claim the ready workspace"
        snapshot = await wait_for(lambda: settled(app, rid), timeout=120, what="Codex's first turn")
        assert "Codex, from the pool." in str(snapshot.get("last_text"))
        chats = (await client.get(f"/v1/replica/{rid}/chats")).json()["chats"]
        assert [chat["provider"] for chat in chats] == ["codex"], chats
        row = await row_of(app, rid)
        assert row.coding_agent == "codex" and row.default_chat_id == chats[0]["id"]
    finally:
        await drain(app, client, env_id)


@pytest.mark.replica_settings(**FAST)
async def test_a_restarted_control_plane_expires_ready_workspaces_whose_engine_is_gone(app, client, replica_env):
    from replicas.services.pool_filler import PoolFiller

    env_id = replica_env.environment_id
    pool = await enable(app, client, env_id, 1)
    try:
        gone = (await ready(client, pool, 1))[0]
        manager = app.state.replicas.manager
        await manager.runtime.stop(manager.runtime.load_state((await row_of(app, gone["sandbox_id"])).runtime_state))
        # What the next process's filler does at its first pass (here, beside this app's own).
        restarted = PoolFiller(app.state.settings, app.state.sessions, manager, "restarted-process")
        await restarted.reconcile_once()
        records = {w["id"]: w for w in await workspaces(client, pool)}
        assert records[gone["id"]]["status"] == "expired", records[gone["id"]]
        assert "engine is gone" in records[gone["id"]]["error_message"]
        fresh = await ready(client, pool, 1)
        assert fresh[0]["id"] != gone["id"]
        await restarted.stop()
    finally:
        await drain(app, client, env_id)


@pytest.mark.replica_settings(**FAST)
async def test_a_gitlab_thread_with_push_access_does_not_claim_a_pool_workspace(app, client, replica_env, model):
    """The team loop's GitLab workspaces get the integration's push token in their engine's environment; a ready
    pool workspace's engine was started without it, so such a create goes the cold way and the pool stays."""
    from replicas.services.replica_requests import NewReplica
    from replicas.services.team_loop import bot

    env_id = replica_env.environment_id
    pool = await enable(app, client, env_id, 1)
    try:
        [pooled] = await ready(client, pool, 1)
        response = await client.put("/v1/integrations/gitlab", json={"secret": "hook-secret",
                                                                     "token": "glpat-pushaccess"})
        assert response.status_code == 200, response.text
        organization_id = (await row_of(app, pooled["sandbox_id"])).organization_id
        model.add_turn(Text("From the GitLab thread."))
        row = await app.state.replicas.create(
            bot(organization_id, "gitlab"), NewReplica(name="gl", message="Fix it", environment_id=env_id),
            wait=False, source="gitlab")
        assert str(row.id) != pooled["sandbox_id"], "a GitLab create claimed a pool workspace"
        ready_ids = [w["sandbox_id"] for w in await workspaces(client, pool) if w["status"] == "ready"]
        assert ready_ids == [pooled["sandbox_id"]]
        snapshot = await wait_for(lambda: settled(app, str(row.id)), timeout=120, what="the GitLab replica's turn")
        assert "From the GitLab thread." in str(snapshot.get("last_text"))
    finally:
        await drain(app, client, env_id)
