"""The cron scheduler: the downtime policy and DST on a simulated clock, passes against a real database
that create real workspaces, and two real `replicas serve` processes on one PostgreSQL firing each slot
exactly once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import create_async_engine

from replicas.services.cron_schedule import next_fire_time, parse
from replicas.services.cron_scheduler import plan_slot, run_pass, slot_id, stop_cron_scheduler
from replicas.settings import Settings
from replicas.store.db import make_sessionmaker
from replicas.store.models import Automation, AutomationExecution, Workspace
from tests.automations.conftest import automation_body
from tests.cli.test_cli import _env
from tests.contract import assert_contract
from tests.replicas.conftest import wait_for

HOUR = timedelta(hours=1)


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- the policy, on a simulated clock ----------------------------------------------------------------


def _simulate(expression: str, timezone: str, start: datetime, end: datetime, step: timedelta,
              catchup: float = 3600) -> list[str]:
    """What a scheduler polling every `step` from `start` to `end` fires (UTC slot ids)."""
    fired, due, now = [], next_fire_time(parse(expression), timezone, start), start
    while now <= end:
        if due is not None and due <= now:
            plan = plan_slot(expression, timezone, due, now, catchup)
            fired += [slot_id(plan.slot)] if plan.slot else []
            due = plan.next_fire_at
        now += step
    return fired


def test_on_time_slots_fire_once_each_and_the_next_is_after_now():
    plan = plan_slot("0 * * * *", "UTC", _utc(2026, 5, 4, 10), _utc(2026, 5, 4, 10, 0, 12), 3600)
    assert plan.slot == _utc(2026, 5, 4, 10) and plan.next_fire_at == _utc(2026, 5, 4, 11)
    assert _simulate("0 * * * *", "UTC", _utc(2026, 5, 4, 9, 59), _utc(2026, 5, 4, 13, 1), timedelta(seconds=15)) == [
        "2026-05-04T10:00:00Z", "2026-05-04T11:00:00Z", "2026-05-04T12:00:00Z", "2026-05-04T13:00:00Z"]


def test_after_downtime_only_the_latest_missed_slot_fires_if_recent_else_none():
    # Down from 07:30 to 10:20: 08:00, 09:00 and 10:00 were missed; only 10:00 (20 minutes old) runs.
    plan = plan_slot("0 * * * *", "UTC", _utc(2026, 5, 4, 8), _utc(2026, 5, 4, 10, 20), 3600)
    assert plan.slot == _utc(2026, 5, 4, 10) and plan.next_fire_at == _utc(2026, 5, 4, 11)
    # A daily 09:00 job, down for three days until 08:00: its latest slot is 23 hours old, so nothing runs.
    plan = plan_slot("0 9 * * *", "UTC", _utc(2026, 5, 1, 9), _utc(2026, 5, 4, 8), 3600)
    assert plan.slot is None and plan.next_fire_at == _utc(2026, 5, 4, 9)
    # The stored slot itself counts when it is recent (a stored slot need not be on the schedule's grid).
    plan = plan_slot("0 9 * * *", "UTC", _utc(2026, 5, 4, 7, 59, 59), _utc(2026, 5, 4, 8), 3600)
    assert plan.slot == _utc(2026, 5, 4, 7, 59, 59) and plan.next_fire_at == _utc(2026, 5, 4, 9)
    # Years of downtime cost no more than a few steps and still fire at most once.
    plan = plan_slot("0 * * * *", "UTC", _utc(2020, 1, 1), _utc(2026, 5, 4, 10, 30), 3600)
    assert plan.slot == _utc(2026, 5, 4, 10) and plan.next_fire_at == _utc(2026, 5, 4, 11)


def test_berlin_daily_run_across_both_dst_changes_fires_once_a_day():
    step = timedelta(seconds=15)
    # 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist that day and runs at 03:30 CEST (01:30Z).
    assert _simulate("30 2 * * *", "Europe/Berlin", _utc(2026, 3, 27, 12), _utc(2026, 3, 31, 12), step) == [
        "2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"]
    # 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice and runs at the first (00:30Z) only.
    assert _simulate("30 2 * * *", "Europe/Berlin", _utc(2026, 10, 23, 12), _utc(2026, 10, 27, 12), step) == [
        "2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z"]


def test_new_york_hourly_keeps_an_hour_apart_across_both_dst_changes():
    step = timedelta(seconds=15)
    # Fall back (2026-11-01): 01:30 EDT and 01:30 EST are both hourly slots, an hour apart.
    assert _simulate("30 * * * *", "America/New_York", _utc(2026, 11, 1, 4), _utc(2026, 11, 1, 8), step) == [
        "2026-11-01T04:30:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-01T07:30:00Z"]
    # Spring forward (2026-03-08): 02:30 does not exist; 01:30 EST is followed by 03:30 EDT, an hour later.
    assert _simulate("30 * * * *", "America/New_York", _utc(2026, 3, 8, 5), _utc(2026, 3, 8, 8), step) == [
        "2026-03-08T05:30:00Z", "2026-03-08T06:30:00Z", "2026-03-08T07:30:00Z"]
    # A daily 02:30 in New York runs once on the day it does not exist.
    assert _simulate("30 2 * * *", "America/New_York", _utc(2026, 3, 7, 12), _utc(2026, 3, 9, 12), step) == [
        "2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"]


# -- passes against a real database, creating real workspaces ---------------------------------------


@pytest.fixture
async def manual(wired):
    """The app with its own scheduler loop stopped, so that each test runs the passes itself."""
    await stop_cron_scheduler(getattr(wired.state, "cron_scheduler", None))
    wired.state.cron_scheduler = None
    return wired


async def _set_next(app, automation_id: str, value: datetime) -> None:
    async with app.state.sessions() as session:
        await session.execute(update(Automation).where(Automation.id == uuid.UUID(automation_id))
                              .values(cron_next_fire_at=value))
        await session.commit()


async def _rows(app, automation_id: str) -> list[AutomationExecution]:
    async with app.state.sessions() as session:
        return list(await session.scalars(select(AutomationExecution).where(
            AutomationExecution.automation_id == uuid.UUID(automation_id)).order_by(AutomationExecution.triggered_at)))


async def _next_fire_at(client, automation_id: str) -> datetime:
    body = assert_contract(await client.get(f"/v1/automations/{automation_id}"), "/v1/automations/{id}")
    return datetime.fromisoformat(body["automation"]["cron_next_fire_at"].replace("Z", "+00:00"))


async def mine(automation_id, fired) -> list:
    """The executions of one pass (`fired`, awaited here) that belong to `automation_id`: the session's
    PostgreSQL database holds other tests' enabled cron automations, which a pass at a simulated later time
    may find due as well."""
    return [execution for execution in await fired if str(execution.automation_id) == str(automation_id)]


@pytest.mark.slow
async def test_a_pass_fires_a_due_slot_once_with_its_payload_and_moves_to_the_next(manual, client, replica_env):
    created = await client.post("/v1/automations", json=automation_body(
        replica_env.environment_id, name="hourly", triggers=[
            {"type": "cron", "config": {"schedule": "0 * * * *", "timezone": "Europe/Berlin"}}]))
    automation_id = assert_contract(created, "/v1/automations")["automation"]["id"]
    try:
        now = datetime.now(UTC)
        slot = now.replace(minute=0, second=0, microsecond=0)  # this hour's slot, missed
        await _set_next(manual, automation_id, slot)

        [fired] = await mine(automation_id, run_pass(manual.state))
        assert fired.status in ("running", "completed") and fired.workspace_id and fired.error is None
        executions = assert_contract(await client.get(f"/v1/automations/{automation_id}/executions"),
                                     "/v1/automations/{id}/executions")["executions"]
        assert [e["id"] for e in executions] == [str(fired.id)]
        assert executions[0]["trigger_payload"] == {"scheduled_for": slot_id(slot), "timezone": "Europe/Berlin"}
        [row] = await _rows(manual, automation_id)
        assert row.trigger_type == "cron" and row.delivery_id == f"cron:{slot_id(slot)}"
        assert "## Trigger Payload" in row.prompt and slot_id(slot) in row.prompt
        assert await _next_fire_at(client, automation_id) == slot + HOUR

        assert await mine(automation_id, run_pass(manual.state)) == []  # nothing is due any more
        assert len(await _rows(manual, automation_id)) == 1

        # Down for three days (simulated clock: two hours and ten minutes from the slot): one run, for
        # the latest missed slot, and the schedule goes on from there.
        await _set_next(manual, automation_id, slot - 72 * HOUR)
        [late] = await mine(automation_id, run_pass(manual.state, now=slot + 2 * HOUR + timedelta(minutes=10)))
        assert late.trigger_payload["scheduled_for"] == slot_id(slot + 2 * HOUR)
        assert len(await _rows(manual, automation_id)) == 2
        assert await _next_fire_at(client, automation_id) == slot + 3 * HOUR

        # The same, but the latest missed slot is older than the catch-up window: nothing runs.
        await _set_next(manual, automation_id, slot - 72 * HOUR)
        assert await mine(automation_id, run_pass(manual.state, now=slot + 3 * HOUR + timedelta(minutes=20),
                                                   catchup_seconds=600)) == []
        assert len(await _rows(manual, automation_id)) == 2
        assert await _next_fire_at(client, automation_id) == slot + 4 * HOUR

        # Two passes at once (two connections): one claims the slot, the other fires nothing.
        await _set_next(manual, automation_id, now - timedelta(seconds=1))
        first, second = await asyncio.gather(mine(automation_id, run_pass(manual.state)),
                                             mine(automation_id, run_pass(manual.state)))
        assert len(first) + len(second) == 1
        assert len(await _rows(manual, automation_id)) == 3
    finally:
        assert (await client.delete(f"/v1/automations/{automation_id}")).status_code == 200


@pytest.mark.slow
async def test_a_disabled_automation_is_not_fired_and_resumes_without_a_storm(manual, client, replica_env):
    created = await client.post("/v1/automations", json=automation_body(
        replica_env.environment_id, name="paused", enabled=False,
        triggers=[{"type": "cron", "config": {"schedule": "0 * * * *"}}]))
    automation_id = assert_contract(created, "/v1/automations")["automation"]["id"]
    try:
        now = datetime.now(UTC)
        await _set_next(manual, automation_id, now - 5 * HOUR)
        assert await mine(automation_id, run_pass(manual.state)) == []
        assert (await client.patch(f"/v1/automations/{automation_id}", json={"enabled": True})).status_code == 200
        # Five hourly slots were missed: at most one runs, for this hour's slot (the latest, under an hour
        # old), never the five of them.
        this_hour = now.replace(minute=0, second=0, microsecond=0)
        fired = await mine(automation_id, run_pass(manual.state))
        assert [e.trigger_payload["scheduled_for"] for e in fired] in ([], [slot_id(this_hour)])
        assert len(await _rows(manual, automation_id)) == len(fired)
        assert await _next_fire_at(client, automation_id) == this_hour + HOUR
        assert await mine(automation_id, run_pass(manual.state)) == []
    finally:
        assert (await client.delete(f"/v1/automations/{automation_id}")).status_code == 200


# -- two real servers on one PostgreSQL ---------------------------------------------------------------


KEY = "sk_replicas_" + "c" * 40
SECRET = "two-servers-one-secret"
SLOTS = 5


@pytest.mark.slow
async def test_two_servers_on_one_postgresql_fire_each_slot_exactly_once(tmp_path, postgres_url, agent_tools, model,
                                                                         make_git_repo):
    from tests.replicas.test_events_restart import Server, setup_environment

    servers = []
    for name in ("a", "b"):
        data_dir = tmp_path / name / "data"
        data_dir.parent.mkdir()
        env = _env(data_dir, REPLICAS_BOOTSTRAP_API_KEY=KEY, REPLICAS_TOOLS_DIR=str(agent_tools),
                   REPLICAS_DATABASE_URL=postgres_url, REPLICAS_SECRET_KEY=SECRET,
                   REPLICAS_CRON_INTERVAL_SECONDS="0.1", REPLICAS_LOG_LEVEL="info",
                   REPLICAS_BOOT_TAKEOVER_ENABLED="false")  # the session's database: no other test's boots
        servers.append(Server(data_dir, env))
    engine = create_async_engine(Settings(database_url=postgres_url).resolved_database_url)
    sessions = make_sessionmaker(engine)
    headers = {"Authorization": f"Bearer {KEY}"}
    automation_id = None
    try:
        for server in servers:  # one after the other: the first one migrates the database
            await server.start()
        async with httpx.AsyncClient(base_url=servers[0].base, headers=headers, timeout=60) as client:
            env_id = await setup_environment(client, make_git_repo, model)
            automation_id = await _create_automation(client, sessions, automation_body(
                env_id, name="two-servers", triggers=[{"type": "cron", "config": {"schedule": "0 3 * * *"}}]))

            async def executions() -> list[AutomationExecution]:
                async with sessions() as session:
                    return list(await session.scalars(select(AutomationExecution).where(
                        AutomationExecution.automation_id == automation_id)))

            made_due = []
            for count in range(1, SLOTS + 1):
                due = datetime.now(UTC) - timedelta(seconds=1)
                made_due.append(slot_id(due))
                async with sessions() as session:
                    await session.execute(update(Automation).where(Automation.id == automation_id)
                                          .values(cron_next_fire_at=due))
                    await session.commit()
                await wait_for(lambda n=count: _has(executions, n), timeout=30, what=f"execution {count}")
                await asyncio.sleep(1.0)  # ten passes of each server: a duplicate would show by now
                assert len(await executions()) == count
                async with sessions() as session:
                    row = await session.get(Automation, automation_id)
                    assert row.cron_next_fire_at > datetime.now(UTC)  # advanced to tomorrow's 03:00

            rows = await executions()
            assert sorted(row.delivery_id for row in rows) == sorted(f"cron:{slot}" for slot in made_due)
            assert sorted(row.trigger_payload["scheduled_for"] for row in rows) == sorted(made_due)
            assert {row.trigger_type for row in rows} == {"cron"}
            def fired_lines() -> int:
                logs = [server.log_path.read_text() for server in servers]
                assert all("cron scheduler started interval=0.1s" in text for text in logs)  # both raced for it
                return sum(text.count(f"cron slot fired automation_id={automation_id}") for text in logs)

            # The log line follows the stored execution: on a loaded machine it may not be written yet.
            async def all_logged() -> bool:
                return fired_lines() >= SLOTS

            await wait_for(all_logged, timeout=10, what="every fired slot in the logs")
            assert fired_lines() == SLOTS

            # Clean up: wait for every workspace to exist, then delete each through the server that runs it
            # (a local workspace's processes and disk are its own server's).
            await wait_for(lambda: _all_started(executions), timeout=60, what="workspaces created")
            for row in await executions():
                if row.workspace_id:
                    async with sessions() as session:
                        workspace = await session.get(Workspace, row.workspace_id)
                    where = str((workspace.runtime_state or {}).get("workspace_dir", "")) if workspace else ""
                    owner = next((s for s in servers if where.startswith(str(s.data_dir))), servers[0])
                    response = await client.delete(f"{owner.base}/v1/replica/{row.workspace_id}")
                    assert response.status_code in (200, 404), response.text
            async with sessions() as session:
                await session.execute(delete(Automation).where(Automation.id == automation_id))
                await session.commit()
            automation_id = None
    finally:
        if automation_id is not None:  # never leave a schedule behind in the shared database
            async with sessions() as session:
                await session.execute(update(Automation).where(Automation.id == automation_id).values(enabled=False))
                await session.commit()
        for server in servers:
            server.stop()
        await engine.dispose()


async def _create_automation(client: httpx.AsyncClient, sessions, body: dict) -> uuid.UUID:
    """POST /v1/automations on the servers."""
    created = await client.post("/v1/automations", json=body)
    assert created.status_code == 201, created.text
    return uuid.UUID(created.json()["automation"]["id"])


async def _has(executions, count: int) -> bool:
    return len(await executions()) >= count


async def _all_started(executions) -> bool:
    return all(row.status in ("running", "completed", "failed") for row in await executions())

