"""The team loop's records: which thread leads to which workspace, which delivery was already acted on, and
which environment a new workspace starts in. No network here (team_loop.py and team_replies.py talk to the
providers).

A pull request's workspace is the one that opened it or pushed to it: a workspace whose `pull_requests` hold
its URL, or whose checkout of the same repository is on its head branch. The first event that finds it
records the pull request as a thread of that workspace (`kind` pull_request / merge_request), which is then
one of the workspace's tracked pull requests.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.services import integrations
from replicas.services.team_events import TeamEvent
from replicas.services.workspaces import POOLED
from replicas.store.models import Environment, RepositorySetMember, Workspace, aware, utcnow
from replicas.store.team_models import TeamMessage, TeamThread

SCAN = 500  # the organization's most recent workspaces searched for a pull request's owner
_GITHUB_PULL = re.compile(r"^https?://[^/]+/([^/]+/[^/]+)/pull/(\d+)")
_GITLAB_MERGE = re.compile(r"^https?://[^/]+/(.+?)/-/merge_requests/(\d+)")
PR_KINDS = ("pull_request", "merge_request")


def pull_request_key(url: str) -> tuple[str, str] | None:
    """(provider, thread key) of a pull/merge request URL, e.g. ("github", "github:acme/shop#7")."""
    if match := _GITHUB_PULL.match(url or ""):
        return "github", f"github:{match.group(1).lower()}#{match.group(2)}"
    if match := _GITLAB_MERGE.match(url or ""):
        return "gitlab", f"gitlab:{match.group(1).lower()}!{match.group(2)}"
    return None


def pr_followups(workspace: Workspace) -> bool:
    """`config.capabilities.pr_followups`, defaulting as the contract says (off for automation workspaces)."""
    value = ((workspace.config or {}).get("capabilities") or {}).get("pr_followups")
    return value if isinstance(value, bool) else workspace.source != "automation"


async def thread_by_key(session: AsyncSession, organization_id: uuid.UUID, key: str | None) -> TeamThread | None:
    if not key:
        return None
    return await session.scalar(select(TeamThread).where(TeamThread.organization_id == organization_id,
                                                         TeamThread.key == key))


async def live_workspace(session: AsyncSession, thread: TeamThread | None) -> Workspace | None:
    """The thread's workspace, unless it was deleted (or failed for good)."""
    if thread is None or thread.workspace_id is None:
        return None
    row = await session.get(Workspace, thread.workspace_id)
    return row if row is not None and row.status not in ("error", POOLED) else None


async def ensure_thread(session: AsyncSession, organization_id: uuid.UUID, event: TeamEvent, *,
                        workspace: Workspace | None = None, key: str | None = None, kind: str | None = None,
                        target: dict[str, Any] | None = None) -> TeamThread:
    """The thread named `key` (the event's by default), created if new; linked to `workspace` when given.
    Commits (a concurrent delivery creating the same thread wins, and its row is returned)."""
    key = key or event.thread_key
    thread = await thread_by_key(session, organization_id, key)
    if thread is None:
        thread = TeamThread(organization_id=organization_id, provider=event.provider, key=key,
                            kind=kind or event.thread_kind, target=target or event.target,
                            details=_first_message(event) if key == event.thread_key else {})
        session.add(thread)
    details = dict(thread.details or {})
    for name in ("title", "url", "head_branch", "base_branch"):
        value = getattr(event, name) if key == event.thread_key else None
        # A thread's URL is its first event's (the issue, the pull request): a later review or comment names its
        # own anchor there, which must not become the thread's.
        if value and not (name == "url" and details.get("url")):
            details[name] = value
    thread.details = details
    if workspace is not None:
        thread.workspace_id, thread.environment_id = workspace.id, workspace.environment_id
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        thread = await thread_by_key(session, organization_id, key)
        if thread is None:
            raise
    return thread


def _first_message(event: TeamEvent) -> dict[str, Any]:
    """A Slack thread's first message and its author (the contract's `SlackThreadMetadata.original_message`,
    `user_id`), when the event is that message."""
    if event.provider != "slack" or not event.ts or event.ts != event.target.get("thread_ts"):
        return {}
    return {"original_message": event.text, "message_ts": event.ts, **({"user_id": event.actor} if event.actor else {})}


async def pull_request_owner(session: AsyncSession, organization_id: uuid.UUID,
                             event: TeamEvent) -> tuple[TeamThread | None, Workspace | None]:
    """The pull request's thread and live workspace (see the module docstring); (thread or None, None) when no
    workspace is known to have opened or pushed to it."""
    thread = await thread_by_key(session, organization_id, event.thread_key)
    if thread is not None and thread.workspace_id is not None:
        return thread, await live_workspace(session, thread)
    found = await _workspace_of_pull_request(session, organization_id, event)
    if found is None:
        return thread, None
    return await ensure_thread(session, organization_id, event, workspace=found), found


async def _workspace_of_pull_request(session: AsyncSession, organization_id: uuid.UUID,
                                     event: TeamEvent) -> Workspace | None:
    rows = list(await session.scalars(select(Workspace).where(
        Workspace.organization_id == organization_id, Workspace.status.in_(("preparing", "active", "sleeping",
                                                                            "archived")))
        .order_by(Workspace.created_at.desc()).limit(SCAN)))
    for row in rows:
        if any((pull_request_key(pr.get("url", "")) or ("", ""))[1] == event.thread_key
               for pr in row.pull_requests or []):
            return row
    if not event.head_branch:
        return None
    repository_ids = await integrations.matching_repository_ids(session, organization_id, event.repository_ids)
    for row in rows:
        repos = {str(repo.get("id")) for repo in row.repositories or []}
        branches = {repo.get("branch") for repo in (row.snapshot or {}).get("repos", [])}
        if repos & repository_ids and event.head_branch in branches:
            return row
    return None


async def workspace_threads(session: AsyncSession, workspace_id: uuid.UUID) -> list[TeamThread]:
    return list(await session.scalars(select(TeamThread).where(TeamThread.workspace_id == workspace_id)))


async def record(session: AsyncSession, organization_id: uuid.UUID, dedupe_key: str, kind: str, *,
                 thread: TeamThread | None = None, text: str = "", status: str = "done",
                 delay: float = 0.0) -> TeamMessage | None:
    """Record what a delivery asked (a message to send, `pending`, due after `delay` seconds; or `done`);
    None when this key was recorded before: a redelivery, to be ignored. Commits."""
    now = utcnow()
    row = TeamMessage(organization_id=organization_id, dedupe_key=dedupe_key[:300], kind=kind, text=text,
                      thread_id=thread.id if thread is not None else None, status=status, created_at=now,
                      due_at=now + timedelta(seconds=delay))
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return None
    return row


async def seen(session: AsyncSession, organization_id: uuid.UUID, dedupe_key: str) -> bool:
    return await session.scalar(select(TeamMessage.id).where(TeamMessage.organization_id == organization_id,
                                                             TeamMessage.dedupe_key == dedupe_key[:300])) is not None


async def claim_pending(session: AsyncSession, thread_id: uuid.UUID, now: datetime) -> list[TeamMessage]:
    """The thread's pending messages, claimed (`sending`) for this process, once the latest of them is due
    (a burst keeps postponing the batch); [] when they are not due or another process took them."""
    rows = list(await session.scalars(select(TeamMessage).where(
        TeamMessage.thread_id == thread_id, TeamMessage.status == "pending").order_by(TeamMessage.created_at)))
    if not rows or max(aware(r.due_at) for r in rows) > now:
        return []
    result = await session.execute(update(TeamMessage).where(
        TeamMessage.id.in_([r.id for r in rows]), TeamMessage.status == "pending")
        .values(status="sending").execution_options(synchronize_session=False))
    await session.commit()
    if result.rowcount != len(rows):  # another process claimed some: it sends them, these are left
        await session.execute(update(TeamMessage).where(TeamMessage.id.in_([r.id for r in rows]),
                                                        TeamMessage.status == "sending")
                              .values(status="pending").execution_options(synchronize_session=False))
        await session.commit()
        return []
    return rows


async def environment_for_repository(session: AsyncSession, organization_id: uuid.UUID,
                                     identifiers: list[str]) -> Environment | None:
    """The first team environment bound to the event's repository (directly, else through a repository set)."""
    found = await integrations.matching_repository_ids(session, organization_id, identifiers)
    repository_ids = [uuid.UUID(v) for v in found]
    if not repository_ids:
        return None
    sets = select(RepositorySetMember.repository_set_id).where(RepositorySetMember.repository_id.in_(repository_ids))
    return await session.scalar(select(Environment).where(
        Environment.organization_id == organization_id, Environment.user_id.is_(None),
        or_(Environment.repository_id.in_(repository_ids), Environment.repository_set_id.in_(sets)))
        .order_by(Environment.repository_id.is_(None), Environment.created_at).limit(1))


async def environment_by_hint(session: AsyncSession, organization_id: uuid.UUID, hint: str | None,
                              default_id: str | None) -> Environment | None:
    """`[env:name]` (case-insensitive; a unique partial match also counts), else the configured default, else
    the organization's only team environment."""
    envs = list(await session.scalars(select(Environment).where(
        Environment.organization_id == organization_id, Environment.user_id.is_(None),
        Environment.is_global.is_(False)).order_by(Environment.created_at)))
    if hint:
        wanted = hint.strip().lower()
        exact = [e for e in envs if e.name.lower() == wanted]
        partial = [e for e in envs if wanted in e.name.lower()]
        return exact[0] if exact else (partial[0] if len(partial) == 1 else None)
    if default_id:
        return next((e for e in envs if str(e.id) == default_id), None)
    return envs[0] if len(envs) == 1 else None
