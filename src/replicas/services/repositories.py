"""Repositories and repository sets: registration (probing the remote with git), listing, deletion.

A repository's `url` is stored without any user:password part; a credential (a token, or
`user:token`) lives only in `credential_encrypted` and reaches git through its environment
(`git.git_env`), never through a URL, a log line or an audit snapshot.

A URL must pass `repository_urls` (nothing of the server's own data, however spelt; no local
repositories when REPLICAS_ALLOW_LOCAL_REPOSITORIES is false; none of git's transport tricks) before
git is ever pointed at it. A repository's name becomes a checkout folder, so it may not hold `.` or
`..` segments or control characters.
"""

from __future__ import annotations

import uuid
from urllib.parse import unquote, urlparse

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import SecretBox
from replicas.errors import BadRequest, Conflict, NotFound
from replicas.services import audit, git, pool_generations, repository_urls
from replicas.services.environments import parse_uuid
from replicas.services.principal import Principal
from replicas.settings import Settings
from replicas.store.models import Environment, Repository, RepositorySet, RepositorySetMember

DUPLICATE_REPOSITORY = "A repository with this name already exists"
DUPLICATE_SET = "A repository set with this name already exists"
_BAD_BRANCH_CHARS = set(" ~^:?*[\\") | {chr(c) for c in range(32)} | {chr(127)}


def repository_snapshot(repo: Repository) -> dict:
    """The audited view of a repository: whether it has a credential, never the credential."""
    return {
        "name": repo.name,
        "url": git.display_url(repo.url),
        "default_branch": repo.default_branch,
        "has_credential": repo.credential_encrypted is not None,
    }


def repository_set_snapshot(repo_set: RepositorySet, repository_ids: list[uuid.UUID]) -> dict:
    return {
        "name": repo_set.name,
        "description": repo_set.description,
        "repository_ids": [str(r) for r in repository_ids],
    }


def _clean_name(name: str | None, what: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 255:
        raise BadRequest("Invalid request", f"name: the {what} name must be 1 to 255 characters")
    return name


def _check_repository_name(name: str) -> str:
    """`owner/repo` style names only: each `/` segment becomes part of a path in some checkout."""
    if any(ord(ch) < 32 or ch in "\x7f\\" for ch in name) or any(
            segment in ("", ".", "..") for segment in name.split("/")):
        raise BadRequest("Invalid request",
                         f"name: {name!r} must be `owner/repo` style: no empty, '.' or '..' segments, "
                         "backslashes or control characters")
    return name


def check_url(url: str, settings: Settings) -> None:
    """Refuse, with a 400 naming the rule, a URL git may not be pointed at for a tenant."""
    roots = repository_urls.protected_roots(
        settings.data_dir, repository_urls.sqlite_files(settings.resolved_database_url))
    problem = repository_urls.url_problem(url, allow_local=settings.allow_local_repositories, roots=roots)
    if problem:
        raise BadRequest("Invalid repository URL", f"url: {problem}")


def _split_userinfo(url: str, credential: str | None) -> tuple[str, str | None]:
    """Move a `https://user:token@host/...` secret out of the URL and into the credential."""
    parsed = urlparse(url)
    if parsed.password is None:
        # A bare username carries no secret; display_url drops it so git cannot prompt for a password.
        return git.display_url(url), credential
    if credential:
        raise BadRequest("Invalid request",
                         "credential: given both in the URL and as `credential`; give it once")
    return git.display_url(url), f"{unquote(parsed.username or '')}:{unquote(parsed.password)}"


def _clean_credential(credential: str | None, url: str) -> str | None:
    if credential is None:
        return None
    credential = credential.strip()
    if not credential or any(ch in credential for ch in "\r\n"):
        raise BadRequest("Invalid request", "credential: must be a token or user:token on one line")
    if urlparse(url).scheme == "http":
        raise BadRequest("Invalid request", "credential: refusing to send a credential over plain http")
    return credential


def _check_branch_name(branch: str) -> str:
    branch = branch.strip()
    if (not branch or len(branch) > 255 or branch.startswith(("-", "/")) or branch.endswith((".lock", "/"))
            or ".." in branch or "@{" in branch or any(ch in _BAD_BRANCH_CHARS for ch in branch)):
        raise BadRequest("Invalid request", f"default_branch: {branch!r} is not a valid branch name")
    return branch


async def _probe(url: str, credential: str | None, default_branch: str | None, timeout: float,
                 allow_local: bool) -> str:
    """Return the branch to record: the given one (which must exist) or the remote's default."""
    env = git.git_env(credential, url, allow_local=allow_local)
    try:
        if default_branch is None:
            return await git.probe_remote(url, credential, timeout=timeout, env=env)
        # One ls-remote both proves the remote reachable and lists the branch if it exists.
        heads = await git.run_git("ls-remote", "--heads", "--", url, f"refs/heads/{default_branch}",
                                  env=env, timeout=timeout)
    except git.GitError as exc:
        raise BadRequest("Repository is not reachable", exc.stderr or str(exc)) from None
    if not any(line.split("\t")[-1] == f"refs/heads/{default_branch}" for line in heads.splitlines()):
        raise BadRequest("Default branch not found",
                         f"default_branch: the remote has no branch {default_branch!r}")
    return default_branch


async def list_repositories(session: AsyncSession, principal: Principal) -> list[Repository]:
    rows = await session.scalars(
        select(Repository).where(Repository.organization_id == principal.organization_id)
        .order_by(Repository.name)
    )
    return list(rows)


async def get_repository_by_name(session: AsyncSession, principal: Principal, name: str) -> Repository:
    repo = await session.scalar(
        select(Repository).where(Repository.organization_id == principal.organization_id,
                                 Repository.name == name.strip())
    )
    if repo is None:
        raise NotFound("Repository not found", f"no repository named {name!r}")
    return repo


async def register_repository(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    *,
    settings: Settings,
    name: str,
    url: str,
    default_branch: str | None = None,
    credential: str | None = None,
    timeout: float | None = None,
) -> Repository:
    """Register a git repository after checking with `git ls-remote` that it is reachable.

    `url` is an absolute local path, `file://` or `https://` URL, allowed by `check_url` under
    `settings`. The recorded default branch is `default_branch` when given (it must exist on the
    remote), else the remote's HEAD. A bad, refused or unreachable URL is a 400 (git's reason for
    the last); nothing is stored.
    """
    name = _check_repository_name(_clean_name(name, "repository"))
    raw_url = (url or "").strip()
    if raw_url:  # the path as given, before normalising resolves it: both spellings are checked
        check_url(raw_url, settings)
    url, credential = _split_userinfo(git.normalize_url(url), credential)
    check_url(url, settings)
    credential = _clean_credential(credential, url)
    if default_branch is not None:
        default_branch = _check_branch_name(default_branch)
    if await session.scalar(select(Repository.id).where(
            Repository.organization_id == principal.organization_id, Repository.name == name)):
        raise Conflict(DUPLICATE_REPOSITORY, f"name: {name!r} is taken in this organization")
    branch = await _probe(url, credential, default_branch,
                          settings.git_timeout_seconds if timeout is None else timeout,
                          settings.allow_local_repositories)
    repo = Repository(
        organization_id=principal.organization_id, name=name, url=url, default_branch=branch,
        credential_encrypted=box.encrypt(credential) if credential else None,
    )
    session.add(repo)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent registration won the unique index
        await session.rollback()
        raise Conflict(DUPLICATE_REPOSITORY, f"name: {name!r} is taken in this organization") from None
    audit.record(session, principal, "repository.created", "repository", repo.id,
                 after=repository_snapshot(repo))
    await session.commit()
    return repo


async def _resolve_repository(session: AsyncSession, principal: Principal,
                              ref: str | uuid.UUID) -> Repository:
    repo_id = ref if isinstance(ref, uuid.UUID) else parse_uuid(ref, "Repository")
    repo = await session.scalar(
        select(Repository).where(Repository.id == repo_id,
                                 Repository.organization_id == principal.organization_id)
    )
    if repo is None:
        raise NotFound("Repository not found")
    return repo


async def _bound_environments(session: AsyncSession, principal: Principal, column, value) -> str | None:
    """Describe the environments bound to a repository or set, or None when there are none.

    Other users' personal environments are counted, not named: their names are not the caller's to see."""
    rows = (await session.execute(
        select(Environment.name, Environment.user_id).where(
            Environment.organization_id == principal.organization_id, column == value)
        .order_by(Environment.name)
    )).all()
    if not rows:
        return None
    names = [name for name, owner in rows if owner is None or owner == principal.user_id]
    hidden = len(rows) - len(names)
    if hidden:
        names.append(f"{hidden} personal environment(s) of other users")
    return "unbind or delete these environments first: " + ", ".join(names)


async def delete_repository(session: AsyncSession, principal: Principal, ref: str | uuid.UUID) -> None:
    """Delete a repository (its set memberships go with it); 409 while an environment is bound to it."""
    repo = await _resolve_repository(session, principal, ref)
    bound = await _bound_environments(session, principal, Environment.repository_id, repo.id)
    if bound:
        raise Conflict("Repository is bound to environments", bound)
    await pool_generations.invalidate(session, principal.organization_id, None)
    audit.record(session, principal, "repository.deleted", "repository", repo.id,
                 before=repository_snapshot(repo))
    await session.execute(delete(RepositorySetMember).where(RepositorySetMember.repository_id == repo.id))
    await session.delete(repo)
    await session.commit()


async def list_repository_sets(
    session: AsyncSession, principal: Principal
) -> list[tuple[RepositorySet, list[Repository]]]:
    """Every set of the organization with its repositories in `position` order."""
    sets = list(await session.scalars(
        select(RepositorySet).where(RepositorySet.organization_id == principal.organization_id)
        .order_by(RepositorySet.name)
    ))
    members: dict[uuid.UUID, list[Repository]] = {s.id: [] for s in sets}
    if sets:
        rows = await session.execute(
            select(RepositorySetMember.repository_set_id, Repository)
            .join(Repository, Repository.id == RepositorySetMember.repository_id)
            .where(RepositorySetMember.repository_set_id.in_(list(members)))
            .order_by(RepositorySetMember.position, Repository.name)
        )
        for set_id, repo in rows:
            members[set_id].append(repo)
    return [(s, members[s.id]) for s in sets]


async def create_repository_set(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str,
    description: str | None,
    repository_ids: list[uuid.UUID],
) -> tuple[RepositorySet, list[Repository]]:
    """Create a named set; members must be the caller's organization's repositories, each once."""
    name = _clean_name(name, "repository set")
    if not repository_ids:
        raise BadRequest("Invalid request", "repository_ids: a set needs at least one repository")
    seen: set[uuid.UUID] = set()
    for repo_id in repository_ids:
        if repo_id in seen:
            raise BadRequest("Invalid request", f"repository_ids: {repo_id} is listed twice")
        seen.add(repo_id)
    found = {r.id: r for r in await session.scalars(
        select(Repository).where(Repository.organization_id == principal.organization_id,
                                 Repository.id.in_(repository_ids))
    )}
    missing = [str(r) for r in repository_ids if r not in found]
    if missing:
        raise BadRequest("Repository not found", f"repository_ids: no repository {', '.join(missing)}")
    repo_set = RepositorySet(organization_id=principal.organization_id, name=name, description=description)
    session.add(repo_set)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict(DUPLICATE_SET, f"name: {name!r} is taken in this organization") from None
    for position, repo_id in enumerate(repository_ids):
        session.add(RepositorySetMember(repository_set_id=repo_set.id, repository_id=repo_id,
                                        position=position))
    audit.record(session, principal, "repository_set.created", "repository_set", repo_set.id,
                 after=repository_set_snapshot(repo_set, repository_ids))
    await session.commit()
    return repo_set, [found[r] for r in repository_ids]


async def delete_repository_set(session: AsyncSession, principal: Principal, ref: str) -> None:
    """Delete a set (not its repositories); 409 while an environment is bound to it."""
    set_id = parse_uuid(ref, "Repository set")
    repo_set = await session.scalar(
        select(RepositorySet).where(RepositorySet.id == set_id,
                                    RepositorySet.organization_id == principal.organization_id)
    )
    if repo_set is None:
        raise NotFound("Repository set not found")
    bound = await _bound_environments(session, principal, Environment.repository_set_id, repo_set.id)
    if bound:
        raise Conflict("Repository set is bound to environments", bound)
    member_ids = list(await session.scalars(
        select(RepositorySetMember.repository_id).where(RepositorySetMember.repository_set_id == set_id)
        .order_by(RepositorySetMember.position)
    ))
    await pool_generations.invalidate(session, principal.organization_id, None)
    audit.record(session, principal, "repository_set.deleted", "repository_set", repo_set.id,
                 before=repository_set_snapshot(repo_set, member_ids))
    await session.execute(delete(RepositorySetMember).where(RepositorySetMember.repository_set_id == set_id))
    await session.delete(repo_set)
    await session.commit()


async def bound_repositories(session: AsyncSession, principal: Principal,
                             env: Environment) -> list[Repository]:
    """The environment's repository, or its repository set's members in order; [] when unbound."""
    if env.repository_id is not None:
        repo = await session.scalar(select(Repository).where(
            Repository.id == env.repository_id, Repository.organization_id == principal.organization_id))
        return [repo] if repo is not None else []
    if env.repository_set_id is not None:
        rows = await session.scalars(
            select(Repository)
            .join(RepositorySetMember, RepositorySetMember.repository_id == Repository.id)
            .where(RepositorySetMember.repository_set_id == env.repository_set_id,
                   Repository.organization_id == principal.organization_id)
            .order_by(RepositorySetMember.position, Repository.name)
        )
        return list(rows)
    return []
