"""The cron scheduler: fires each automation's cron slots, exactly once across control-plane processes
(spec §6, §10 #17).

    task = start_cron_scheduler(app.state)     # a pass every REPLICAS_CRON_INTERVAL_SECONDS (15)
    fired = await run_pass(app.state)          # one pass (tests, or a caller with its own clock)
    await stop_cron_scheduler(task)

Each automation with a cron trigger stores its next slot in `cron_next_fire_at` (UTC; computed in the
trigger's IANA timezone by `cron_schedule.next_fire_time`, which holds the DST rules: a wall time skipped
by spring-forward fires just after the jump, a repeated one in fall-back fires once, hourly schedules
keep firing every hour). A pass:

1. selects the enabled automations whose `cron_next_fire_at <= now`;
2. claims each with one compare-and-set UPDATE: `SET cron_next_fire_at = <first slot after now>
   WHERE id = :id AND cron_next_fire_at = :seen`. Only the process whose UPDATE hit goes on, so any
   number of `replicas serve` processes on one database fire a slot once: they coordinate through the
   database, not through memory, and no lease is needed;
3. fires it: `fire(..., trigger_type="cron", payload={"scheduled_for", "timezone"},
   delivery_id="cron:<slot>")`. The delivery id is a second guard: one slot can never record two
   executions. A process that dies between the claim and the fire loses that slot (at most once).

Downtime policy (no catch-up storm): when the scheduler was not running (every process down, or the
automation disabled and then re-enabled), the missed slots are never replayed one by one. A pass fires
ONCE, for the most recent missed slot, if that slot is at most `REPLICAS_CRON_CATCHUP_SECONDS` (default
3600, never less than two scheduler intervals) old; otherwise it fires nothing and moves on to the next
future slot. The execution's `trigger_payload.scheduled_for` says which slot a late run stands for.

`REPLICAS_CRON_ENABLED=false` keeps a process out of scheduling (it still serves the API).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from replicas.errors import ReplicasError
from replicas.services import cron_schedule, loops
from replicas.services.automations import fire
from replicas.store.models import Automation, AutomationExecution, aware, iso, utcnow

log = logging.getLogger("replicas.cron")

DEFAULT_INTERVAL_SECONDS = 15.0
DEFAULT_CATCHUP_SECONDS = 3600.0


@dataclass(frozen=True)
class SlotPlan:
    """What a pass does with one due automation: fire `slot` (None: skip, it is too old) and store
    `next_fire_at` (None: the schedule never fires again)."""

    slot: datetime | None
    next_fire_at: datetime | None



def plan_slot(expression: str, timezone: str, due: datetime, now: datetime, catchup_seconds: float) -> SlotPlan:
    """The downtime policy, as a pure function. `due` is the stored slot (<= now): fire the most recent
    slot in [due, now] if it is within `catchup_seconds` of now, else none; the next slot is the first
    one strictly after now."""
    schedule = cron_schedule.parse(expression)
    due, now = aware(due), aware(now)
    window_start = now - timedelta(seconds=catchup_seconds)
    latest = due if due >= window_start else None
    after = due if latest is not None else window_start
    while (candidate := cron_schedule.next_fire_time(schedule, timezone, after)) is not None and candidate <= now:
        latest = after = candidate
    return SlotPlan(slot=latest, next_fire_at=candidate)


def slot_id(slot: datetime) -> str:
    """The slot as the ISO string used in the payload and the delivery id (UTC, `Z`)."""
    return iso(slot)


async def _claim(services: Any, automation_id: uuid.UUID, seen: datetime, next_fire_at: datetime | None) -> bool:
    """Advance the automation from the slot this pass saw; whether this process did it (one winner)."""
    async with services.sessions() as session:
        result = await session.execute(
            update(Automation)
            .where(Automation.id == automation_id, Automation.cron_next_fire_at == seen, Automation.enabled.is_(True))
            .values(cron_next_fire_at=next_fire_at).execution_options(synchronize_session=False))
        await session.commit()
    return result.rowcount == 1


async def run_pass(services: Any, *, now: datetime | None = None,
                   catchup_seconds: float = DEFAULT_CATCHUP_SECONDS) -> list[AutomationExecution]:
    """One scheduler pass (safe in any number of processes at once); returns the executions it fired."""
    now = now or utcnow()
    async with services.sessions() as session:
        due = list(await session.execute(
            select(Automation.id, Automation.cron_next_fire_at, Automation.cron_expression, Automation.cron_timezone)
            .where(Automation.enabled.is_(True), Automation.cron_expression.is_not(None),
                   Automation.cron_next_fire_at <= now)
            .order_by(Automation.cron_next_fire_at)))
    fired: list[AutomationExecution] = []
    for automation_id, seen, expression, timezone in due:
        timezone = timezone or "UTC"
        try:
            plan = plan_slot(expression, timezone, seen, now, catchup_seconds)
        except cron_schedule.CronError as exc:  # only a hand-edited row gets here; create/PATCH validate
            log.warning("cron schedule unusable automation_id=%s error=%s", automation_id, exc)
            continue
        if not await _claim(services, automation_id, seen, plan.next_fire_at):
            continue  # another process took this slot
        if plan.slot is None:
            log.info("cron slots missed during downtime, skipped automation_id=%s first_missed=%s next=%s",
                     automation_id, slot_id(seen), plan.next_fire_at and slot_id(plan.next_fire_at))
            continue
        scheduled_for = slot_id(plan.slot)
        try:
            execution = await fire(services, automation_id, trigger_type="cron",
                                   payload={"scheduled_for": scheduled_for, "timezone": timezone},
                                   delivery_id=f"cron:{scheduled_for}", debounce=False)
        except ReplicasError as exc:  # disabled or deleted since the claim
            log.info("cron slot not fired automation_id=%s slot=%s reason=%s", automation_id, scheduled_for,
                     exc.error)
            continue
        log.info("cron slot fired automation_id=%s slot=%s execution_id=%s status=%s", automation_id,
                 scheduled_for, execution.id, execution.status)
        fired.append(execution)
    return fired


async def run_cron_scheduler(services: Any, interval: float,
                             catchup_seconds: float = DEFAULT_CATCHUP_SECONDS) -> None:
    """Run a pass now and then every `interval` seconds until cancelled."""
    catchup_seconds = max(catchup_seconds, 2 * interval)  # a slightly late pass is never "downtime"
    log.info("cron scheduler started interval=%ss catchup=%ss", interval, catchup_seconds)
    await loops.run_every("cron scheduler", interval, lambda: run_pass(services, catchup_seconds=catchup_seconds))


def start_cron_scheduler(state: Any) -> asyncio.Task:
    """Start the loop for an app (`app.state`: sessions, replicas, settings); cancel it to stop."""
    settings = state.settings
    return asyncio.create_task(run_cron_scheduler(state, settings.cron_interval_seconds,
                                                  settings.cron_catchup_seconds), name="cron-scheduler")


async def stop_cron_scheduler(task: asyncio.Task | None) -> None:
    await loops.cancel(task)
