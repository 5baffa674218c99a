"""Base snapshots: warm once, start many (ARCHITECTURE.md, principle 9).

For an environment with an enabled warm pool, the pool filler builds the warmed state once per pool
generation: a workspace disk of the runtime (`base-<hex>`), provisioned as a cold create would be (checkouts,
variables, files, MCP, skills, prompt, start hook) and warmed (its warm hooks run in its sandbox), then sealed
and never started. That is the contract's `snapshotting` phase and `has_base_snapshot`. Every later workspace
of the environment at that generation (a pool refill, and a create that found the pool empty) starts from it
copy-on-write (`WorkspaceSpec.base_home`, runtime/layers.py): no clone, no warm hook, only its engine to start.

    snapshot = await base_snapshots.usable(session, runtime, organization_id, environment_id)  # or None
    snapshot = await base_snapshots.build(manager, config, on_output=...)                     # filler only
    await base_snapshots.collect(manager, building=...)                                      # filler only

Staleness is the pool's `generation`: it goes up when anything a snapshot holds changes (warm_pools.invalidate
at each such write, and `check_heads` when a default branch moves). A snapshot below the generation is no
longer used for new workspaces; the collector destroys its disk once no workspace is layered on it (running
ones keep theirs). A runtime that cannot layer homes (a remote Docker engine, a local runtime without its
sandbox) has no snapshots: `usable` answers None and creates take the cold path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.runtime import Runtime, WorkspaceSpec
from replicas.services import git, pool_generations, provisioning, warm_hooks
from replicas.services.principal import Principal
from replicas.store.models import BaseSnapshot, WarmPoolConfig, Workspace, aware, utcnow

log = logging.getLogger("replicas.pools")
BUILDING, READY, FAILED = "building", "ready", "failed"


class WarmHookFailed(Exception):
    """A warm hook of the snapshot failed: the snapshot is not built (the pool backs off)."""


def home_of(runtime: Runtime, snapshot: BaseSnapshot) -> str:
    return runtime.load_state(snapshot.runtime_state or {}).home


async def usable(session: AsyncSession, runtime: Runtime, organization_id: uuid.UUID,
                 environment_id: uuid.UUID) -> BaseSnapshot | None:
    """The ready snapshot of the environment's enabled pool at its current generation, if this runtime can
    start workspaces from one."""
    config = await session.scalar(select(WarmPoolConfig).where(
        WarmPoolConfig.organization_id == organization_id, WarmPoolConfig.environment_id == environment_id,
        WarmPoolConfig.enabled.is_(True)))
    if config is None or await runtime.base_snapshot_refusal() is not None:
        return None
    return await current(session, config, runtime.name)


async def current(session: AsyncSession, config: WarmPoolConfig, backend: str) -> BaseSnapshot | None:
    """The newest ready snapshot of the pool's generation on the `backend` runtime (a control plane whose
    runtime changed has none yet)."""
    rows = await session.scalars(
        select(BaseSnapshot).where(BaseSnapshot.environment_id == config.environment_id,
                                   BaseSnapshot.organization_id == config.organization_id,
                                   BaseSnapshot.generation == config.generation, BaseSnapshot.status == READY)
        .order_by(BaseSnapshot.created_at.desc()))
    return next((row for row in rows if (row.runtime_state or {}).get("backend") == backend), None)


async def build(manager, config: WarmPoolConfig, *, on_output: Callable[[bytes], None] | None = None,
                on_sealing: Callable[[], object] | None = None) -> BaseSnapshot:
    """Build the snapshot of `config`'s environment at its generation: provision, warm, seal. Raises (the disk
    destroyed, the row `failed`) when it cannot be built or a warm hook fails. `manager` is the
    WorkspaceManager (its runtime, settings, sessions and secrets)."""
    runtime, settings = manager.runtime, manager.settings
    principal = Principal.system(config.organization_id)
    spec = WorkspaceSpec(size="small", ro_binds=manager.ro_binds())
    handle = await runtime.provision(f"base-{uuid.uuid4().hex}", spec)
    async with manager.sessions() as session:
        row = BaseSnapshot(organization_id=config.organization_id, environment_id=config.environment_id,
                           generation=config.generation, status=BUILDING, runtime_state=runtime.get_state(handle))
        session.add(row)
        await session.commit()
    try:
        async with manager.sessions() as session:
            resolved = await provisioning.resolve_workspace_config(session, manager.box, principal,
                                                                   str(config.environment_id))
        result = await provisioning.provision_home(resolved, Path(handle.home), settings.data_dir,
                                                   allow_local_repositories=settings.allow_local_repositories)
        report = await warm_hooks.warm_workspace(runtime, handle, resolved, result, settings, on_output=on_output)
        if report.failed:
            names = ", ".join(entry.get("hookName") or "?" for entry in report.failed)
            raise WarmHookFailed(f"Warm hook failed: {names}")
        if on_sealing is not None:
            outcome = on_sealing()
            if asyncio.iscoroutine(outcome):
                await outcome
        await runtime.seal_base(handle)
        heads = {repo.id: provisioned.commit for repo, provisioned in zip(resolved.repositories, result.repos,
                                                                         strict=False)}
        async with manager.sessions() as session:
            stored = await session.get(BaseSnapshot, row.id)
            stored.status, stored.warm_hook_logs, stored.repo_heads = READY, report.logs, heads
            await session.execute(update(WarmPoolConfig).where(WarmPoolConfig.id == config.id,
                                                               WarmPoolConfig.generation == config.generation)
                                  .values(has_base_snapshot=True).execution_options(synchronize_session=False))
            await session.commit()
            log.info("base snapshot %s ready: environment %s generation %s", row.id, config.environment_id,
                     config.generation)
            return stored
    except BaseException as exc:
        await asyncio.shield(_discard(manager, row.id, handle, str(exc) or type(exc).__name__))
        raise


async def _discard(manager, snapshot_id: uuid.UUID, handle, reason: str) -> None:
    with contextlib.suppress(Exception):
        await manager.runtime.destroy(handle)
    async with manager.sessions() as session:
        stored = await session.get(BaseSnapshot, snapshot_id)
        if stored is not None:
            stored.status, stored.error_message = FAILED, reason[:2000]
            await session.commit()


async def check_heads(manager, config: WarmPoolConfig) -> bool:
    """Fetch the mirrors of the environment's repositories and bump the pool's generation when a default
    branch moved past its current snapshot (True then). A repository that cannot be fetched counts as
    unchanged (the next check tries again)."""
    async with manager.sessions() as session:
        snapshot = await current(session, config, manager.runtime.name)
        if snapshot is None or not snapshot.repo_heads:
            return False
        resolved = await provisioning.resolve_workspace_config(session, manager.box,
                                                               Principal.system(config.organization_id),
                                                               str(config.environment_id))
    for repo in resolved.repositories:
        try:
            mirror = await provisioning.fetch_mirror(manager.settings.data_dir, repo.id, repo.url, repo.credential,
                                                     True, [], repo.name,
                                                     allow_local=manager.settings.allow_local_repositories)
            head = (await git.run_git("rev-parse", f"refs/heads/{repo.default_branch}", cwd=mirror)).strip()
        except (git.GitError, OSError):
            continue
        if snapshot.repo_heads.get(repo.id) not in (None, head):
            async with manager.sessions() as session:
                await pool_generations.invalidate(session, config.organization_id, config.environment_id)
                await session.commit()
            log.info("warm pool %s: %s moved to %s; generation bumped", config.id, repo.name, head[:12])
            return True
    return False


async def collect(manager, building: set[uuid.UUID], abandoned_after: float) -> None:
    """Destroy the disks of snapshots that no new workspace will start from (failed, below their pool's
    generation, or of a disabled or deleted pool) and that no workspace is layered on. A `building` row of an
    environment not in `building` (this process's builds) is abandoned once older than `abandoned_after`
    seconds."""
    now = utcnow()
    async with manager.sessions() as session:
        rows = list(await session.scalars(select(BaseSnapshot)))
        if not rows:
            return
        configs = {c.environment_id: c for c in await session.scalars(
            select(WarmPoolConfig).where(WarmPoolConfig.enabled.is_(True)))}
        states = list(await session.scalars(
            select(Workspace.runtime_state).where(Workspace.runtime_state.is_not(None))))
    in_use = {(state.get("spec") or {}).get("base_home") for state in states if isinstance(state, dict)}
    for row in rows:
        config = configs.get(row.environment_id)
        if row.status == BUILDING:
            if row.environment_id in building or now - aware(row.created_at) < timedelta(seconds=abandoned_after):
                continue
        elif row.status == READY and config is not None and row.generation == config.generation:
            continue
        if (row.runtime_state or {}).get("backend") != manager.runtime.name:
            continue  # another runtime's: a process on that runtime collects it
        try:
            handle = manager.runtime.load_state(row.runtime_state or {})
        except Exception:  # noqa: BLE001 - an invalid handle: only the row can go
            handle = None
        if handle is not None and handle.home in in_use:
            continue
        try:
            if handle is not None:
                await manager.runtime.destroy(handle)
        except Exception:  # noqa: BLE001 - tried again next pass
            log.exception("base snapshot %s: destroying its disk failed", row.id)
            continue
        async with manager.sessions() as session:
            stored = await session.get(BaseSnapshot, row.id)
            if stored is not None:
                await session.delete(stored)
                await session.commit()
