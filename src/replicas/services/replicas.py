"""Replicas: the Replica API's behaviour over workspaces (spec §2.6, §3.2-§3.6, §4, §7).

    replicas = ReplicaService(settings, sessions, box)     # one per control-plane process
    await replicas.start()                                 # reattach, event pumps, webhook + lifecycle loops
    row = await replicas.create(principal, request, wait=False)   # `preparing`; boots in the background

What happens where:
- The record (`workspaces` row) is the truth for status, the chats and repos last reported, messages
  waiting for the engine (`pending_messages`) and pull requests. Reads of a sleeping workspace are served
  from it and from the stored events, so they need not wake it.
- Events: an `EventPump` per awake workspace stores the engine's journal; `_on_stored` runs in the same
  transaction and projects each event onto the record and into the webhook outbox, so a projection or a
  webhook happens exactly once per event, whatever restarts in between.
- Transitions (provisioning, waking) run as background tasks, one per workspace at a time. Messages sent
  meanwhile wait in `pending_messages` and are delivered, in order, once the engine is up.
- The lifecycle reaper (one process at a time, under a database lease) sleeps idle workspaces, applies
  the lifecycle policies and archives long sleepers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas import draining, metrics, outbound
from replicas.crypto import SecretBox
from replicas.engine_protocol import incompatibility
from replicas.errors import BadRequest, Conflict, NotFound, ReplicasError, ServiceUnavailable, TooManyRequests
from replicas.events import EventHub, EventPump, notify
from replicas.events.envelope import frame_of, sse_frame
from replicas.events.fanout import follow_batches
from replicas.events.pump import connect_via
from replicas.events.webhooks import WebhookDispatcher, enqueue
from replicas.runtime import RuntimeStatus, WorkspaceWillNotRun
from replicas.services import (
    credentials,
    gitlab_push,
    hook_runner,
    leases,
    loops,
    provisioning,
    usage,
    warm_hooks,
    warm_pools,
)
from replicas.services.agent_availability import AgentAvailabilityCache
from replicas.services.environments import parse_uuid
from replicas.services.pool_filler import PoolFiller
from replicas.services.principal import Principal
from replicas.services.pump_leases import PumpLeases
from replicas.services.replica_status_feed import connect as connect_status_feed
from replicas.services.replica_views import (
    LIST_COLUMNS,
    active_agent,
    assistant_text,
    environment_hooks,
    iso,
    list_item,
    pull_requests_from,
    replica_chat,
    repository_status,
)
from replicas.services.senders import message_sender, recorded_senders
from replicas.services.transitions import TransitionLeases
from replicas.services.workspaces import POOLED, WorkspaceManager, lock_workspace
from replicas.settings import Settings
from replicas.store.db import read_sessions
from replicas.store.models import Environment, Lease, Workspace, WorkspaceEvent, aware, utcnow

log = logging.getLogger("replicas.replicas")
ENGINE_CHECK_SECONDS = 20.0  # how long a restarted control plane keeps asking an active engine that does not answer

AWAKE = ("preparing", "active")
WAKEABLE = ("sleeping", "archived")
WHEN_DONE = {"delete_when_done": "delete", "archive_when_done": "archive", "sleep_when_done": "sleep"}
ENGINE_VERSION = "v1"
# An agent's stream of deltas moves `last_activity_at` at most this often: each move is a row update that tells the
# replica status streams of every process (replica_status_feed.py), for a time that the list shows in minutes.
DELTA_ACTIVITY_SECONDS = 1.0
# What pool workspaces are warmed as: any agent's create claims one (its chat is switched at the claim, as every
# agent runs in any engine); only the size must match, its limits being the sandbox's own.
POOL_AGENT, POOL_SIZE = "claude", "small"
LIFECYCLE_LEASE = "lifecycle-reaper"
CAPACITY_LOCK = "workspace-capacity"  # a `leases` row used only as a lock: creates are admitted one at a time
SLASH_COMMANDS = [
    {"command": "/plan", "description": "Plan first: the agent proposes a plan and changes nothing",
     "providers": ["claude", "codex", "cursor", "opencode", "pi"]},
    {"command": "/goal", "description": "Work towards a goal until it is reached (Codex goal mode)",
     "argumentHint": "<goal>", "providers": ["codex"]},
    {"command": "/fast", "description": "Fast mode: less deliberation, quicker answers",
     "providers": ["claude", "codex"]},
]
_PREFIXES = {"/plan": "planMode", "/goal": "goalMode", "/fast": "fastMode"}
_AUTH_VARIABLES = {
    "claude": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "AWS_ACCESS_KEY_ID"),
    "codex": ("OPENAI_API_KEY", "CODEX_API_KEY"),
    "opencode": ("OPENROUTER_API_KEY", "OPENCODE_GO_API_KEY", "OPENCODE_API_KEY"),
    "cursor": ("CURSOR_API_KEY",),
    "pi": ("OPENROUTER_API_KEY",),
}


def message_options(message: str, *, model: str | None = None, images: list | None = None,
                    plan_mode: bool | None = None, goal_mode: bool | None = None, fast_mode: bool | None = None,
                    thinking_level: str | None = None,
                    sender: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """The message with leading `/plan`, `/goal`, `/fast` stripped, and the engine's (camelCase) options, with
    who sent it (`senders.message_sender`) for the engine to journal with the user's message."""
    flags = {"planMode": plan_mode, "goalMode": goal_mode, "fastMode": fast_mode}
    while True:
        match = re.match(r"^\s*(/plan|/goal|/fast)(?:\s+|$)", message)
        if not match:
            break
        flags[_PREFIXES[match.group(1)]] = True
        message = message[match.end():]
    if not message.strip():
        raise BadRequest("Invalid request", "message: must not be empty")
    options = {"model": model, "images": images or None, "thinkingLevel": thinking_level, **flags, "sender": sender}
    return message, {key: value for key, value in options.items() if value not in (None, False)}


class ReplicaService:
    """The control plane's replica behaviour; `app.state.replicas`."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], box: SecretBox,
                 manager: WorkspaceManager | None = None):
        self.settings, self.sessions, self.box = settings, sessions, box
        self.manager = manager or WorkspaceManager(settings, sessions, box)
        self.agents = AgentAvailabilityCache(settings)
        self.hub = EventHub()
        connect_status_feed(sessions, self.hub)  # the status streams are told of replica changes on it
        self.pump = EventPump(sessions, connect_via(self.manager), self.hub, on_stored=self._on_stored)
        self.owner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        timeout = settings.webhook_timeout_seconds
        self.dispatcher = WebhookDispatcher(sessions, box, owner_id=self.owner_id, timeout=timeout,
                                            retry_delays=settings.webhook_retry_delays,
                                            lease_seconds=max(30.0, timeout * 3))
        self._transitions: dict[str, asyncio.Task] = {}
        self._lock_row_ready = False
        self._delivery_locks: dict[str, asyncio.Lock] = {}
        self._attached: dict[str, float] = {}  # workspace id -> loop time of its last attach write (_attach)
        self._tasks: set[asyncio.Task] = set()
        self._loops: list[asyncio.Task] = []
        self.pools = PoolFiller(settings, sessions, self.manager, self.owner_id)
        self.pumps = PumpLeases(sessions, self.pump, self.owner_id, runtime=settings.runtime)
        self.transition_leases = TransitionLeases(sessions, self.owner_id, runtime=settings.runtime,
                                                  ttl=settings.transition_lease_seconds)
        self.listener: notify.EventListener | None = None

    # -- process lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Say which agents this server can run, reattach to the workspaces this store knows, then run the
        webhook and lifecycle loops."""
        await self.agents.log_summary(log)
        if self.settings.resolved_database_url.startswith("postgres"):
            self.listener = notify.EventListener(self.settings.resolved_database_url, self.sessions, self.hub,
                                                 local=self.pump.running)
            await self.listener.start()
        async with self.sessions() as session:
            rows = list(await session.scalars(select(Workspace).where(Workspace.status.in_(AWAKE))))
        for row in rows:
            if row.status == "active":
                await self.pumps.claim(row)  # else another process pumps it (pump_leases.py)
                self._background(self._check_engine(row))
                if row.pending_messages:
                    self._background(self._deliver_pending(row.id))
            # A `preparing` one is taken over once its boot's lease lapses (transitions.py), here or elsewhere.
        self._background(hook_runner.remove_abandoned_sandboxes(self.manager.runtime, self.settings))
        self._background(self._find_by_label())
        self._loops = [asyncio.create_task(self.dispatcher.run_forever(self.settings.webhook_poll_seconds),
                                           name="webhook-dispatcher"),
                       asyncio.create_task(self.pumps.run(), name="pump-leases"),
                       asyncio.create_task(self.transition_leases.run(
                           self._take_over if self.settings.boot_takeover_enabled else None),
                           name="transition-leases"),
                       asyncio.create_task(self._lifecycle_loop(), name="lifecycle-reaper")]
        if self.settings.pool_enabled:
            self._loops.append(asyncio.create_task(self.pools.run(), name="warm-pool-filler"))

    async def _find_by_label(self) -> None:
        """After a start, on a runtime that can list its workspaces by label (Kubernetes: `discover`), compare them
        with the store: a workspace whose volume is gone from the cluster (deleted by hand, a lost namespace) goes
        to `error` saying so, instead of failing at its next wake; workspaces this store does not know (left by
        a delete whose clean-up failed, or of another installation in the namespace) are named in the log and left
        alone."""
        discover = getattr(self.manager.runtime, "discover", None)
        if discover is None:
            return
        try:
            found = await discover()
        except Exception:  # noqa: BLE001 - a check at start: the cluster may be unreachable for now
            log.exception("listing the runtime's workspaces by label failed")
            return
        async with self.sessions() as session:
            rows = list(await session.scalars(select(Workspace).where(
                Workspace.runtime == self.manager.runtime.name,
                Workspace.status.in_(("active", "sleeping", "archived")), Workspace.runtime_state.is_not(None))))
            ids = []
            for found_id in found:
                with contextlib.suppress(ValueError):  # ids that are not a replica's (a hook test's) are strangers
                    ids.append(uuid.UUID(found_id))
            known = {str(i) for i in await session.scalars(select(Workspace.id).where(Workspace.id.in_(ids)))}
        for row in rows:
            if str(row.id) not in found:
                log.warning("workspace %s: its volume is not in the cluster any more", row.id)
                await self._fail(row, "The workspace's volume (PersistentVolumeClaim) is gone from the cluster; "
                                      "its files are lost: delete the replica")
        # Hook tests' throwaway workspaces have no row (hook_runner.py removes abandoned ones).
        strangers = sorted(i for i in set(found) - known if not i.startswith(hook_runner.WORKSPACE_PREFIX))
        if strangers:
            log.warning("workspaces in the cluster that this store does not know, left alone (their objects carry "
                        "the annotation replicas.dev/workspace-id): %s", ", ".join(strangers))

    async def stop(self) -> None:
        for task in [*self._loops, *self._transitions.values(), *self._tasks]:
            task.cancel()
        for task in [*self._loops, *self._transitions.values(), *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.pools.stop()
        await self.pumps.release_all()
        await self.transition_leases.release_all()  # another process takes the boots cut short over at once
        if self.listener is not None:
            await self.listener.stop()
        await self.hub.aclose()
        with contextlib.suppress(Exception):
            await leases.release(self.sessions, LIFECYCLE_LEASE, self.owner_id)

    def _background(self, coro: Coroutine) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _check_engine(self, row: Workspace) -> None:
        """An active workspace found at start-up: an engine that answers with a protocol this control plane does
        not speak (it was upgraded under a running workspace) is stopped and the workspace put in error, naming
        it, rather than half-used. An engine still starting (a busy machine) is asked again for a while; one that
        never answers is left to the pump and the wake path."""
        delay, deadline = 0.25, time.monotonic() + ENGINE_CHECK_SECONDS
        while True:
            try:
                health = await self.manager.call_engine(row, "GET", "/health")
                break
            except ReplicasError:
                if time.monotonic() + delay > deadline:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        if reason := incompatibility(health, image=(row.runtime_state or {}).get("image")):
            log.warning("workspace %s: engine incompatible after a control-plane upgrade: %s", row.id, reason)
            with contextlib.suppress(Exception):
                await self.manager.runtime.stop(self.manager.runtime.load_state(row.runtime_state))
            await self._fail(row, f"Workspace engine is incompatible: {reason}; delete the workspace, or wake it "
                                  "after the image is rebuilt")

    async def _take_over(self, row: Workspace) -> None:
        """A workspace left `preparing` by a process that stopped (its boot's lease lapsed, transitions.py): this
        process holds the lease now and brings it up."""
        self._start_transition(row, self._recover_preparing(row), leased=True)

    async def _recover_preparing(self, row: Workspace) -> None:
        """Its engine may be up (a wake, or a boot that finished), or down with its disk kept (a wake cut short:
        wake it again), or the first boot was cut short: lay the workspace out again from the start, as its
        create would have (the first message still waits in `pending_messages`)."""
        row = await self._reload(row.id) or row
        if row.status != "preparing":
            return
        if row.runtime_state and row.default_chat_id:
            with contextlib.suppress(ReplicasError):
                health = await self.manager.call_engine(row, "GET", "/health")
                if reason := incompatibility(health, image=(row.runtime_state or {}).get("image")):
                    await self._fail(row, f"Workspace engine is incompatible: {reason}")
                    return
                await self._became_active(await self._set(row.id, status="active", status_changed_at=utcnow()))
                return
            await self._wake_task(row)
            return
        if row.runtime_state:
            await self.manager.discard_runtime(row)
            row = await self._set(row.id, runtime_state=None)
        await self._activate(row, lambda: self.manager.provision(row, Principal.system(row.organization_id)),
                             "create")

    # -- records -----------------------------------------------------------------------------------

    async def get_workspace(self, principal: Principal, workspace_id: str) -> Workspace:
        """The organization's workspace; 404 "Workspace not found" otherwise."""
        return await self.manager.get(principal, workspace_id)

    async def _reload(self, workspace_id: uuid.UUID) -> Workspace | None:
        async with self.sessions() as session:
            return await session.get(Workspace, workspace_id)

    async def _set(self, workspace_id: uuid.UUID, **values: Any) -> Workspace:
        async with self.sessions() as session:
            row = await lock_workspace(session, workspace_id)
            if row is None:
                raise NotFound("Workspace not found")
            for key, value in values.items():
                setattr(row, key, value)
            await session.commit()
            return row

    async def touch(self, workspace: Workspace) -> None:
        """Record activity now (keeps the idle sleeper away)."""
        async with self.sessions() as session:
            await session.execute(update(Workspace).where(Workspace.id == workspace.id)
                                  .values(last_activity_at=utcnow()).execution_options(synchronize_session=False))
            await session.commit()

    # -- create ------------------------------------------------------------------------------------

    async def _environment_for(self, session: AsyncSession, principal: Principal, environment_id: str | None,
                               repository_set_id: str | None, repository_ids: list[str] | None) -> str:
        if environment_id:
            return environment_id
        if not repository_set_id and not repository_ids:
            raise BadRequest("environment_id is required",
                             "Pass environment_id (or the deprecated repository_set_id / repository_ids)")
        query = select(Environment.id).where(Environment.organization_id == principal.organization_id,
                                             Environment.user_id.is_(None))
        if repository_set_id:
            query = query.where(Environment.repository_set_id == parse_uuid(repository_set_id, "Repository set"))
        else:
            ids = [parse_uuid(value, "Repository") for value in repository_ids or []]
            query = query.where(Environment.repository_id.in_(ids))
        found = await session.scalar(query.order_by(Environment.created_at).limit(1))
        if found is None:
            raise NotFound("Repository or repository set not found",
                           "No environment is bound to the given repository set or repositories")
        return str(found)

    async def create(self, principal: Principal, request: Any, *, wait: bool, source: str = "api",
                     auto_stop_minutes: int | None = None) -> Workspace:
        """Create a replica from a validated CreateReplicaRequest; with `wait`, return once it is active
        (or in error), otherwise at once, `preparing`."""
        message, options = message_options(request.message, sender=message_sender(principal),
                                           **request.options())  # images as plain dicts
        async with self.sessions() as session:
            env_ref = await self._environment_for(session, principal, request.environment_id,
                                                  request.repository_set_id, request.repository_ids)
        webhook_url, webhook_secret = request.webhook()
        if webhook_url:  # 400 now for what every delivery would be refused (outbound.py checks each again)
            outbound.check_url(webhook_url, self.settings)
        await self.agents.require(request.coding_agent)
        pending = [{"id": str(uuid.uuid4()), "message": message, "options": options, "chat_id": None,
                    "coding_agent": None, "queued_at": iso(utcnow())}]
        fields = dict(name=request.name, source=source, model=request.model,
                      lifecycle_policy=request.lifecycle_policy or "default", config=request.config or {},
                      webhook_url=webhook_url, pending_messages=pending, auto_stop_minutes=auto_stop_minutes,
                      webhook_secret_encrypted=self.box.encrypt(webhook_secret) if webhook_secret else None)
        claimed = None
        if (request.size or POOL_SIZE) == POOL_SIZE:
            claimed = await self._claim(principal, env_ref, {**fields, "coding_agent": request.coding_agent})
        if claimed is not None:
            row = claimed
            task = self._start_transition(row, self._activate_claimed(row))
        else:
            row = await self.manager.create_record(principal, env_ref, provider=request.coding_agent,
                                                   size=request.size or POOL_SIZE, **fields)
            await self._admit(row)
            task = self._start_transition(row, self._bring_up(row, principal))
        if wait:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
            row = await self._reload(row.id) or row
        return row

    async def _claim(self, principal: Principal, env_ref: str, fields: dict[str, Any]) -> Workspace | None:
        """Take a ready workspace of the environment's warm pool as this create's replica: `preparing`, renamed
        and attributed to the caller, under the capacity lock (admitted like a cold create). None: the cold path
        (no enabled pool, none ready, or the caller has provider keys of their own, which the pool's engine,
        started with the organization's, would not use; likewise a GitLab thread's push access)."""
        async with self.sessions() as session:
            config = await warm_pools.enabled_config(session, principal, env_ref)
            if config is None:
                return None
            if principal.user_id is not None:
                own = await credentials.agent_credentials(session, self.box, principal.organization_id,
                                                          principal.user_id)
                if own != await credentials.agent_credentials(session, self.box, principal.organization_id, None):
                    return None
            if await gitlab_push.push_env_for(session, self.box, principal.organization_id, fields.get("source")):
                return None  # a GitLab thread's push access: the pool's engine was started without it
            awake = await self._awake_under_lock(session)
            if awake >= self.settings.max_active_workspaces:
                await session.rollback()
                raise self._at_capacity()
            workspace_id = await warm_pools.claim(session, config)
            row = await session.get(Workspace, workspace_id) if workspace_id else None
            if row is None:
                await session.commit()
                return None
            now = utcnow()
            values = {"status": "preparing", "user_id": principal.user_id, "created_at": now, "updated_at": now,
                      "status_changed_at": now, "last_activity_at": now, **fields}
            for key, value in values.items():
                setattr(row, key, value)
            await session.commit()
        log.info("workspace %s claimed from warm pool %s", row.id, config.id)
        return row

    async def _activate_claimed(self, row: Workspace) -> None:
        """A claimed pool workspace: its default chat is the requested agent's (pool engines start with a
        POOL_AGENT chat: another agent gets a new chat in its place), its start hooks run now, then it is active
        and gets its first message."""

        async def start_hooks_then_active() -> Workspace:
            nonlocal row
            if row.coding_agent != POOL_AGENT:
                chat = await self.manager.call_engine(row, "POST", "/chats", json={"provider": row.coding_agent})
                await self.manager.call_engine(row, "DELETE", f"/chats/{row.default_chat_id}")
                row = await self._set(row.id, default_chat_id=chat["id"])
            await self.manager.start_hooks(row)
            return await self._set(row.id, status="active", status_changed_at=utcnow(), last_activity_at=utcnow())

        await self._activate(row, start_hooks_then_active, "claim")

    async def _admit(self, row: Workspace) -> None:
        """Capacity: at most `max_active_workspaces` awake. Counted after the insert, one create at a time
        (under a row lock every process shares), so concurrent creates can never slip past the limit
        together, nor all refuse each other: each sees the rows inserted and not yet removed before its
        turn; the one over the limit is removed and answered 429. Nothing else is ever evicted."""
        async with self.sessions() as session:
            awake = await self._awake_under_lock(session)
            if awake <= self.settings.max_active_workspaces:
                await session.commit()
                return
            mine = await session.get(Workspace, row.id)
            if mine is not None:
                await session.delete(mine)
            await session.commit()
        raise self._at_capacity()

    async def _awake_under_lock(self, session: AsyncSession) -> int:
        """Take the capacity lock for `session`'s transaction and count the awake workspaces."""
        await self._ensure_lock_row()
        # The UPDATE takes the lock (PostgreSQL: the row; SQLite: the database's write lock) until commit.
        await session.execute(update(Lease).where(Lease.name == CAPACITY_LOCK)
                              .values(owner=self.owner_id, expires_at=utcnow())
                              .execution_options(synchronize_session=False))
        return await session.scalar(select(func.count()).select_from(Workspace).where(Workspace.status.in_(AWAKE)))

    def _at_capacity(self) -> TooManyRequests:
        retry = self.settings.capacity_retry_after_seconds
        return TooManyRequests("At capacity: too many active workspaces",
                               f"{self.settings.max_active_workspaces} workspaces are awake; "
                               f"retry in {retry} s, or put one to sleep or delete it",
                               headers={"Retry-After": str(retry)})

    async def _admit_wake(self, row: Workspace) -> bool | None:
        """Capacity for a wake, as for a create: under the same lock, a sleeping or archived workspace becomes
        `preparing` only while fewer than `max_active_workspaces` are awake. True: admitted (now preparing);
        False: at capacity (unchanged); None: no longer asleep (another request or process woke it)."""
        async with self.sessions() as session:
            awake = await self._awake_under_lock(session)
            current = await session.get(Workspace, row.id)
            admitted = None
            if current is not None and current.status in WAKEABLE:
                admitted = awake < self.settings.max_active_workspaces
                if admitted:
                    current.status = "preparing"
                    current.status_changed_at = utcnow()
            await session.commit()
        return admitted

    async def _ensure_lock_row(self) -> None:
        """Make the capacity lock's row, once per process (every create and wake takes the lock)."""
        if self._lock_row_ready:
            return
        async with self.sessions() as session:
            if await session.get(Lease, CAPACITY_LOCK) is None:
                session.add(Lease(name=CAPACITY_LOCK, owner=self.owner_id, expires_at=utcnow()))
                with contextlib.suppress(IntegrityError):  # another process made it first
                    await session.commit()
        self._lock_row_ready = True

    def _start_transition(self, row: Workspace, coro: Coroutine, *, leased: bool = False) -> asyncio.Task:
        """Run a boot or wake under the workspace's transition lease (transitions.py), taken first unless
        `leased`: another process takes the work over if this one stops before it ends."""
        key = str(row.id)

        async def under_lease() -> None:
            try:
                if not leased and not await self.transition_leases.take(key):
                    log.info("workspace %s: another process is bringing it up", key)
                    return
                await coro
            finally:
                with contextlib.suppress(Exception):
                    await self.transition_leases.give_back(key)

        task = asyncio.create_task(under_lease(), name=f"transition-{key}")
        task.add_done_callback(lambda _: coro.close())  # `coro` never ran: not ours to run, or cancelled first
        self._transitions[key] = task
        task.add_done_callback(lambda t: self._transitions.pop(key, None) if self._transitions.get(key) is t
                               else None)
        return task

    async def _bring_up(self, row: Workspace, principal: Principal) -> None:
        await self._activate(row, lambda: self.manager.provision(row, principal), "create")

    async def _activate(self, row: Workspace, bring_up: Callable[[], Awaitable[Workspace]], kind: str) -> None:
        """Run `bring_up` (a cold provision, or a claimed workspace's start hooks); a failure is recorded on the
        workspace, which stays queryable; success makes it active (`_became_active`), timed as `kind`."""
        try:
            with metrics.TRANSITIONS.labels(kind=kind).time():
                row = await bring_up()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on the workspace, which stays queryable
            await self._fail(row, str(exc) or type(exc).__name__)
            return
        await self._became_active(row)

    async def _became_active(self, row: Workspace) -> None:
        """Count usage, announce `replica.ready` (the first time), pump its events, deliver what waits."""
        async with self.sessions() as session:
            current = await lock_workspace(session, row.id)
            if current is None:
                return
            await usage.open_session(session, current)
            if not current.ready_notified:
                current.ready_notified = True
                self._webhook(session, current, "replica.ready", {})
            await session.commit()
            row = current
        await self.pumps.claim(row)
        await self._deliver_pending(row.id)

    async def _fail(self, row: Workspace, message: str) -> None:
        async with self.sessions() as session:
            current = await lock_workspace(session, row.id)
            if current is None:
                return
            current.status = "error"
            current.error_message = message
            current.status_changed_at = utcnow()
            current.config = {**(current.config or {}), "provisioning_error": {"message": message}}
            await usage.close_sessions(session, current.id)
            self._webhook(session, current, "replica.error", {"message": message})
            await session.commit()
        await self.pumps.release(row.id)

    # -- webhooks ----------------------------------------------------------------------------------

    def _webhook(self, session: AsyncSession, row: Workspace, event_type: str, data: dict[str, Any]) -> None:
        """Queue a webhook in the caller's transaction (nothing when the replica has no webhook_url)."""
        if not row.webhook_url:
            return
        repos = (row.snapshot or {}).get("repos", [])
        statuses = [repository_status(repo, include_diff=False) for repo in repos]
        for status in statuses:
            status.pop("git_diff", None)
        pr_urls = list(dict.fromkeys(url for status in statuses for url in status["pr_urls"]))
        pr_urls += [pr["url"] for pr in row.pull_requests or [] if pr["url"] not in pr_urls]
        secret = self.box.decrypt(row.webhook_secret_encrypted) if row.webhook_secret_encrypted else None
        enqueue(session, box=self.box, organization_id=row.organization_id, workspace_id=row.id,
                event_type=event_type, url=row.webhook_url, secret=secret, replica=list_item(row),
                data={"repository_statuses": statuses, "pr_urls": pr_urls, **data})

    # -- projections of stored events --------------------------------------------------------------

    async def _on_stored(self, session: AsyncSession, workspace_id: uuid.UUID, events: list[dict]) -> None:
        row = await session.get(Workspace, workspace_id)
        if row is None:
            return
        snapshot = dict(row.snapshot or {})
        chats = {chat["id"]: chat for chat in snapshot.get("chats", [])}
        last_text = dict(snapshot.get("last_text", {}))
        activity = streaming = False
        for event in events:
            kind, payload = event["type"], event.get("payload") or {}
            if kind in ("chat.created", "chat.updated") and payload.get("chat"):
                chats[payload["chat"]["id"]] = payload["chat"]
            elif kind == "chat.deleted":
                gone = chats.pop(str(payload.get("chatId")), None)
                if gone is not None:
                    snapshot["deleted_chats"] = _deleted_chats(snapshot, gone)
            elif kind in ("repo.discovered", "repo.status.changed"):
                snapshot["repos"] = payload.get("repos", [])
                row.pull_requests = pull_requests_from(snapshot["repos"], row.pull_requests or [])
            elif kind.startswith("hooks."):
                snapshot["hooks"] = {"running": bool(payload.get("running")),
                                     "completed": bool(payload.get("completed"))}
            elif kind == "engine.status.changed":
                snapshot["status"] = payload.get("status", {})
            elif kind == "chat.turn.delta":
                streaming = True
                text = assistant_text(payload.get("event") or {})
                if text:
                    last_text[str(payload.get("chatId"))] = text[-4000:]
            elif kind in ("chat.turn.accepted", "chat.turn.started"):
                activity = True
            elif kind == "chat.turn.completed":
                activity = True
                snapshot["turns_completed"] = int(snapshot.get("turns_completed", 0)) + 1
                chat_id = str(payload.get("chatId"))
                row.snapshot = {**snapshot, "chats": list(chats.values()), "last_text": last_text}
                self._webhook(session, row, "replica.turn_completed", {
                    "chat_id": chat_id, "is_complete": bool(payload.get("isComplete")),
                    "last_assistant_message": last_text.get(chat_id)})
        snapshot["chats"] = list(chats.values())
        snapshot["last_text"] = last_text
        row.snapshot = snapshot
        now = utcnow()
        if activity or (streaming and (row.last_activity_at is None or
                                       (now - aware(row.last_activity_at)).total_seconds() >= DELTA_ACTIVITY_SECONDS)):
            row.last_activity_at = now
        notify.announce(session, workspace_id, events[-1]["seq"])  # other processes' streams (PostgreSQL)

    # -- messages ----------------------------------------------------------------------------------

    async def _engine_chats(self, row: Workspace) -> list[dict]:
        return (await self.manager.call_engine(row, "GET", "/chats"))["chats"]

    async def _resolve_chat(self, row: Workspace, chat_id: str | None, coding_agent: str | None,
                            create: dict | None = None) -> str:
        """The chat a message goes to: the given one; else the agent's chat (created if it has none);
        else the workspace's default chat."""
        if chat_id and not create:
            return chat_id
        chats = await self._engine_chats(row)
        if create:
            if not any(chat["id"] == create["id"] for chat in chats):
                await self.manager.call_engine(row, "POST", "/chats", json=create)
            return create["id"]
        if coding_agent:
            ordered = sorted(chats, key=lambda chat: chat["id"] != row.default_chat_id)
            for chat in ordered:
                if chat["provider"] == coding_agent:
                    return chat["id"]
            created = await self.manager.call_engine(row, "POST", "/chats", json={"provider": coding_agent})
            return created["id"]
        if row.default_chat_id:
            return row.default_chat_id
        if not chats:
            raise ServiceUnavailable("Workspace has no chat yet")
        return chats[0]["id"]

    async def _send_now(self, row: Workspace, entry: dict) -> dict:
        chat = await self._resolve_chat(row, entry.get("chat_id"), entry.get("coding_agent"),
                                        entry.get("create_chat"))
        body = {"message": entry["message"], **entry.get("options", {})}
        if entry.get("id"):
            body["clientRequestId"] = entry["id"]
        result = await self.manager.call_engine(row, "POST", f"/chats/{chat}/messages", json=body)
        await self.touch(row)
        return {**result, "chatId": chat}

    async def _queue_pending(self, row: Workspace, entry: dict) -> int:
        """Append a message for delivery once the engine is up; returns its position among the waiting."""
        async with self.sessions() as session:
            current = await lock_workspace(session, row.id)
            if current is None:
                raise NotFound("Workspace not found")
            current.pending_messages = [*(current.pending_messages or []), entry]
            current.last_activity_at = utcnow()
            position = len(current.pending_messages) - 1
            status = current.status
            await session.commit()
        if status == "active":
            self._background(self._deliver_pending(row.id))
        return position

    async def _deliver_pending(self, workspace_id: uuid.UUID) -> None:
        """Deliver waiting messages in order, one at a time; stops when the engine is not reachable."""
        lock = self._delivery_locks.setdefault(str(workspace_id), asyncio.Lock())
        async with lock:
            while True:
                row = await self._reload(workspace_id)
                if row is None or row.status != "active" or not row.pending_messages:
                    return
                entry = row.pending_messages[0]
                try:
                    await self._send_now(row, entry)
                except ServiceUnavailable:
                    log.warning("workspace %s: engine unreachable; %d message(s) wait", workspace_id,
                                len(row.pending_messages))
                    return
                except ReplicasError as exc:
                    log.warning("workspace %s: dropping a waiting message the engine refused: %s", workspace_id,
                                exc)
                async with self.sessions() as session:
                    current = await lock_workspace(session, workspace_id)
                    if current is None:
                        return
                    current.pending_messages = [m for m in current.pending_messages or []
                                                if m.get("id") != entry.get("id")]
                    await session.commit()

    @staticmethod
    def _direct(row: Workspace) -> bool:
        """Whether a new message may go straight to the engine: only when it is up and nothing sent earlier
        still waits for delivery (else it would overtake those, e.g. the first message of a new replica)."""
        return row.status == "active" and not row.pending_messages

    async def send_message(self, principal: Principal, workspace_id: str, message: str, *,
                           chat_id: str | None = None, coding_agent: str | None = None,
                           sender_user_id: str | None = None, sender_email: str | None = None,
                           **fields: Any) -> dict[str, Any]:
        """POST /v1/replica/{id}/messages: sent, queued behind a busy agent, or waking a sleeper. The body's
        sender is taken only from an org key (`senders.message_sender`)."""
        row = await self.get_workspace(principal, workspace_id)
        if row.status == "error":
            raise Conflict("Workspace is in error state", row.error_message)
        message, options = message_options(message, sender=message_sender(principal, sender_user_id, sender_email),
                                           **fields)
        await self.agents.require(coding_agent or _chat_provider(row, chat_id))
        entry = {"id": str(uuid.uuid4()), "message": message, "options": options, "chat_id": chat_id,
                 "coding_agent": coding_agent, "queued_at": iso(utcnow())}
        if self._direct(row):
            try:
                result = await self._send_now(row, entry)
            except ServiceUnavailable:
                row = await self._sleep_if_engine_gone(row)
            else:
                queued = bool(result.get("queued"))
                return {"status": "queued" if queued else "sent", "message_id": result.get("messageId"),
                        "position": result.get("position") if queued else None, "chat_id": result["chatId"]}
        known_chat = chat_id or (row.default_chat_id if not coding_agent else None)
        if row.status in WAKEABLE:
            await self.wake(row, then=lambda: self._queue_pending(row, entry))
            return {"status": "waking", "message_id": entry["id"], "position": None, "chat_id": known_chat}
        position = await self._queue_pending(row, entry)
        return {"status": "queued", "message_id": entry["id"], "position": position, "chat_id": known_chat}

    async def _sleep_if_engine_gone(self, row: Workspace) -> Workspace:
        """An active workspace whose engine did not answer: when the runtime says it is gone for good (its pod
        evicted or failing, its process tree dead), it is put to sleep, disk kept, and returned so (a message
        then wakes it); otherwise (it runs, only slow to answer) the 503 stands."""
        try:
            if await self.manager.poll(row) is RuntimeStatus.RUNNING:
                raise ServiceUnavailable("Workspace engine is unreachable", "it is running; retry in a few seconds")
            reason = "its engine is not running"
        except WorkspaceWillNotRun as exc:
            reason = str(exc)
        log.warning("workspace %s: engine gone (%s); it sleeps, and wakes for the message", row.id, reason)
        await self._put_to_sleep(row)
        return await self._reload(row.id) or row

    async def send_to_chat(self, principal: Principal, workspace_id: str, chat_id: str, message: str,
                           **fields: Any) -> tuple[int, dict[str, Any]]:
        """POST /v1/workspaces/{id}/chats/{chatId}/messages: (200, sent or queued) or (202, waiting)."""
        row = await self.get_workspace(principal, workspace_id)
        if row.status in ("archived", "error"):
            raise Conflict(f"Workspace is {row.status}")
        message, options = message_options(message, sender=message_sender(principal), **fields)
        await self.agents.require(_chat_provider(row, chat_id))
        entry = {"id": str(uuid.uuid4()), "message": message, "options": options, "chat_id": chat_id,
                 "coding_agent": None, "queued_at": iso(utcnow())}
        if self._direct(row):
            result = await self._send_now(row, entry)
            return 200, {"messageId": result["messageId"], "queued": bool(result.get("queued")),
                         "position": int(result.get("position") or 0)}
        queued: list[int] = []

        async def queue() -> None:
            queued.append(await self._queue_pending(row, entry))

        if row.status == "sleeping":
            await self.wake(row, then=queue)
        else:
            await queue()
        return 202, {"messageId": entry["id"], "queued": True, "position": queued[0]}

    async def send_deferred(self, principal: Principal, workspace_id: str, provider: str, message: str, *,
                            chat_id: str | None = None, **fields: Any) -> dict[str, Any]:
        """POST /v1/workspaces/{id}/messages/deferred: pick or create the provider's chat, queue, wake."""
        row = await self.get_workspace(principal, workspace_id)
        if row.status in ("archived", "error"):
            raise Conflict(f"Workspace is {row.status}")
        message, options = message_options(message, sender=message_sender(principal), **fields)
        await self.agents.require(provider)
        chats = (row.snapshot or {}).get("chats", [])
        if chat_id is None:
            chat_id = next((c["id"] for c in sorted(chats, key=lambda c: c["id"] != row.default_chat_id)
                            if c.get("provider") == provider), None)
        entry = {"id": str(uuid.uuid4()), "message": message, "options": options, "chat_id": chat_id,
                 "coding_agent": provider, "queued_at": iso(utcnow())}
        if chat_id is None:
            chat_id = str(uuid.uuid4())
            entry["create_chat"] = {"id": chat_id, "provider": provider}
        if self._direct(row):
            result = await self._send_now(row, entry)
            return {"status": "waking", "chatId": result["chatId"], "messageId": result["messageId"]}
        if row.status == "sleeping":
            await self.wake(row, then=lambda: self._queue_pending(row, entry))
        else:
            await self._queue_pending(row, entry)
        return {"status": "waking", "chatId": chat_id, "messageId": entry["id"]}

    # -- sleep, wake, archive, delete --------------------------------------------------------------

    async def wake(self, row: Workspace, *, refuse: bool = True,
                   then: Callable[[], Awaitable[Any]] | None = None) -> asyncio.Task | None:
        """Start waking a sleeping or archived workspace in the background (no-op if already waking).

        A wake is admitted like a create (`_admit_wake`); at capacity it raises 429 (`refuse`) or starts
        nothing. `then` runs once the wake is admitted (or was not needed) and before the wake starts: what
        must be in place when the workspace comes up (a message queued for delivery) goes there, so that a
        refused wake leaves nothing behind."""
        existing = self._transitions.get(str(row.id))
        admitted = None
        if (existing is None or existing.done()) and row.status in WAKEABLE:
            admitted = await self._admit_wake(row)
            if admitted is False:
                if refuse:
                    raise self._at_capacity()
                return None
        if then is not None:
            await then()
        if admitted:
            return self._start_transition(row, self._wake_task(row))
        existing = self._transitions.get(str(row.id))
        return existing if existing is not None and not existing.done() else None

    async def _wake_task(self, row: Workspace) -> None:
        row = await self._reload(row.id) or row
        try:
            with metrics.TRANSITIONS.labels(kind="wake").time():
                row = await self.manager.wake(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed wake leaves the workspace in error
            await self._fail(row, f"Wake failed: {exc}")
            return
        await self._became_active(row)

    async def ensure_awake(self, row: Workspace, timeout: float | None = None) -> Workspace:
        """The workspace, active: wakes it (or waits for its boot) first; 503 if it does not come up."""
        timeout = timeout if timeout is not None else self.settings.engine_start_timeout_seconds + 30
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            current = await self._reload(row.id)
            if current is None:
                raise NotFound("Workspace not found")
            if current.status == "active":
                return current
            if current.status == "error":
                raise ServiceUnavailable("Workspace is in error state", current.error_message)
            task = await self.wake(current) if current.status in WAKEABLE else self._transitions.get(str(row.id))
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise ServiceUnavailable("Workspace is waking", "retry in a few seconds",
                                         headers={"Retry-After": "5"})
            if task is not None:
                with contextlib.suppress(Exception, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), remaining)
            else:
                await asyncio.sleep(min(0.2, remaining))

    async def sleep(self, principal: Principal, workspace_id: str) -> None:
        """POST /v1/workspaces/{id}/sleep: no-op when asleep; 409 while preparing or in error."""
        row = await self.get_workspace(principal, workspace_id)
        if row.status in WAKEABLE:
            return
        if row.status != "active":
            raise Conflict(f"Cannot sleep a workspace that is {row.status}")
        await self._put_to_sleep(row)

    async def _put_to_sleep(self, row: Workspace, status: str = "sleeping") -> None:
        await self.pumps.release(row.id)
        row = await self.manager.sleep(row)
        async with self.sessions() as session:
            current = await lock_workspace(session, row.id)
            if current is not None:
                current.status = status
                current.status_changed_at = utcnow()
                await usage.close_sessions(session, row.id)
                await session.commit()

    async def archive(self, principal: Principal, workspace_id: str) -> None:
        """POST /v1/workspaces/{id}/archive: paused and filed; it can be woken later."""
        row = await self.get_workspace(principal, workspace_id)
        await self._archive(row)

    async def _archive(self, row: Workspace) -> None:
        if row.status == "archived":
            return
        if row.status in ("preparing", "error"):
            raise Conflict(f"Cannot archive a workspace that is {row.status}")
        if row.status == "active":
            await self._put_to_sleep(row, status="archived")
        else:
            await self._set(row.id, status="archived", status_changed_at=utcnow())

    async def delete(self, principal: Principal, workspace_id: str) -> None:
        await self._delete(await self.get_workspace(principal, workspace_id), notify=True)

    async def _delete(self, row: Workspace, notify: bool) -> None:
        """Stop and remove the sandbox, then the record; `replica.deleted` only on explicit deletion."""
        task = self._transitions.pop(str(row.id), None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.pumps.release(row.id)
        row = await self._reload(row.id) or row
        if row.runtime_state:
            try:
                await self.manager.runtime.destroy(self.manager.runtime.load_state(row.runtime_state))
            except Exception:  # noqa: BLE001 - the record goes regardless; the sandbox may be gone already
                log.exception("workspace %s: removing the sandbox failed", row.id)
        async with self.sessions() as session:
            current = await lock_workspace(session, row.id)
            if current is None:
                return
            await usage.close_sessions(session, current.id)
            if notify:
                self._webhook(session, current, "replica.deleted", {})
            await session.delete(current)
            await session.commit()
        self._delivery_locks.pop(str(row.id), None)

    # -- reads -------------------------------------------------------------------------------------

    async def list(self, principal: Principal, *, page: int, limit: int, user_id: str | None,
                   source: str | None, status: str | None) -> dict[str, Any]:
        query = select(Workspace).where(Workspace.organization_id == principal.organization_id,
                                        Workspace.status != POOLED)
        if user_id:
            try:
                query = query.where(Workspace.user_id == uuid.UUID(user_id))
            except ValueError:
                raise BadRequest("Invalid request", f"user_id: {user_id!r} is not a valid id") from None
        if source:
            query = query.where(Workspace.source == source)
        if status:
            query = query.where(Workspace.status == status)
        order = (func.coalesce(Workspace.last_activity_at, Workspace.created_at).desc() if status == "archived"
                 else Workspace.created_at.desc())
        # The page and the total in one round trip (a window count); a page past the end has no row to carry the
        # total, so only then is it counted apart.
        paged = (query.with_only_columns(*LIST_COLUMNS, func.count().over().label("total"))
                 .order_by(order, Workspace.id).offset((page - 1) * limit).limit(limit))
        async with read_sessions(self.sessions)() as session:
            rows = (await session.execute(paged)).all()
            total = rows[0].total if rows else 0
            if not rows and page > 1:
                total = await session.scalar(select(func.count()).select_from(query.subquery()))
        items = [list_item(row) for row in rows]
        return {"replicas": items, "total": total, "page": page, "limit": limit,
                "total_pages": (total + limit - 1) // limit}

    async def _wake_on_read(self, row: Workspace) -> bool:
        """Reading a sleeping or archived workspace wakes it (spec §2.6); whether a wake was started. At
        capacity the read is answered from the store and the workspace stays asleep."""
        return row.status in WAKEABLE and await self.wake(row, refuse=False) is not None

    async def details(self, principal: Principal, workspace_id: str, include: set[str], *,
                      wake: bool = True) -> dict[str, Any]:
        """GET /v1/replica/{id}: ReplicaDetails from the store (principle 3): the chats and repositories as
        the engine last reported them through the event log, which the pump keeps current. Only
        `include=diffs` asks the running engine, for the full diffs of the working trees as they are now.
        `wake=False`: a sleeping or archived workspace is left asleep."""
        row = await self.get_workspace(principal, workspace_id)
        waking = wake and await self._wake_on_read(row)
        repos = (row.snapshot or {}).get("repos", [])
        chats = (row.snapshot or {}).get("chats", [])
        if row.status == "active" and "diffs" in include:
            with contextlib.suppress(ReplicasError):
                repos = (await self.manager.call_engine(row, "GET", "/repos", params={"includeDiffs": "true"}))["repos"]
        out = {**list_item(row), "coding_agent": active_agent(row),
               "repository_statuses": [repository_status(repo, "diffs" in include) for repo in repos],
               "waking": waking, "chats": [replica_chat(chat) for chat in chats],
               # The contract's WorkspaceConfig, as given on create; `provisioning_error` once setup failed.
               "config": dict(row.config or {})}
        if "environment" in include:
            out["environment"] = await self._environment_info(principal, row)
        return {"replica": out}

    async def _environment_info(self, principal: Principal, row: Workspace) -> dict[str, Any]:
        async with self.sessions() as session:
            try:
                resolved = await provisioning.resolve_workspace_config(session, self.box, principal,
                                                                       str(row.environment_id))
            except ReplicasError:
                resolved = None
        variables = set(resolved.variables) if resolved else set()
        found = await self.agents.all()
        agents = {agent: {"available": agent in found and found[agent].available,
                          "auth_method": "api_key" if variables.intersection(names) else "none"}
                  for agent, names in _AUTH_VARIABLES.items()}
        return {
            "engine_version": ENGINE_VERSION,
            "files_uploaded": sorted(resolved.files) if resolved else [],
            "env_vars_set": sorted(variables),
            "skills_installed": sorted(resolved.skills) if resolved else [],
            "integrations": {"github": False, "gitlab": False, "linear": False, "slack": False, "google": False},
            "coding_agents": agents,
            "hooks": environment_hooks(row, bool(resolved and resolved.warm_hooks)),
            "last_updated_at": iso(row.updated_at),
        }

    async def chats(self, principal: Principal, workspace_id: str, *,
                    wake: bool = True) -> tuple[Workspace, list[dict], bool]:
        """The chats (engine summaries): live when awake, as last reported otherwise (and it wakes, unless not
        `wake`)."""
        row = await self.get_workspace(principal, workspace_id)
        waking = wake and await self._wake_on_read(row)
        if row.status == "active":
            with contextlib.suppress(ReplicasError):
                return row, await self._engine_chats(row), waking
        return row, list((row.snapshot or {}).get("chats", [])), waking

    async def awake_workspace(self, principal: Principal, workspace_id: str) -> Workspace:
        """An operation that needs the engine: the workspace, woken first if need be."""
        row = await self.get_workspace(principal, workspace_id)
        if row.status == "error":
            raise Conflict("Workspace is in error state", row.error_message)
        return await self.ensure_awake(row)

    async def create_chat(self, principal: Principal, workspace_id: str, body: dict[str, Any],
                          refuse: tuple[str, ...] = ()) -> dict[str, Any]:
        row = await self.get_workspace(principal, workspace_id)
        if row.status in refuse:
            raise Conflict(f"Workspace is {row.status}")
        provider = body.get("provider") or row.coding_agent  # the replica's agent, whatever its engine started with
        await self.agents.require(provider)
        row = await self.awake_workspace(principal, workspace_id)
        await self.touch(row)
        return await self.manager.call_engine(row, "POST", "/chats", json={**body, "provider": provider})

    async def engine_call(self, principal: Principal, workspace_id: str, method: str, path: str,
                          **kwargs: Any) -> Any:
        row = await self.awake_workspace(principal, workspace_id)
        return await self.manager.call_engine(row, method, path, **kwargs)

    async def delete_chat(self, principal: Principal, workspace_id: str, chat_id: str) -> None:
        row = await self.awake_workspace(principal, workspace_id)
        await self.manager.call_engine(row, "DELETE", f"/chats/{chat_id}")
        # The engine's chat.deleted event projects this too, when the pump stores it; a client reading right
        # after its DELETE must not see the chat still listed (nor miss it in deletedChats) until then.
        async with self.sessions() as session:
            current = await lock_workspace(session, row.id)
            chats = list((current.snapshot or {}).get("chats", [])) if current is not None else []
            gone = next((chat for chat in chats if chat.get("id") == chat_id), None)
            if gone is not None:
                snapshot = dict(current.snapshot)
                snapshot["chats"] = [chat for chat in chats if chat.get("id") != chat_id]
                snapshot["deleted_chats"] = _deleted_chats(snapshot, gone)
                current.snapshot = snapshot
            await session.commit()

    async def announce_previews(self, row: Workspace, previews: list[dict[str, Any]]) -> None:
        """Hand the workspace's previews to its engine, which journals `preview.changed` (so it reaches the
        event stream in order with everything else). Best effort: a sleeping workspace learns nothing."""
        if row.status != "active":
            return
        try:
            await self.manager.call_engine(row, "POST", "/previews", json={"previews": previews})
        except ReplicasError as exc:
            log.warning("workspace %s: could not announce previews: %s", row.id, exc)

    async def history(self, principal: Principal, workspace_id: str, *, chat_id: str | None, limit: int,
                      offset: int) -> dict[str, Any]:
        """History from the store (no wake): the chat's AgentEvents, paged from the end, with the senders of the
        user messages in the page."""
        row = await self.get_workspace(principal, workspace_id)
        chat = chat_id or row.default_chat_id
        events: list[dict] = []
        deltas: list[dict] = []
        total = 0
        if chat is not None:
            where = (WorkspaceEvent.workspace_id == row.id, WorkspaceEvent.chat_id == chat,
                     WorkspaceEvent.type == "chat.turn.delta")
            # The page (newest first, `offset` from the end) and the total in one round trip (a window count);
            # a page past the start has no row to carry the total, so only then is it counted apart.
            page = (select(WorkspaceEvent.payload, func.count().over()).where(*where)
                    .order_by(WorkspaceEvent.seq.desc()).offset(offset).limit(limit))
            async with read_sessions(self.sessions)() as session:
                rows = (await session.execute(page)).all()
                total = rows[0][1] if rows else 0
                if not rows and offset:
                    total = await session.scalar(select(func.count()).select_from(WorkspaceEvent).where(*where))
            deltas = [payload for payload, _ in reversed(rows)]
            events = [payload.get("event") for payload in deltas if payload.get("event")]
            known = {c["id"] for c in (row.snapshot or {}).get("chats", [])} | {row.default_chat_id}
            if chat_id and total == 0 and chat_id not in known:
                raise NotFound("Chat not found")
            has_more = total - offset - limit > 0
        else:
            has_more = False
        thread_id = next((e["payload"].get("session_id") for e in events
                          if isinstance(e.get("payload"), dict) and e["payload"].get("session_id")), None)
        return {"thread_id": thread_id, "events": events, "total": total, "has_more": has_more,
                "coding_agent": active_agent(row), "waking": None, "codexAspTranscript": None,
                "senders": recorded_senders(deltas)}

    async def hooks(self, principal: Principal, workspace_id: str) -> dict[str, Any]:
        """Hook logs. Warm hooks: the control plane ran them and keeps their log on the row, read from there
        awake or asleep. Start hooks: from the engine when awake (and kept), as last seen otherwise."""
        row = await self.get_workspace(principal, workspace_id)
        snapshot = row.snapshot or {}
        start = (snapshot.get("hook_logs") or {}).get("start_hooks") or {"logs": []}
        if row.status == "active":
            with contextlib.suppress(ReplicasError):
                answer = await self.manager.call_engine(row, "GET", "/hooks")
                start = {"logs": answer.get("start_hooks", {}).get("logs", [])}
                async with self.sessions() as session:
                    current = await lock_workspace(session, row.id)
                    if current is not None:
                        current.snapshot = {**(current.snapshot or {}), "hook_logs": {"start_hooks": start}}
                        await session.commit()
        return {"warm_hooks": {"logs": list(snapshot.get(warm_hooks.LOG_KEY) or [])}, "start_hooks": start}

    async def queue_mutation(self, principal: Principal, workspace_id: str, chat_id: str, method: str,
                             suffix: str = "", **kwargs: Any) -> dict[str, Any]:
        """Clear, remove one from, or reorder a chat's queue; `{success: changed, queue}`."""
        row = await self.awake_workspace(principal, workspace_id)
        before = await self.manager.call_engine(row, "GET", f"/chats/{chat_id}/queue")
        after = await self.manager.call_engine(row, method, f"/chats/{chat_id}/queue{suffix}", **kwargs)
        return {"success": before["queue"] != after["queue"], "queue": after["queue"]}

    async def reorder(self, principal: Principal, workspace_id: str, chat_id: str, message_id: str,
                      position: int) -> dict[str, Any]:
        row = await self.awake_workspace(principal, workspace_id)
        queue = (await self.manager.call_engine(row, "GET", f"/chats/{chat_id}/queue"))["queue"]
        ids = [item["id"] for item in queue]
        if message_id not in ids:
            raise NotFound("Queued message not found")
        ids.remove(message_id)
        ids.insert(max(0, min(position, len(ids))), message_id)
        return await self.queue_mutation(principal, workspace_id, chat_id, "PATCH", "/reorder",
                                         json={"messageIds": ids})

    async def slash_commands(self, principal: Principal, workspace_id: str, chat_id: str) -> dict[str, Any]:
        _, chats, _ = await self.chats(principal, workspace_id)
        chat = next((c for c in chats if c["id"] == chat_id), None)
        if chat is None:
            raise NotFound("Chat not found")
        return {"commands": [c for c in SLASH_COMMANDS if chat["provider"] in c["providers"]]}

    # -- events ------------------------------------------------------------------------------------

    async def stream(self, row: Workspace, after: int | None) -> AsyncIterator[bytes]:
        """The SSE body: a snapshot of the current state (no `id:`), then every stored event with
        seq > `after` (default: from now), live, with `: ping` every `sse_ping_seconds`."""
        metrics.SSE_CLIENTS.inc()
        try:
            snapshot = row.snapshot or {}
            now = iso(utcnow())
            frames = []
            if row.status == "active":
                frames.append(("engine.ready", {"version": ENGINE_VERSION}))
            if snapshot.get("status"):
                frames.append(("engine.status.changed", {"status": snapshot["status"]}))
            frames.append(("repo.status.changed", {"repos": snapshot.get("repos", [])}))
            hooks = snapshot.get("hooks", {"running": False, "completed": row.status == "active"})
            frames.append(("hooks.status", hooks))
            for kind, payload in frames:
                yield sse_frame({"id": f"snapshot-{kind}", "ts": now, "type": kind, "payload": payload})
            ping = self.settings.sse_ping_seconds
            await self._attach(row.id, ping)
            async for frame in self._live(row, after, ping):
                yield frame
        finally:
            metrics.SSE_CLIENTS.dec()

    async def _live(self, row: Workspace, after: int | None, ping: float) -> AsyncIterator[bytes]:
        """The stored and live events, each batch in one write. Every stream of the workspace in this process
        shares one frame per event (Envelope.frame); the hub wakes a quiet stream for its ping and ends every
        stream when the process drains (the client reconnects elsewhere with Last-Event-ID)."""
        start = row.last_event_seq if after is None else after
        async for batch in follow_batches(read_sessions(self.sessions), self.hub, row.id, start, heartbeat=ping):
            if draining.active():
                return
            if batch is None:
                if not await self._attach(row.id, ping):
                    return
                yield b": ping\n\n"
                continue
            yield b"".join(frame_of(event) for event in batch)

    async def pump_lags(self) -> dict[str, int]:
        """For each workspace this process pumps: the engine's last seq minus the stored one (its `/health`)."""

        async def lag(key: str) -> tuple[str, int] | None:
            try:
                row = await self._reload(uuid.UUID(key))
                health = await self.manager.call_engine(row, "GET", "/health")
                return key, max(0, int(health.get("lastSeq", 0)) - int(row.last_event_seq or 0))
            except Exception:  # noqa: BLE001 - unreachable right now: no figure this scrape
                return None

        found = await asyncio.gather(*(lag(key) for key in list(self.pumps.held)))
        return dict(item for item in found if item is not None)

    async def _attach(self, workspace_id: uuid.UUID, ping: float) -> bool:
        """An SSE client is attached: keep the workspace awake for two more ping intervals. False once the
        workspace is gone (deleted): the stream then ends. The streams of one workspace share the write: one in
        the last half ping answers for all of them."""
        key, now = str(workspace_id), asyncio.get_running_loop().time()
        if now - self._attached.get(key, float("-inf")) < ping / 2:
            return True
        async with self.sessions() as session:
            result = await session.execute(update(Workspace).where(Workspace.id == workspace_id)
                                           .values(attached_until=utcnow() + timedelta(seconds=2 * ping + 1))
                                           .execution_options(synchronize_session=False))
            await session.commit()
        if result.rowcount != 1:
            self._attached.pop(key, None)
            return False
        self._attached[key] = now
        return True

    # -- lifecycle ---------------------------------------------------------------------------------

    async def _lifecycle_loop(self) -> None:
        await loops.run_every("lifecycle reaper", self.settings.lifecycle_interval_seconds, self.reap_once,
                              lease=loops.Lease(self.sessions, LIFECYCLE_LEASE, self.owner_id))

    async def reap_once(self) -> list[tuple[str, str]]:
        """One pass of the lifecycle rules; returns the (workspace id, action) pairs taken."""
        now = utcnow()
        s = self.settings
        async with self.sessions() as session:
            rows = list(await session.scalars(select(Workspace).where(
                Workspace.status.in_(("active", "sleeping", "archived")))))
        taken = []
        for row in rows:
            if str(row.id) in self._transitions:
                continue
            idle = (now - aware(row.last_activity_at)).total_seconds()
            # A workspace's own timer (an automation's `workspace_auto_stop_minutes`) replaces the server's.
            stop_after = row.auto_stop_minutes * 60 if row.auto_stop_minutes else None
            sleep_after = stop_after or s.sleep_after_idle_seconds
            delete_after = stop_after or s.delete_after_inactivity_seconds
            since_change = (now - aware(row.status_changed_at)).total_seconds()
            # An SSE client of the replica, or someone at one of its terminals (the engine's last status).
            attached = ((row.attached_until is not None and aware(row.attached_until) > now)
                        or bool(((row.snapshot or {}).get("status") or {}).get("hasActiveSSHSessions")))
            action = None
            if row.status == "active":
                busy = bool(row.pending_messages) or any(c.get("processing")
                                                         for c in (row.snapshot or {}).get("chats", []))
                if busy:
                    continue
                done = int((row.snapshot or {}).get("turns_completed", 0)) > 0
                if row.lifecycle_policy in WHEN_DONE and done and idle >= s.done_grace_seconds:
                    action = WHEN_DONE[row.lifecycle_policy]
                elif row.lifecycle_policy == "delete_after_inactivity" and idle >= delete_after and not attached:
                    action = "delete"
                elif idle >= sleep_after and not attached:
                    action = "sleep"
            elif row.lifecycle_policy == "delete_after_inactivity" and idle >= delete_after:
                action = "delete"
            elif row.status == "sleeping" and since_change >= s.archive_after_sleep_seconds:
                action = "archive"
            if action is None:
                continue
            try:
                if action == "sleep":
                    await self._put_to_sleep(row)
                elif action == "archive":
                    await self._archive(row)
                else:
                    # `replica.deleted` is for deletions the user asked for: DELETE, or `delete_when_done`
                    # (spec §7.3); inactivity cleanup is silent (§4.3).
                    await self._delete(row, notify=row.lifecycle_policy == "delete_when_done")
                taken.append((str(row.id), action))
                log.info("lifecycle: workspace %s %s (policy %s, idle %.0fs)", row.id, action,
                         row.lifecycle_policy, idle)
            except Exception:  # noqa: BLE001 - one workspace must not stop the pass
                log.exception("lifecycle: %s of workspace %s failed", action, row.id)
        return taken



def _chat_provider(row: Workspace, chat_id: str | None) -> str:
    """The agent of the chat a message goes to: the named chat's, as last reported (a chat not reported
    yet is the workspace's agent's), else the default chat's, the workspace's agent."""
    chats = (row.snapshot or {}).get("chats", [])
    chat = next((c for c in chats if c.get("id") == chat_id), None) if chat_id else None
    return (chat or {}).get("provider") or row.coding_agent


def _deleted_chats(snapshot: dict[str, Any], gone: dict[str, Any]) -> list[dict[str, Any]]:
    """The snapshot's deleted chats with `gone` added (the last 50 kept)."""
    return [*snapshot.get("deleted_chats", []), gone][-50:]
