"""An environment's skills: catalog skills it enables, skill registries it lists, and the agent
configuration committed to the repositories it is bound to (repo skills).

Registries and repo skills are discovered live from git (see `skill_discovery`). Discovery failures
never become 5xx: they come back as an `error` string beside whatever could be listed.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidTag
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas import outbound
from replicas.crypto import SecretBox
from replicas.errors import BadRequest, Conflict, NotFound
from replicas.services import audit, git, pool_generations, repository_urls
from replicas.services import skill_discovery as discovery
from replicas.services.environments import parse_uuid, resolve_environment
from replicas.services.principal import Principal
from replicas.services.repositories import bound_repositories
from replicas.store.models import (
    EnvironmentSkill,
    EnvironmentSkillsRegistry,
    Repository,
)

SKILL_CONFLICT = "Skill is already enabled on this environment"
REGISTRY_CONFLICT = "Skill registry is already added to this environment"
URL_MAX_LENGTH = 1024  # the column's size; a resolved local path can outgrow the request's limit
# A slug becomes a folder in each agent's skills directory (provisioning): a plain folder name only.
SLUG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

Discovered = tuple[list[discovery.RepoSkill], str | None]


def skill_snapshot(row: EnvironmentSkill) -> dict:
    return {"environment_id": str(row.environment_id), "name": row.name, "slug": row.slug,
            "source": row.source}


def registry_snapshot(row: EnvironmentSkillsRegistry) -> dict:
    return {"environment_id": str(row.environment_id), "name": row.name, "url": row.url,
            "repository_full_name": row.repository_full_name, "default_branch": row.default_branch}


# --- Catalog skills --------------------------------------------------------------------------------

async def list_skills(session: AsyncSession, principal: Principal, env_ref: str) -> list[EnvironmentSkill]:
    env = await resolve_environment(session, principal, env_ref)
    rows = await session.scalars(
        select(EnvironmentSkill)
        .where(EnvironmentSkill.environment_id == env.id,
               EnvironmentSkill.organization_id == principal.organization_id)
        .order_by(EnvironmentSkill.created_at, EnvironmentSkill.name)
    )
    return list(rows)


def _required(data: dict, field: str) -> str:
    value = (data.get(field) or "").strip()
    if not value:
        raise BadRequest("Invalid request", f"{field}: must not be blank")
    return value


async def enable_skill(session: AsyncSession, principal: Principal, env_ref: str,
                       data: dict) -> EnvironmentSkill:
    """Enable a catalog skill; 409 when its slug or its source is already enabled on the environment."""
    env = await resolve_environment(session, principal, env_ref)
    name, slug, source = (_required(data, field) for field in ("name", "slug", "source"))
    if not SLUG_PATTERN.match(slug):
        raise BadRequest("Invalid request", f"slug: {slug[:64]!r} must match {SLUG_PATTERN.pattern} "
                                            "(it becomes a folder name)")
    existing = await session.scalar(
        select(EnvironmentSkill).where(EnvironmentSkill.environment_id == env.id,
                                       or_(EnvironmentSkill.slug == slug, EnvironmentSkill.source == source))
    )
    if existing is not None:
        clash = f"slug {slug!r}" if existing.slug == slug else f"source {source!r}"
        raise Conflict(SKILL_CONFLICT, f"{clash} is already enabled (skill {existing.id})")
    row = EnvironmentSkill(organization_id=principal.organization_id, environment_id=env.id,
                           name=name, slug=slug, source=source)
    session.add(row)
    await _flush_unique(session, SKILL_CONFLICT)
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_skill.created", "environment_skill", row.id,
                 after=skill_snapshot(row))
    await _commit_unique(session, SKILL_CONFLICT)
    return row


async def disable_skill(session: AsyncSession, principal: Principal, env_ref: str, skill_id: str) -> None:
    env = await resolve_environment(session, principal, env_ref)
    row = await session.scalar(
        select(EnvironmentSkill).where(EnvironmentSkill.id == parse_uuid(skill_id, "Skill"),
                                       EnvironmentSkill.environment_id == env.id,
                                       EnvironmentSkill.organization_id == principal.organization_id)
    )
    if row is None:
        raise NotFound("Skill not found")
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_skill.deleted", "environment_skill", row.id,
                 before=skill_snapshot(row))
    await session.delete(row)
    await session.commit()


async def _flush_unique(session: AsyncSession, message: str) -> None:
    try:
        await session.flush()
    except IntegrityError:  # a concurrent request won the unique index
        await session.rollback()
        raise Conflict(message) from None


async def _commit_unique(session: AsyncSession, message: str) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(message) from None


async def _end_read(session: AsyncSession) -> None:
    """End the read transaction before git work that can take seconds, so that no connection idles in
    a transaction meanwhile. A commit (not a rollback) keeps the loaded rows usable."""
    await session.commit()


# --- Skill registries ------------------------------------------------------------------------------

def registry_mirror_key(registry_id: uuid.UUID) -> str:
    return f"skills-registry-{registry_id}"


def _registry_source(row: EnvironmentSkillsRegistry) -> discovery.Source:
    return discovery.Source(id=str(row.id), full_name=row.repository_full_name, url=row.url,
                            branch=row.default_branch, mirror_key=registry_mirror_key(row.id))


async def discover_registry(data_dir: Path, row: EnvironmentSkillsRegistry) -> Discovered:
    return await discovery.discover(data_dir, _registry_source(row), discovery.classify_registry_path)


async def list_registries(session: AsyncSession, principal: Principal, env_ref: str,
                          data_dir: Path) -> list[tuple[EnvironmentSkillsRegistry, Discovered]]:
    """Each registry of the environment with its skills, refreshed from the remote (concurrently)."""
    env = await resolve_environment(session, principal, env_ref)
    rows = list(await session.scalars(
        select(EnvironmentSkillsRegistry)
        .where(EnvironmentSkillsRegistry.environment_id == env.id,
               EnvironmentSkillsRegistry.organization_id == principal.organization_id)
        .order_by(EnvironmentSkillsRegistry.created_at, EnvironmentSkillsRegistry.name)
    ))
    await _end_read(session)
    found = await asyncio.gather(*(discover_registry(data_dir, row) for row in rows))
    return list(zip(rows, found, strict=True))


def _url_variants(url: str) -> set[str]:
    """`…/repo`, `…/repo/` and `…/repo.git` name one repository, so they count as one registry."""
    bare = url.rstrip("/").removesuffix(".git")
    return {url, bare, bare + "/", bare + ".git"}


async def add_registry(session: AsyncSession, principal: Principal, env_ref: str, url: str | None,
                       data_dir: Path, git_timeout: float, *,
                       allow_local: bool | None = None) -> tuple[EnvironmentSkillsRegistry, Discovered]:
    """Register a git repository of skills after checking that it is reachable, then list its skills.

    Registries are read anonymously (there is no credential column), so a URL carrying credentials
    is refused rather than stored with them."""
    env = await resolve_environment(session, principal, env_ref)
    url = git.normalize_url(url or "").rstrip("/")
    if len(url) > URL_MAX_LENGTH:
        raise BadRequest("Invalid registry URL", f"url: must be at most {URL_MAX_LENGTH} characters")
    if git.display_url(url) != url:
        raise BadRequest("Invalid registry URL",
                         "url: must not contain credentials; skill registries are read anonymously")
    if url.startswith(("http://", "https://")):  # early 400; git's fetches are checked again (outbound.py)
        outbound.check_url(url)
    # The same rules as a repository's URL: never the data dir (other tenants' mirrors), no local paths when
    # local repositories are off, no transport tricks.
    if allow_local is None:
        allow_local = outbound.active_policy().allow_local_repositories
    problem = repository_urls.url_problem(url, allow_local=allow_local, roots=repository_urls.protected_roots(data_dir))
    if problem:
        raise BadRequest("Invalid registry URL", f"url: {problem}")
    duplicate = await session.scalar(
        select(EnvironmentSkillsRegistry.id).where(EnvironmentSkillsRegistry.environment_id == env.id,
                                                   EnvironmentSkillsRegistry.url.in_(_url_variants(url)))
    )
    if duplicate is not None:
        raise Conflict(REGISTRY_CONFLICT, f"{url} is registered as {duplicate}")
    try:
        branch = await git.probe_remote(url, timeout=git_timeout, env=git.git_env(allow_local=allow_local))
    except git.GitError as exc:
        raise BadRequest("Skill registry repository is not reachable", exc.stderr or str(exc)) from None
    row = EnvironmentSkillsRegistry(
        organization_id=principal.organization_id, environment_id=env.id,
        name=discovery.repository_name(url), url=url,
        repository_full_name=discovery.repository_full_name(url), default_branch=branch,
    )
    session.add(row)
    await _flush_unique(session, REGISTRY_CONFLICT)
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_skills_registry.created", "environment_skills_registry",
                 row.id, after=registry_snapshot(row))
    await _commit_unique(session, REGISTRY_CONFLICT)
    return row, await discover_registry(data_dir, row)


async def remove_registry(session: AsyncSession, principal: Principal, env_ref: str, registry_id: str,
                          data_dir: Path) -> None:
    env = await resolve_environment(session, principal, env_ref)
    row = await session.scalar(
        select(EnvironmentSkillsRegistry).where(
            EnvironmentSkillsRegistry.id == parse_uuid(registry_id, "Skill registry"),
            EnvironmentSkillsRegistry.environment_id == env.id,
            EnvironmentSkillsRegistry.organization_id == principal.organization_id,
        )
    )
    if row is None:
        raise NotFound("Skill registry not found")
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_skills_registry.deleted", "environment_skills_registry",
                 row.id, before=registry_snapshot(row))
    await session.delete(row)
    await session.commit()
    # The mirror is a cache keyed by this registry alone; nothing else will read it again.
    mirror = git.mirror_path(data_dir, registry_mirror_key(row.id))
    await asyncio.to_thread(shutil.rmtree, mirror, True)


# --- Repo skills -----------------------------------------------------------------------------------

async def _discover_repository(data_dir: Path, box: SecretBox, repo: Repository) -> Discovered:
    try:
        credential = box.decrypt(repo.credential_encrypted) if repo.credential_encrypted else None
    except (ValueError, InvalidTag):
        return [], (f"Could not read {repo.name}: "
                    "its stored credential cannot be decrypted with this server's key")
    # The repository's own mirror, shared with provisioning: one fetch serves both.
    source = discovery.Source(id=str(repo.id), full_name=repo.name, url=repo.url, branch=repo.default_branch,
                              mirror_key=str(repo.id), credential=credential)
    return await discovery.discover(data_dir, source, discovery.classify_repo_path)


async def list_repo_skills(session: AsyncSession, principal: Principal, env_ref: str, data_dir: Path,
                           box: SecretBox) -> Discovered:
    """Skills, agents, commands, prompts and plugins on the default branch of every bound repository."""
    env = await resolve_environment(session, principal, env_ref)
    repositories = await bound_repositories(session, principal, env)
    await _end_read(session)
    found = await asyncio.gather(*(_discover_repository(data_dir, box, repo) for repo in repositories))
    skills = [skill for repo_skills, _ in found for skill in repo_skills]
    errors = [error for _, error in found if error]
    return skills, "; ".join(errors) or None
