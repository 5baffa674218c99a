"""Warm pools: enabling, sizes, counts derived from generations, workspace listing and streaming, scoping."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from replicas.store.models import AuditEvent, WarmPoolConfig, WarmPoolWorkspace
from tests.api.test_env_hooks import parse_sse
from tests.contract import assert_contract, validate_schema

ENVS = "/v1/environments"
POOLS = "/v1/environments/{environmentId}/warm-pools"
WARM = "/v1/environments/{environmentId}/warm-hooks"
WORKSPACES = "/v1/warm-pools/{configId}/workspaces"
STREAM = "/v1/warm-pool-workspaces/{workspaceId}/stream"


def _error(response) -> dict:
    body = response.json()
    validate_schema(body, "Error")
    return body


async def _team_env(client, name: str = "staging") -> str:
    return (await client.post(ENVS, json={"name": name})).json()["environment"]["id"]


async def _enable(client, ref: str, **extra) -> dict:
    response = await client.put(POOLS.replace("{environmentId}", ref), json={"enabled": True, **extra})
    assert response.status_code == 200, response.text
    return assert_contract(response, POOLS)["warm_pool"]


async def _add_workspaces(app, pool: dict, *specs: tuple[str, int], start: datetime | None = None) -> list[str]:
    """Insert pool workspaces as the (future) pool filler would: (status, generation) each, one second apart."""
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    async with app.state.sessions() as session:
        for offset, (status, generation) in enumerate(specs):
            row = WarmPoolWorkspace(organization_id=uuid.UUID(pool["organization_id"]),
                                    warm_pool_config_id=uuid.UUID(pool["id"]), sandbox_id=f"sbx-{offset}",
                                    status=status, generation=generation,
                                    error_message="warm hook exited 1" if status == "failed" else None,
                                    created_at=start + timedelta(seconds=offset))
            session.add(row)
            await session.flush()
            ids.append(str(row.id))
        await session.commit()
    return ids


async def test_first_put_creates_the_pool_with_defaults_and_get_reports_it(client, app):
    env_id = await _team_env(client)
    before = assert_contract(await client.get(WARM.replace("{environmentId}", env_id)), WARM)
    assert before["warm_pool"] is None
    pool = await _enable(client, env_id)
    assert pool["environment_id"] == env_id and pool["enabled"] is True
    assert (pool["target_size"], pool["generation"], pool["error_count"]) == (5, 1, 0)
    assert pool["ready_count"] == pool["stale_count"] == pool["warming_count"] == pool["snapshotting_count"] == 0
    assert pool["has_base_snapshot"] is False and pool["next_retry_at"] is None

    disabled = await client.put(POOLS.replace("{environmentId}", env_id), json={"enabled": False})
    off = assert_contract(disabled, POOLS)["warm_pool"]
    assert off["id"] == pool["id"] and off["enabled"] is False and off["target_size"] == 5
    state = assert_contract(await client.get(WARM.replace("{environmentId}", env_id)), WARM)
    assert state["warm_pool"] == off and state["warm_hook"] is None

    async with app.state.sessions() as session:
        events = list(await session.scalars(select(AuditEvent).where(AuditEvent.resource_id == pool["id"])
                                            .order_by(AuditEvent.created_at)))
    assert [e.action for e in events] == ["warm_pool.updated", "warm_pool.updated"]
    assert events[0].before is None and events[0].after["enabled"] is True
    assert events[1].before["enabled"] is True and events[1].after["enabled"] is False


async def test_target_size_is_settable_from_zero_to_twenty(client):
    assert (await _enable(client, "global", target_size=0))["target_size"] == 0
    assert (await _enable(client, "global", target_size=20))["target_size"] == 20
    assert (await _enable(client, "global"))["target_size"] == 20  # omitted: unchanged
    url = POOLS.replace("{environmentId}", "global")
    for body, field in [({"enabled": True, "target_size": 21}, "target_size"),
                        ({"enabled": True, "target_size": -1}, "target_size"),
                        ({"enabled": True, "target_size": "big"}, "target_size"),
                        ({"target_size": 3}, "enabled"), ({"enabled": "maybe"}, "enabled")]:
        response = await client.put(url, json=body)
        assert response.status_code == 400, body
        assert field in assert_contract(response, POOLS)["details"]
    state = (await client.get(WARM.replace("{environmentId}", "global"))).json()["warm_pool"]
    assert state["target_size"] == 20 and state["enabled"] is True


async def test_counts_derive_staleness_and_a_warm_hook_save_bumps_the_generation(client, app):
    env_id = await _team_env(client)
    pool = await _enable(client, env_id)
    await _add_workspaces(app, pool, ("ready", 1), ("ready", 1), ("warming", 1), ("snapshotting", 1),
                          ("failed", 1), ("assigned", 1), ("expired", 1))
    state = (await client.get(WARM.replace("{environmentId}", env_id))).json()["warm_pool"]
    assert (state["ready_count"], state["stale_count"], state["warming_count"], state["snapshotting_count"]) == (
        2, 0, 1, 1)

    save = WARM.replace("{environmentId}", env_id) + "/save"
    saved_hook = await client.post(save, json={"content": "npm ci\n"})
    assert saved_hook.status_code == 201
    state = assert_contract(await client.get(WARM.replace("{environmentId}", env_id)), WARM)["warm_pool"]
    assert state["generation"] == 2
    # Ready workspaces of generation 1 are now stale; work in progress for generation 1 is not counted.
    assert (state["ready_count"], state["stale_count"], state["warming_count"], state["snapshotting_count"]) == (
        0, 2, 0, 0)
    await _add_workspaces(app, pool, ("ready", 2))
    state = (await client.get(WARM.replace("{environmentId}", env_id))).json()["warm_pool"]
    assert (state["ready_count"], state["stale_count"]) == (1, 2)

    # A start hook runs after the claim, but its script is written into the home at warm-up (and is in the
    # base snapshot): saving or clearing one makes the pool's workspaces stale too, or a claim would run the
    # old one.
    start = f"{ENVS}/{env_id}/start-hooks/save"
    assert (await client.post(start, json={"content": "make dev\n"})).status_code == 201
    assert (await client.get(WARM.replace("{environmentId}", env_id))).json()["warm_pool"]["generation"] == 3
    assert (await client.post(start, json={"content": ""})).status_code == 201
    assert (await client.get(WARM.replace("{environmentId}", env_id))).json()["warm_pool"]["generation"] == 4
    async with app.state.sessions() as session:
        saved = await session.scalar(select(AuditEvent).where(
            AuditEvent.resource_id == saved_hook.json()["warm_hook"]["id"]))
    assert saved.after["warm_pool_generation"] == 2


async def test_saving_a_warm_hook_without_a_pool_creates_no_pool(client):
    assert (await client.post(WARM.replace("{environmentId}", "global") + "/save",
                              json={"content": "true\n"})).status_code == 201
    assert (await client.get(WARM.replace("{environmentId}", "global"))).json()["warm_pool"] is None
    pool = await _enable(client, "global")
    assert pool["generation"] == 1


async def test_workspace_list_is_newest_first_and_at_most_ten(client, app):
    pool = await _enable(client, "global")
    url = WORKSPACES.replace("{configId}", pool["id"])
    assert assert_contract(await client.get(url), WORKSPACES) == {"workspaces": []}
    ids = await _add_workspaces(app, pool, *[("ready", 1)] * 11, ("failed", 1))
    body = assert_contract(await client.get(url), WORKSPACES)
    assert [w["id"] for w in body["workspaces"]] == list(reversed(ids))[:10]
    newest = body["workspaces"][0]
    assert newest["status"] == "failed" and newest["error_message"] == "warm hook exited 1"
    assert newest["warm_pool_config_id"] == pool["id"] and newest["generation"] == 1
    assert newest["sandbox_id"] == "sbx-11" and newest["created_at"] == "2026-01-01T00:00:11Z"


async def test_workspace_list_and_stream_are_scoped_to_the_organization(client, make_org, app):
    other = await make_org()
    their_pool = await _enable(other.client, "global")
    [their_workspace] = await _add_workspaces(app, their_pool, ("ready", 1))
    assert (await other.client.get(WORKSPACES.replace("{configId}", their_pool["id"]))).status_code == 200
    # The contract lists no 404 for the list: check the error body by hand.
    for config_id in (their_pool["id"], str(uuid.uuid4()), "not-a-uuid"):
        response = await client.get(WORKSPACES.replace("{configId}", config_id))
        assert response.status_code == 404 and _error(response)["error"] == "Warm pool not found"
    for workspace_id in (their_workspace, str(uuid.uuid4()), "nope"):
        response = await client.get(STREAM.replace("{workspaceId}", workspace_id))
        assert response.status_code == 404
        assert assert_contract(response, STREAM)["error"] == "Warm pool workspace not found"
    theirs = await _team_env(other.client, "theirs")
    response = await client.put(POOLS.replace("{environmentId}", theirs), json={"enabled": True})
    assert response.status_code == 404 and _error(response)["error"] == "Environment not found"
    async with app.state.sessions() as session:
        configs = await session.scalars(select(WarmPoolConfig.environment_id))
        assert uuid.UUID(theirs) not in set(configs)


async def test_stream_of_a_ready_workspace_sends_status_then_complete(client, app):
    pool = await _enable(client, "global")
    [workspace_id] = await _add_workspaces(app, pool, ("ready", 1))
    response = await client.get(STREAM.replace("{workspaceId}", workspace_id))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = parse_sse(response.text)
    assert [kind for kind, _ in events] == ["status", "complete"]
    record = events[-1][1]["workspace"]
    validate_schema(record, "WarmPoolWorkspaceRecord")
    assert record["id"] == workspace_id and record["status"] == "ready"
    assert events[0][1] == {"status": "ready", "workspace": record}


async def test_stream_follows_a_warming_workspace_until_it_is_ready(client, app):
    pool = await _enable(client, "global")
    [workspace_id] = await _add_workspaces(app, pool, ("warming", 1))
    request = asyncio.create_task(client.get(STREAM.replace("{workspaceId}", workspace_id)))
    await asyncio.sleep(0.2)
    assert not request.done()
    async with app.state.sessions() as session:
        await session.execute(update(WarmPoolWorkspace).where(WarmPoolWorkspace.id == uuid.UUID(workspace_id))
                              .values(status="ready"))
        await session.commit()
    response = await asyncio.wait_for(request, 10)
    events = parse_sse(response.text)
    assert [(kind, data["status"]) for kind, data in events] == [("status", "warming"), ("complete", "ready")]
    assert events[-1][1]["workspace"]["status"] == "ready"


async def test_concurrent_claims_from_two_control_planes_never_hand_out_the_same_workspace(client, app, settings):
    """Two processes' connection pools (two engines on one database) claim at once: each ready workspace of the
    current generation goes to exactly one claim, stale ones to none, and the rest find the pool empty."""
    from replicas.services import warm_pools
    from replicas.store.db import make_engine, make_sessionmaker

    env_id = await _team_env(client)
    pool = await _enable(client, env_id)
    await client.post(WARM.replace("{environmentId}", env_id) + "/save", json={"content": "echo v2"})  # generation 2
    fresh = [str(uuid.uuid4()) for _ in range(6)]
    ids = await _add_workspaces(app, pool, *[("ready", 2)] * 6, ("ready", 1), ("warming", 2))
    async with app.state.sessions() as session:
        for row_id, sandbox in zip(ids, fresh, strict=False):
            await session.execute(update(WarmPoolWorkspace).where(WarmPoolWorkspace.id == uuid.UUID(row_id))
                                  .values(sandbox_id=sandbox))
        await session.commit()
    engines = [make_engine(settings.resolved_database_url) for _ in range(2)]
    makers = [make_sessionmaker(engine) for engine in engines]

    async def claim_one(n: int):
        async with makers[n % 2]() as session:
            config = await session.get(WarmPoolConfig, uuid.UUID(pool["id"]))
            for attempt in range(50):  # SQLite's single writer may answer "locked": retry, as a busy server would
                try:
                    claimed = await warm_pools.claim(session, config)
                    await session.commit()
                    return claimed
                except Exception as exc:  # noqa: BLE001
                    await session.rollback()
                    if "locked" not in str(exc) or attempt == 49:
                        raise
                    await asyncio.sleep(0.02)

    try:
        results = await asyncio.gather(*(claim_one(n) for n in range(10)))
    finally:
        for engine in engines:
            await engine.dispose()
    claimed = [str(value) for value in results if value is not None]
    assert sorted(claimed) == sorted(fresh), results
    async with app.state.sessions() as session:
        statuses = {str(row.id): row.status for row in await session.scalars(
            select(WarmPoolWorkspace).where(WarmPoolWorkspace.warm_pool_config_id == uuid.UUID(pool["id"])))}
    assert [statuses[i] for i in ids] == ["assigned"] * 6 + ["ready", "warming"]
