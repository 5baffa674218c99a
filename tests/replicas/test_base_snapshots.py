"""Base snapshots: warm once, start many, through the API with the real Claude Code CLI behind the scripted model.

An enabled pool builds its environment's warmed state once (its first warm-up is the seed: `warming`, then
`snapshotting`, then `ready`), and every later workspace of that generation, a pool refill or a create that
found the pool empty, starts from it copy-on-write: the warm hook ran once, its files are there, paths it
recorded resolve, and the workspace's writes stay its own. A change to what a snapshot holds (a variable, the
default branch) bumps the generation: the snapshot is rebuilt, running workspaces keep theirs, and an unused
old one is destroyed. On both backends.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

import pytest
from sqlalchemy import select

from replicas.store.models import BaseSnapshot, WarmPoolWorkspace
from replicas.testing import Text
from tests.api.test_env_hooks import parse_sse
from tests.replicas.conftest import create, on_both_backends, row_of, settled, wait_for
from tests.replicas.test_warm_pools_fill import POOLS, enable, home, pool_state, ready, workspaces

FAST = dict(pool_enabled=True, pool_interval_seconds=0.2)
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
WARM_HOOK = """set -e
echo "warming in $HOME"
mkdir -p ~/tool/bin
printf '#!/bin/sh\\necho tool-ok\\n' > ~/tool/bin/t
chmod +x ~/tool/bin/t
echo "$HOME" > ~/warmed-home
echo run >> ~/warm-runs
"""


async def save_warm_hook(client, env_id: str, content: str = WARM_HOOK) -> None:
    response = await client.post(f"/v1/environments/{env_id}/warm-hooks/save", json={"content": content})
    assert response.status_code == 201, response.text


async def snapshots(app) -> list[BaseSnapshot]:
    async with app.state.sessions() as session:
        return list(await session.scalars(select(BaseSnapshot).order_by(BaseSnapshot.created_at)))


async def in_sandbox(app, workspace_id: str, script: str) -> str:
    """Run `script` in the workspace's own sandbox (as its agent would) and return its output."""
    manager = app.state.replicas.manager
    row = await row_of(app, workspace_id)
    result = await manager.runtime.exec(manager.runtime.load_state(row.runtime_state), ["sh", "-c", script], 60)
    assert result.exit_code == 0, result.output
    return result.output


async def drain(app, client, env_id: str) -> None:
    await client.put(POOLS.replace("{environmentId}", env_id), json={"enabled": False})
    pools = app.state.replicas.pools

    async def idle() -> bool:
        return not pools._warming and not pools._building

    await wait_for(idle, timeout=60, what="no warm-up in flight")


@on_both_backends()
@pytest.mark.replica_settings(**FAST)
async def test_a_pool_builds_its_snapshot_once_and_its_workspaces_start_from_it(app, client, settings, replica_env,
                                                                              model):
    env_id = replica_env.environment_id
    await save_warm_hook(client, env_id)
    pool = await enable(app, client, env_id, 2)
    try:
        async def seed_listed():
            rows = await workspaces(client, pool)
            return rows[-1] if rows else None

        seed = await wait_for(seed_listed, timeout=30, what="the seed workspace")
        body = await asyncio.wait_for(client.get(f"/v1/warm-pool-workspaces/{seed['id']}/stream"), timeout=180)
        frames = parse_sse(body.text)
        statuses = [data["status"] for kind, data in frames if kind in ("status", "complete")]
        assert statuses[-1] == "ready" and "snapshotting" in statuses, frames
        output = "".join(data["output"] for kind, data in frames if kind == "output")
        assert "warming in " in output, frames

        pooled = await ready(client, pool, 2)
        state = await pool_state(client, env_id)
        assert state["has_base_snapshot"] is True and state["snapshotting_count"] == 0, state
        built = await snapshots(app)
        assert [(s.status, s.generation) for s in built] == [("ready", 1)]
        base_home = app.state.replicas.manager.runtime.load_state(built[0].runtime_state).home
        for workspace in pooled:
            wid = workspace["sandbox_id"]
            # Layered on the snapshot: the warm hook ran once, for the snapshot, and its work is here.
            assert os.path.ismount(home(settings, wid)), "the home is not an overlay over the snapshot"
            assert (await in_sandbox(app, wid, "cat ~/warm-runs")).split() == ["run"]
            # A path the warm hook recorded (the snapshot's home) resolves, to this workspace's own files.
            assert (await in_sandbox(app, wid, '"$(cat ~/warmed-home)/tool/bin/t"')).strip() == "tool-ok"
            assert (await in_sandbox(app, wid, "cat ~/warmed-home")).strip() == base_home
            assert (await row_of(app, wid)).snapshot["warm_hook_logs"][0]["exitCode"] == 0
        # Writes stay the workspace's own: neither the snapshot nor its sibling sees them.
        first, second = (w["sandbox_id"] for w in pooled)
        await in_sandbox(app, first, 'echo mine > "$(cat ~/warmed-home)/workspaces/shop/README.md"')
        assert (home(settings, first) / "workspaces/shop/README.md").read_text() == "mine\n"
        assert (home(settings, second) / "workspaces/shop/README.md").read_text() == "# shop\n"
        assert open(os.path.join(base_home, "workspaces/shop/README.md")).read() == "# shop\n"

        # A create claims one; its first turn runs with the real agent; its /hooks show the warm hook.
        model.add_turn(Text("From the snapshot."))
        rid = (await create(client, replica_env, "Hello", name="claimed"))["id"]
        assert rid in {first, second}
        snapshot = await wait_for(lambda: settled(app, rid), timeout=120, what="the first turn")
        assert "From the snapshot." in str(snapshot.get("last_text"))
        hooks = (await client.get(f"/v1/replica/{rid}/hooks")).json()
        assert hooks["warm_hooks"]["logs"][0]["output"].startswith("warming in "), hooks
        await ready(client, pool, 2)
        assert len(await snapshots(app)) == 1, "the refill built another snapshot"
    finally:
        await drain(app, client, env_id)


@on_both_backends()
@pytest.mark.replica_settings(**FAST)
async def test_a_create_starts_from_the_snapshot_and_a_change_rebuilds_it(app, client, settings, replica_env, model):
    env_id = replica_env.environment_id
    await save_warm_hook(client, env_id)
    await enable(app, client, env_id, 0)  # no ready workspaces: only the snapshot
    try:
        await wait_for(lambda: _has_snapshot(client, env_id), timeout=180, what="the base snapshot")
        model.add_turn(Text("Cold? No: layered."))
        rid = (await create(client, replica_env, "Hello", name="layered"))["id"]
        snapshot = await wait_for(lambda: settled(app, rid), timeout=120, what="the first turn")
        assert "Cold? No: layered." in str(snapshot.get("last_text"))
        row = await row_of(app, rid)
        assert row.runtime_state["spec"]["base_home"], "the create did not start from the snapshot"
        assert (await in_sandbox(app, rid, "cat ~/warm-runs")).split() == ["run"]
        hooks = (await client.get(f"/v1/replica/{rid}/hooks")).json()
        assert hooks["warm_hooks"]["logs"][0]["exitCode"] == 0, hooks

        # A variable the warm hook could have read changes: a new generation, a new snapshot.
        before = await pool_state(client, env_id)
        response = await client.post(f"/v1/environments/{env_id}/variables", json={"key": "FLAVOUR", "value": "2"})
        assert response.status_code == 201, response.text
        after = await pool_state(client, env_id)
        assert after["generation"] == before["generation"] + 1 and after["has_base_snapshot"] is False
        await wait_for(lambda: _has_snapshot(client, env_id), timeout=180, what="the rebuilt snapshot")
        built = await snapshots(app)
        assert [s.generation for s in built if s.status == "ready"][-1] == after["generation"]
        # The running workspace keeps its snapshot (still layered on it, still working) ...
        assert len(built) == 2
        assert (await in_sandbox(app, rid, '"$(cat ~/warmed-home)/tool/bin/t"')).strip() == "tool-ok"
        # ... which is destroyed once nothing is layered on it.
        old_home = app.state.replicas.manager.runtime.load_state(built[0].runtime_state).home
        assert (await client.delete(f"/v1/replica/{rid}")).status_code in (200, 202, 204)
        await wait_for(lambda: _count(app, 1), timeout=60, what="the old snapshot collected")
        assert not os.path.exists(old_home)
    finally:
        await drain(app, client, env_id)


@pytest.mark.replica_settings(**FAST, pool_branch_check_seconds=0.5)
async def test_a_default_branch_that_moves_bumps_the_generation(app, client, settings, replica_env, model):
    env_id = replica_env.environment_id
    await enable(app, client, env_id, 0)
    try:
        await wait_for(lambda: _has_snapshot(client, env_id), timeout=180, what="the base snapshot")
        generation = (await pool_state(client, env_id))["generation"]
        origin = replica_env.origin
        (origin / "NEW.md").write_text("moved\n")
        for argv in (["git", "add", "NEW.md"], ["git", "commit", "-qm", "move"]):
            subprocess.run(argv, cwd=origin, check=True, capture_output=True)

        async def bumped():
            state = await pool_state(client, env_id)
            return state if state["generation"] > generation and state["has_base_snapshot"] else None

        await wait_for(bumped, timeout=120, what="a new generation with its snapshot")
        model.add_turn(Text("Fresh."))
        rid = (await create(client, replica_env, "Hello", name="fresh"))["id"]
        await wait_for(lambda: settled(app, rid), timeout=120, what="the first turn")
        assert (home(settings, rid) / "workspaces/shop/NEW.md").read_text() == "moved\n"
    finally:
        await drain(app, client, env_id)


async def _has_snapshot(client, env_id: str) -> bool:
    return (await pool_state(client, env_id))["has_base_snapshot"]


async def _count(app, expected: int) -> bool:
    return len(await snapshots(app)) == expected


@pytest.mark.replica_settings(**FAST)
async def test_the_stream_delivers_warm_hook_output_live_and_ends_when_warming_does(app, client, replica_env):
    env_id = replica_env.environment_id
    await save_warm_hook(client, env_id, "for i in 1 2 3; do echo tick $i; sleep 1; done\n")
    pool = await enable(app, client, env_id, 1)
    try:
        async def seed_listed():
            rows = await workspaces(client, pool)
            return rows[-1] if rows else None

        seed = await wait_for(seed_listed, timeout=30, what="the seed workspace")
        # Live: while the hook still runs (warming, "tick 3" not printed yet), "tick 1" is already there for any
        # stream, of this process or another, to send. (The in-process test client buffers a response whole,
        # so the frames' arrival times are read off the record the stream sends from.)
        async def midway():
            async with app.state.sessions() as session:
                row = await session.get(WarmPoolWorkspace, uuid.UUID(seed["id"]), populate_existing=True)
            text = row.output or ""
            return row.status == "warming" and "tick 1" in text and "tick 3" not in text

        await wait_for(midway, timeout=60, interval=0.05, what="the first tick while the hook runs")
        response = await asyncio.wait_for(client.get(f"/v1/warm-pool-workspaces/{seed['id']}/stream"), timeout=120)
        frames = parse_sse(response.text)
        output = "".join(data["output"] for kind, data in frames if kind == "output")
        assert "tick 1\ntick 2\ntick 3\n" in output, frames
        # Output only while warming: every output frame comes before the first status that is not warming,
        # and the stream ends with `complete` once the workspace is ready.
        kinds = [(kind, data.get("status")) for kind, data in frames]
        left = next(i for i, (kind, status) in enumerate(kinds) if kind != "output" and status != "warming")
        assert all(kind != "output" for kind, _ in kinds[left:]), kinds
        assert kinds[-1] == ("complete", "ready"), kinds
    finally:
        await drain(app, client, env_id)
