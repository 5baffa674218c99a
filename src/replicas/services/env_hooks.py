"""Environment warm and start hooks: versioned scripts, test runs, and repository-level hooks.

Each save adds a version (monotonic per environment and kind) and makes it the only active one.
Saving either kind invalidates the environment's warm pool (its `generation` is bumped, so older ready
workspaces and its base snapshot become stale): the warm hook's work and the start hook's script are both
in a base snapshot.
Empty content clears the active start hook. Test runs go through `hook_runner`, which runs the script in a
throwaway workspace of the environment on the configured runtime, and persist nothing, except the
save-and-test flows (spec §10 #7): the synchronous one always persists (contract), the
streaming one in `save_test` mode persists only when the test succeeds (seed).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import SecretBox
from replicas.errors import BadRequest, Conflict, ReplicasError
from replicas.repo_config import HookSpec, RepoConfigError
from replicas.runtime import Runtime
from replicas.services import audit, git, pool_generations, provisioning, warm_pools
from replicas.services.environments import resolve_environment
from replicas.services.hook_runner import HookResult, SandboxHookRun
from replicas.services.hook_versions import START, WARM, active_hook
from replicas.services.principal import Principal
from replicas.services.repo_config_reader import read_repo_config
from replicas.services.repositories import bound_repositories
from replicas.settings import Settings
from replicas.store.models import Environment, EnvironmentHook, Repository

log = logging.getLogger("replicas.hooks")

MAX_CONTENT_BYTES = 256 * 1024
_SAVE_ATTEMPTS = 3


def check_content(content: str, *, allow_blank: bool) -> None:
    """Scripts are at most 256 KiB (UTF-8) and, unless clearing is allowed, not blank."""
    size = len(content.encode())
    if size > MAX_CONTENT_BYTES:
        raise BadRequest("Hook script too large",
                         f"content: at most {MAX_CONTENT_BYTES:,} bytes (256 KiB) UTF-8 encoded; "
                         f"got {size:,}")
    if not allow_blank and not content.strip():
        raise BadRequest("Invalid request", "content: must not be empty")


def snapshot(hook: EnvironmentHook) -> dict:
    """The audited view of a hook version. Scripts are configuration, not secrets, so content is kept."""
    return {"environment_id": str(hook.environment_id), "kind": hook.kind, "version": hook.version,
            "content": hook.content}


async def _release(session: AsyncSession) -> None:
    """End the read transaction so that no database connection is held while a script or git runs."""
    await session.close()


async def get_active_hook(session: AsyncSession, principal: Principal, env_ref: str,
                          kind: str) -> tuple[Environment, EnvironmentHook | None]:
    env = await resolve_environment(session, principal, env_ref)
    return env, await active_hook(session, principal, env, kind)


async def warm_hook_state(session: AsyncSession, principal: Principal, env_ref: str):
    """The active warm hook, the pool config and its counts: `(hook | None, config | None, counts)`."""
    env, hook = await get_active_hook(session, principal, env_ref, WARM)
    config = await warm_pools.get_config(session, principal, env)
    counts = await warm_pools.pool_counts(session, config) if config is not None else {}
    return hook, config, counts


async def _save_version(session: AsyncSession, principal: Principal, env: Environment, kind: str,
                        content: str) -> EnvironmentHook | None:
    # Saves to one environment take turns: under READ COMMITTED a concurrent save's new row is not
    # seen by our deactivating UPDATE, and two versions would stay active. (SQLite has one writer at
    # a time and does not render FOR UPDATE.)
    await session.execute(select(Environment.id).where(Environment.id == env.id).with_for_update())
    previous = await active_hook(session, principal, env, kind)
    before = snapshot(previous) if previous is not None else None
    clearing = kind == START and not content.strip()
    if clearing and previous is None:
        return None
    await session.execute(
        update(EnvironmentHook)
        .where(EnvironmentHook.organization_id == principal.organization_id,
               EnvironmentHook.environment_id == env.id, EnvironmentHook.kind == kind,
               EnvironmentHook.is_active.is_(True))
        .values(is_active=False)
    )
    if clearing:
        await pool_generations.invalidate_environment(session, env)  # the start hook is in a base snapshot
        audit.record(session, principal, "environment_hook.cleared", "environment_hook", previous.id,
                     before=before)
        return None
    latest = await session.scalar(
        select(func.max(EnvironmentHook.version))
        .where(EnvironmentHook.organization_id == principal.organization_id,
               EnvironmentHook.environment_id == env.id, EnvironmentHook.kind == kind)
    )
    hook = EnvironmentHook(organization_id=principal.organization_id, environment_id=env.id, kind=kind,
                           version=(latest or 0) + 1, content=content, is_active=True)
    session.add(hook)
    await session.flush()
    after = snapshot(hook)
    generation = await warm_pools.bump_generation(session, principal, env)  # both kinds are in a base snapshot
    if kind == WARM:
        after["warm_pool_generation"] = generation
    audit.record(session, principal, "environment_hook.saved", "environment_hook", hook.id,
                 before=before, after=after)
    return hook


async def save_hook(session: AsyncSession, principal: Principal, env_ref: str, kind: str,
                    content: str) -> EnvironmentHook | None:
    """Save `content` as the new active version; for a start hook, blank content clears it (None)."""
    check_content(content, allow_blank=kind == START)
    for _ in range(_SAVE_ATTEMPTS):
        env = await resolve_environment(session, principal, env_ref)
        try:
            hook = await _save_version(session, principal, env, kind, content)
            await session.commit()
            return hook
        except IntegrityError:
            # A safety net for the version number's unique index: recount and retry.
            await session.rollback()
    raise Conflict("The hook was saved concurrently", "retry the request")


@dataclass(frozen=True)
class HookSandbox:
    """What a test run needs to provision its throwaway workspace: the runtime, the settings, the key box."""

    runtime: Runtime
    settings: Settings
    box: SecretBox


async def _prepare_run(session: AsyncSession, principal: Principal, sandbox: HookSandbox, env_ref: str,
                       content: str, kind: str) -> SandboxHookRun:
    """Resolve the environment as a workspace of it would see it (decrypted), then let go of the session."""
    resolved = await provisioning.resolve_workspace_config(session, sandbox.box, principal, env_ref)
    await _release(session)
    return SandboxHookRun(sandbox.runtime, resolved, content, settings=sandbox.settings, label=f"{kind} hook")


async def test_hook(session: AsyncSession, principal: Principal, sandbox: HookSandbox, env_ref: str, kind: str,
                    content: str) -> HookResult:
    """Run `content` in a throwaway workspace of the environment; persist nothing."""
    check_content(content, allow_blank=True)
    run = await _prepare_run(session, principal, sandbox, env_ref, content, kind)
    return await run.wait()


async def save_and_test_hook(session: AsyncSession, principal: Principal, sandbox: HookSandbox, env_ref: str,
                             kind: str, content: str) -> tuple[EnvironmentHook, HookResult]:
    """Save (always, per the contract) and then run `content`; the caller may roll back on failure."""
    hook = await save_hook(session, principal, env_ref, kind, content)
    assert hook is not None
    run = await _prepare_run(session, principal, sandbox, env_ref, content, kind)
    return hook, await run.wait()


# --- streaming test runs --------------------------------------------------------------------------

@dataclass(frozen=True)
class HookTestEvent:
    """One event of a streamed test run: `progress` (message), `output` (a chunk), `complete` (the
    result, and the saved hook when the run saved one) or `error` (message)."""

    type: str
    message: str | None = None
    output: str | None = None
    result: HookResult | None = None
    hook: EnvironmentHook | None = None


async def prepare_stream(session: AsyncSession, principal: Principal, sandbox: HookSandbox, env_ref: str,
                         kind: str, content: str, *, persist: bool) -> tuple[uuid.UUID, SandboxHookRun]:
    """Check everything that can fail before a stream starts, so that it fails as a plain HTTP error;
    return the environment's id and the run for `stream_test`."""
    check_content(content, allow_blank=not persist)
    env = await resolve_environment(session, principal, env_ref)
    env_id = env.id
    await sandbox.runtime.check_isolation()
    return env_id, await _prepare_run(session, principal, sandbox, str(env_id), content, kind)


async def stream_test(sessions: Callable[[], AsyncSession], principal: Principal, env_id: uuid.UUID,
                      run: SandboxHookRun, kind: str, content: str, *,
                      persist: bool) -> AsyncIterator[HookTestEvent]:
    """Run `content`, streaming its output; with `persist`, save it as the active hook if it succeeds."""
    label = f"{kind} hook"
    try:
        async for event_type, text in run:
            yield (HookTestEvent("output", output=text) if event_type == "output"
                   else HookTestEvent("progress", message=text))
    except ReplicasError as exc:
        log.warning("hook test could not run kind=%s error=%s", kind, exc.error)
        message = exc.error if exc.details is None else f"{exc.error}: {exc.details}"
        yield HookTestEvent("error", message=f"The {label} could not be run: {message}")
        return
    except OSError as exc:
        log.warning("hook test could not run kind=%s error=%s", kind, exc)
        yield HookTestEvent("error", message=f"The {label} could not be run: {exc}")
        return
    result = run.result
    assert result is not None
    outcome = ("timed out" if result.timed_out else
               "succeeded" if result.succeeded else f"failed with exit code {result.exit_code}")
    yield HookTestEvent("progress", message=f"The {label} {outcome}")
    hook = None
    if persist and result.succeeded:
        try:
            async with sessions() as session:
                hook = await save_hook(session, principal, str(env_id), kind, content)
        except ReplicasError as exc:
            message = exc.error if exc.details is None else f"{exc.error}: {exc.details}"
            yield HookTestEvent("error", message=message)
            return
        except Exception:  # noqa: BLE001 - the stream has started: report, never drop the connection
            log.exception("saving a tested hook failed kind=%s environment_id=%s", kind, env_id)
            yield HookTestEvent("error", message="Internal server error while saving the hook")
            return
        yield HookTestEvent("progress", message=f"Saved the {label} as version {hook.version}")
    elif persist:
        yield HookTestEvent("progress", message=f"The {label} was not saved because the test did not succeed")
    yield HookTestEvent("complete", result=result, hook=hook)


# --- repository hooks (replicas.json / replicas.yaml) ---------------------------------------------

@dataclass(frozen=True)
class RepositoryHooks:
    """The hooks one bound repository's configuration file defines, or why they could not be read."""

    repository_id: uuid.UUID
    repository_name: str
    config_file: str | None = None
    warm_hook: HookSpec | None = None
    start_hook: HookSpec | None = None
    error: str | None = None


async def _read_repository_hooks(repo: Repository, box: SecretBox, settings: Settings) -> RepositoryHooks:
    entry = {"repository_id": repo.id, "repository_name": repo.name}
    safe_url = git.display_url(repo.url)

    def failure(message: str) -> RepositoryHooks:
        # git's messages may echo the URL; never echo a password that was written into it.
        return RepositoryHooks(**entry, error=message.replace(repo.url, safe_url))

    try:
        credential = box.decrypt(repo.credential_encrypted) if repo.credential_encrypted else None
    except (ValueError, InvalidTag):
        return failure("The repository's stored credential could not be decrypted")
    try:
        mirror = await git.ensure_mirror(settings.data_dir, str(repo.id), repo.url, credential)
    except git.GitError as exc:
        return failure(f"Could not fetch {safe_url}: {exc.stderr or exc}")
    try:
        filename, config = await read_repo_config(mirror, f"refs/heads/{repo.default_branch}")
    except git.GitError as exc:
        return failure(f"Could not read the default branch {repo.default_branch!r}: {exc.stderr or exc}")
    except RepoConfigError as exc:
        return RepositoryHooks(**entry, config_file=exc.filename, error=str(exc))
    if config is None:
        return RepositoryHooks(**entry)
    return RepositoryHooks(**entry, config_file=filename, warm_hook=config.warm_hook,
                           start_hook=config.start_hook)


async def repository_hooks(session: AsyncSession, principal: Principal, box: SecretBox, settings: Settings,
                           env_ref: str) -> list[RepositoryHooks]:
    """The hooks in `replicas.json` / `replicas.yaml` / `replicas.yml` on each bound repository's
    default branch. A repository that cannot be fetched or parsed reports `error`, never a 5xx."""
    env = await resolve_environment(session, principal, env_ref)
    repos = await bound_repositories(session, principal, env)
    await _release(session)
    return list(await asyncio.gather(*(_read_repository_hooks(repo, box, settings) for repo in repos)))
