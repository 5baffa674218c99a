"""Workspaces: provision a home from its environment, run the engine in the runtime, talk to it.

    manager = WorkspaceManager(settings, sessions, box)
    workspace = await manager.create(principal, "staging", provider="claude")
    async with manager.engine(workspace) as engine:
        await engine.post(f"/chats/{workspace.default_chat_id}/messages", json={"message": "fix it"})

The control plane owns the record (the `workspaces` row with the runtime's persisted handle); the
engine owns what happens inside. A restarted control plane finds a running workspace again through
`runtime.load_state(row.runtime_state)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas import tracing
from replicas.crypto import SecretBox
from replicas.engine.agents.base import default_model_variable
from replicas.engine.state import START_AFTER_ENV
from replicas.engine_protocol import incompatibility
from replicas.errors import BadGateway, BadRequest, Conflict, NotFound, ServiceUnavailable, TooManyRequests
from replicas.runtime import Runtime, RuntimeStatus, WorkspaceSpec, create_runtime
from replicas.runtime.base import HomeNotProvisioned
from replicas.runtime.local import python_environment_paths
from replicas.services import base_snapshots, credentials, gitlab_push, home_files, provisioning, warm_hooks
from replicas.services.environments import parse_uuid
from replicas.services.principal import Principal
from replicas.settings import Settings
from replicas.store.db import read_sessions
from replicas.store.models import Workspace, utcnow

log = logging.getLogger("replicas.workspaces")
# One TLS context for every engine client: httpx builds a new one per client otherwise (~20 ms of CPU).
_ENGINE_TLS = ssl.create_default_context()
ENGINE_SECRET_HEADER = "X-Replicas-Engine-Secret"
PROVIDERS = ("claude", "codex", "opencode", "cursor")
# A warm pool's workspace while the pool owns it (warming or ready): not a replica yet, so no list, read or
# capacity count sees it; a claim turns it into one.
POOLED = "pooled"
# Written into the home once it is laid out, for an engine started before (`_provision_cold`).
HOME_READY = ".replicas/home-ready"
_ENGINE_REFUSALS = {400: BadRequest, 404: NotFound, 409: Conflict, 429: TooManyRequests}
# Built once: every API call on a workspace starts with this read, and building the statement (and its cache
# key) cost more CPU than running it.
_GET_WORKSPACE = select(Workspace).where(Workspace.id == bindparam("id"),
                                         Workspace.organization_id == bindparam("organization_id"),
                                         Workspace.status != POOLED)


def engine_refusal(response: httpx.Response, method: str, path: str) -> Exception:
    """The error for an engine's refusal (a read response with status >= 400): its 400/404/409/429 with the
    engine's message, anything else 502."""
    refusal = _ENGINE_REFUSALS.get(response.status_code)
    if refusal is None:
        return BadGateway("Workspace engine refused the request",
                          f"{method} {path}: {response.status_code} {response.text[:500]}")
    try:
        message = response.json().get("error") or response.text
    except ValueError:
        message = response.text
    return refusal(message[:1].upper() + message[1:500])


async def lock_workspace(session: AsyncSession, workspace_id: uuid.UUID) -> Workspace | None:
    """The workspace row, for a read-modify-write, locked first: a no-op UPDATE takes the row lock on
    PostgreSQL and the write lock on SQLite *before* anything is read. (A SQLite transaction that reads
    and then writes fails at once with "database is locked" when another connection committed in
    between, whatever the busy timeout; one that starts by writing waits its turn instead.)"""
    await session.execute(update(Workspace).where(Workspace.id == workspace_id)
                          .values(updated_at=Workspace.updated_at).execution_options(synchronize_session=False))
    return await session.get(Workspace, workspace_id, populate_existing=True)


class WorkspaceManager:
    """Creates, starts, stops and reaches workspaces on the configured runtime backend."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], box: SecretBox,
                 runtime: Runtime | None = None):
        self.settings, self.sessions, self.box = settings, sessions, box
        self.runtime = runtime or create_runtime(settings)

    async def get(self, principal: Principal, workspace_id: str) -> Workspace:
        ids = {"id": parse_uuid(workspace_id, "Workspace"), "organization_id": principal.organization_id}
        async with read_sessions(self.sessions)() as session:
            row = await session.scalar(_GET_WORKSPACE, ids)
        if row is None:
            raise NotFound("Workspace not found")
        return row

    async def _save(self, workspace: Workspace, **changes) -> Workspace:
        async with self.sessions() as session:
            row = await lock_workspace(session, workspace.id)
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            await session.commit()
            return row

    async def create(self, principal: Principal, environment_ref: str, *, name: str = "workspace",
                     provider: str = "claude", size: str = "small", on_step=None, **fields) -> Workspace:
        """Provision and start a workspace; returns it `active`, or raises with `error` recorded."""
        row = await self.create_record(principal, environment_ref, name=name, provider=provider, size=size,
                                       **fields)
        return await self.provision(row, principal, on_step=on_step)

    async def create_record(self, principal: Principal, environment_ref: str, *, name: str = "workspace",
                            provider: str = "claude", size: str = "small", status: str = "preparing",
                            **fields) -> Workspace:
        """The `preparing` (or `pooled`) record of a new workspace (the environment must resolve); nothing runs
        yet. `fields` are further `Workspace` columns (source, lifecycle_policy, webhook_url, ...)."""
        async with self.sessions() as session:
            resolved = await provisioning.resolve_workspace_config(session, self.box, principal, environment_ref)
            repositories = [{"id": repo.id, "name": repo.name, "url": repo.url}
                            for repo in resolved.repositories]
            row = Workspace(organization_id=principal.organization_id, user_id=principal.user_id,
                            environment_id=uuid.UUID(resolved.environment_id), name=name, size=size,
                            runtime=self.settings.runtime, status=status, coding_agent=provider,
                            repositories=repositories,
                            engine_secret_encrypted=self.box.encrypt(secrets.token_urlsafe(32)), **fields)
            session.add(row)
            await session.commit()
            return row

    async def provision(self, row: Workspace, principal: Principal, *, on_step=None, on_output=None,
                        pooled: bool = False) -> Workspace:
        """Provision the home of a `preparing` workspace, run its warm hooks (once per workspace: a failing one
        is recorded, not raised) and start its engine: `active`, or `error` (raised).

        `pooled`: a warm pool's workspace. It stays `pooled`; a failing warm hook fails it (raised: the pool
        must not hand it out); its engine leaves the start hooks until the claim (`start_hooks`).

        Where the environment's pool has a base snapshot at its current generation, the home starts from it
        copy-on-write instead, and the warm hooks are not run again (services/base_snapshots.py).
        `on_output` gets the warm hooks' output as it comes (a pool workspace's live stream).

        A home that never reached the workspace's disk (`HomeNotProvisioned`: staged on a control plane that is
        gone) is laid out again, once, rather than the engine started on an empty disk."""
        try:
            async with self.sessions() as session:
                resolved = await provisioning.resolve_workspace_config(session, self.box, principal,
                                                                       str(row.environment_id))
                base = await base_snapshots.usable(session, self.runtime, row.organization_id, row.environment_id)

            def engine_env(row: Workspace, env: dict[str, str]) -> dict[str, str]:
                env["REPLICAS_DEFAULT_PROVIDER"] = row.coding_agent
                if pooled:
                    env["REPLICAS_DEFER_START_HOOKS"] = "1"
                return env

            async def lay_out(row: Workspace) -> tuple[Workspace, dict[str, str] | None]:
                """The row, and the engine's environment, or None when the engine was started already."""
                if base is not None:
                    row, env = await self._layer_on(row, resolved, base, on_step)
                    return row, engine_env(row, env)
                return await self._provision_cold(row, resolved, pooled, on_step, on_output, engine_env)

            row, env = await lay_out(row)
            try:
                row = await (self._await_engine(row) if env is None else self._start_engine(row, env))
            except HomeNotProvisioned as exc:
                log.warning("workspace home lost before the first start, provisioning again workspace_id=%s: %s",
                            row.id, exc.details)
                row, env = await lay_out(row)
                row = await (self._await_engine(row) if env is None else self._start_engine(row, env))
            chats = await self.call_engine(row, "GET", "/chats")
            default_chat = chats["chats"][0]["id"] if chats.get("chats") else None
            return await self._save(row, status=POOLED if pooled else "active", default_chat_id=default_chat,
                                    status_changed_at=utcnow(), last_activity_at=utcnow())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("workspace provisioning failed workspace_id=%s", row.id)
            with contextlib.suppress(Exception):
                await self._save(row, status="error", error_message=str(exc) or type(exc).__name__,
                                 status_changed_at=utcnow())
            raise

    async def _provision_cold(self, row: Workspace, resolved: provisioning.ResolvedEnvironment, pooled: bool,
                              on_step, on_output, engine_env) -> tuple[Workspace, dict[str, str] | None]:
        """Lay out the home from the environment and run its warm hooks (once per workspace): the row and the
        engine's environment (`engine_env` completes it), or None when the engine was started already.

        Where the runtime allows it (`starts_before_home`), the engine is started first and waits for the home
        (`EngineConfig.start_after`): its start-up (Python, imports, the app) overlaps the checkout instead of
        following it. It is stopped again when the home cannot be laid out."""
        spec = WorkspaceSpec(size=row.size, ro_binds=self.ro_binds())
        handle = await self.runtime.provision(str(row.id), spec)
        row = await self._save(row, runtime_state=self.runtime.get_state(handle))
        home = Path(handle.home)
        # What provisioning gives the engine: the environment's variables, and the start hook's path (the
        # engine goes without it when no start hook is written), as a wake gives them again.
        env = engine_env(row, {**await self._base_env(row), **resolved.variables, **provisioning.kept_paths(home)})
        early = self.runtime.starts_before_home(handle)
        if early:
            row = await self._launch_engine(row, {**env, START_AFTER_ENV: HOME_READY})
            handle = self._handle(row)  # as started: the warm hooks run beside the engine, in its limits
        try:
            result = await provisioning.provision_home(
                resolved, home, self.settings.data_dir, on_step=on_step,
                allow_local_repositories=self.settings.allow_local_repositories,
                clone_in_workspace=self.runtime.clones_in_workspace)

            async def clone() -> None:  # the checkouts the workspace makes itself (Kubernetes), before its hooks
                await provisioning.make_planned_checkouts(self.runtime, handle, result)

            if warm_hooks.LOG_KEY in (row.snapshot or {}):
                await clone()
            else:
                report = await warm_hooks.warm_workspace(self.runtime, handle, resolved, result, self.settings,
                                                         on_step=on_step, on_output=on_output, before=clone)
                row = await self._record_warm_logs(row, report.logs)
                if pooled and report.failed:
                    names = ", ".join(entry.get("hookName") or "?" for entry in report.failed)
                    raise BadRequest("Warm hook failed", f"failed: {names}")
            if early:
                await self.runtime.home_ready(handle)
        except BaseException:
            if early:
                with contextlib.suppress(Exception):
                    await self.runtime.stop(handle)
            raise
        if early:
            await asyncio.to_thread(home_files.write_text, home, HOME_READY, "")
            return row, None
        return row, env

    async def _layer_on(self, row: Workspace, resolved: provisioning.ResolvedEnvironment, base, on_step
                        ) -> tuple[Workspace, dict[str, str]]:
        """Start the home copy-on-write from the environment's base snapshot (services/base_snapshots.py):
        its checkouts and warm hooks are done, and their log is the workspace's."""
        started = time.perf_counter()
        spec = WorkspaceSpec(size=row.size, ro_binds=self.ro_binds(),
                             base_home=base_snapshots.home_of(self.runtime, base))
        handle = await self.runtime.provision(str(row.id), spec)
        row = await self._save(row, runtime_state=self.runtime.get_state(handle))
        row = await self._record_warm_logs(row, base.warm_hook_logs or [])
        if on_step is not None:
            outcome = on_step("base_snapshot", {"snapshot_id": str(base.id), "generation": base.generation,
                                                "seconds": round(time.perf_counter() - started, 3), "warnings": []})
            if asyncio.iscoroutine(outcome):
                await outcome
        env = {**await self._base_env(row), **resolved.variables, **provisioning.kept_paths(Path(handle.home))}
        return row, env

    def ro_binds(self) -> list[str]:
        """What every workspace sandbox sees read-only: the agent tools and the Python environment."""
        return [str(self.settings.resolved_tools_dir), *python_environment_paths()]

    async def _record_warm_logs(self, row: Workspace, logs: list) -> Workspace:
        async with self.sessions() as session:
            current = await lock_workspace(session, row.id)
            if current is None:
                return row
            current.snapshot = {**(current.snapshot or {}), warm_hooks.LOG_KEY: logs}
            await session.commit()
            return current

    async def start_hooks(self, workspace: Workspace) -> None:
        """Run a claimed pool workspace's start hooks now (its engine deferred them at boot)."""
        await self.call_engine(workspace, "POST", "/hooks/start")

    async def _base_env(self, workspace: Workspace) -> dict[str, str]:
        """Stored provider credentials, a GitLab thread's push access (gitlab_push.py) and the server's default
        models (all under the environment's variables, which win) and what the engine and the agent need to
        know about their workspace and control plane."""
        env = await self._credentials(workspace.organization_id, workspace.user_id)
        async with self.sessions() as session:
            env.update(await gitlab_push.push_env(session, self.box, workspace))
        env.update(self.default_models())
        env.update({
            "REPLICAS_TOOLS_DIR": str(self.settings.resolved_tools_dir),
            "WORKSPACE_ID": str(workspace.id),
            "REPLICAS_API_URL": self.settings.public_url or f"http://{self.settings.host}:{self.settings.port}",
        })
        return env

    def default_models(self) -> dict[str, str]:
        """REPLICAS_DEFAULT_MODEL_<AGENT> for each agent this server's settings name a model for."""
        return {default_model_variable(agent): model for agent in PROVIDERS
                if (model := getattr(self.settings, f"default_model_{agent}", None))}

    async def _credentials(self, organization_id: uuid.UUID, user_id: uuid.UUID | None) -> dict[str, str]:
        async with self.sessions() as session:
            values = await credentials.agent_credentials(session, self.box, organization_id, user_id)
            await session.commit()
        return values

    def _handle(self, workspace: Workspace):
        if not workspace.runtime_state:
            raise ServiceUnavailable("Workspace is not provisioned yet")
        return self.runtime.load_state(workspace.runtime_state)

    async def _start_engine(self, workspace: Workspace, env: dict[str, str]) -> Workspace:
        """Start the engine and wait until it answers (`_launch_engine`, then `_await_engine`)."""
        return await self._await_engine(await self._launch_engine(workspace, env))

    async def _launch_engine(self, workspace: Workspace, env: dict[str, str]) -> Workspace:
        """Start the engine and persist the runtime's handle (it now names the process tree)."""
        handle = self._handle(workspace)
        env = {**env, "REPLICAS_ENGINE_SECRET": self.box.decrypt(workspace.engine_secret_encrypted)}
        await self.runtime.start(handle, [sys.executable, "-m", "replicas.engine.main"], env)
        return await self._save(workspace, runtime_state=self.runtime.get_state(handle))

    async def _await_engine(self, workspace: Workspace) -> Workspace:
        """Wait until the started engine answers. An engine whose protocol this control plane does not speak (an
        image of another release) is stopped and refused (engine_protocol.py), naming the image."""
        handle = self._handle(workspace)
        state = workspace.runtime_state or {}
        deadline = time.monotonic() + self.settings.engine_start_timeout_seconds
        # Short polls first, growing to 25 ms: an engine answers 0.15-0.3 s after its start, and a fixed
        # 50 ms poll lost 25 ms of that on average; a failed poll costs under 1 ms here.
        delay = 0.005
        while True:
            try:
                health = await self.call_engine(workspace, "GET", "/health")
                break
            except (BadGateway, ServiceUnavailable):
                if time.monotonic() > deadline:
                    waited = self.settings.engine_start_timeout_seconds
                    raise ServiceUnavailable("Workspace engine did not start",
                                             f"no answer within {waited:.0f}s; engine log: "
                                             f"{await self.runtime.read_log(handle)}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.025)
        if reason := incompatibility(health, image=state.get("image")):
            log.warning("workspace engine refused workspace_id=%s: %s", workspace.id, reason)
            with contextlib.suppress(Exception):
                await self.runtime.stop(handle)
            raise ServiceUnavailable("Workspace engine is incompatible", reason)
        return workspace

    @contextlib.asynccontextmanager
    async def engine(self, workspace: Workspace, timeout: float | None = 30.0) -> AsyncIterator[httpx.AsyncClient]:
        """An HTTP client for the workspace's engine (unix socket or TCP), with its secret set."""
        endpoint = self.runtime.engine_endpoint(self._handle(workspace))
        transport = httpx.AsyncHTTPTransport(uds=endpoint.uds, verify=_ENGINE_TLS)
        headers = {ENGINE_SECRET_HEADER: self.box.decrypt(workspace.engine_secret_encrypted)}
        async with httpx.AsyncClient(transport=transport, base_url=endpoint.base_url, headers=headers,
                                     timeout=timeout, trust_env=False) as client:
            yield client

    async def call_engine(self, workspace: Workspace, method: str, path: str, **kwargs) -> dict:
        """One request to the engine. Unreachable is 503; the engine's 400/404/409/429 pass through (bad
        input, an unknown chat or message, a conflict, a limit); any other refusal is 502 (as the contract has
        it)."""
        try:
            with tracing.span(f"engine {method}", **{"http.request.method": method, "url.path": path,
                                                     "replicas.workspace_id": str(workspace.id)}):
                async with self.engine(workspace) as client:
                    response = await client.request(method, path, **kwargs)
        except (httpx.TransportError, FileNotFoundError, ConnectionError) as exc:
            raise ServiceUnavailable("Workspace engine is unreachable", str(exc) or type(exc).__name__) from None
        if response.status_code >= 400:
            raise engine_refusal(response, method, path)
        return response.json() if response.content else {}

    async def send_message(self, workspace: Workspace, message: str, *, chat_id: str | None = None,
                           **options) -> dict:
        chat = chat_id or workspace.default_chat_id
        body = {"message": message, **{k: v for k, v in options.items() if v is not None}}
        await self._save(workspace, last_activity_at=utcnow())
        return await self.call_engine(workspace, "POST", f"/chats/{chat}/messages", json=body)

    async def repos(self, workspace: Workspace, include_diffs: bool = True) -> list[dict]:
        params = {"includeDiffs": "true"} if include_diffs else {}
        return (await self.call_engine(workspace, "GET", "/repos", params=params))["repos"]

    async def poll(self, workspace: Workspace) -> RuntimeStatus:
        return await self.runtime.poll(self._handle(workspace))

    async def sleep(self, workspace: Workspace) -> Workspace:
        """Stop every process of the workspace; its disk (checkouts, journal, agent sessions) stays."""
        handle = self._handle(workspace)
        await self.runtime.stop(handle)
        return await self._save(workspace, status="sleeping", runtime_state=self.runtime.get_state(handle),
                                status_changed_at=utcnow())

    async def wake(self, workspace: Workspace) -> Workspace:
        """Start the engine again on the kept disk; it resumes its chats and journal sequence."""
        async with self.sessions() as session:
            principal = Principal.system(workspace.organization_id)
            resolved = await provisioning.resolve_workspace_config(
                session, self.box, principal, str(workspace.environment_id))
        env = {**await self._base_env(workspace), **resolved.variables,
               "REPLICAS_DEFAULT_PROVIDER": workspace.coding_agent}
        # Provisioning wrote these into the kept home (where it had them to write); the engine finds them
        # again on wake and goes without the ones that are not there.
        env.update(provisioning.kept_paths(Path(self._handle(workspace).home)))
        workspace = await self._start_engine(workspace, env)
        return await self._save(workspace, status="active", last_activity_at=utcnow(), status_changed_at=utcnow())

    async def discard_runtime(self, workspace: Workspace) -> None:
        """Remove what a boot cut short left of the workspace in its runtime (home, container, volume, pod),
        keeping its row, before it is laid out again; a failure is logged (the new boot then says what is
        in its way)."""
        if not workspace.runtime_state:
            return
        try:
            await self.runtime.destroy(self._handle(workspace))
        except Exception:  # noqa: BLE001 - see the docstring
            log.warning("workspace %s: removing what its cut-short boot left failed", workspace.id, exc_info=True)

    async def destroy(self, workspace: Workspace) -> None:
        if workspace.runtime_state:
            await self.runtime.destroy(self._handle(workspace))
        async with self.sessions() as session:
            row = await lock_workspace(session, workspace.id)
            if row is not None:
                await session.delete(row)
                await session.commit()
