"""The team loop's watcher: a pass every `REPLICAS_TEAM_LOOP_INTERVAL_SECONDS`, in every control-plane process
(each step claims its rows with a conditional update, so two processes never do one thing twice):

0. answers queued at a delivery's receipt (Slack's 👀, a "no environment" notice) are posted
   (team_replies.post_queued);
1. pending follow-ups whose batch is due are sent (team_loop.flush_thread);
2. a thread waiting for an answer (`reply_after_seq`) whose workspace finished a turn after that point and
   settled (no chat processing, nothing queued) gets the turn's result: the pull request links and the
   turn's last words (team_replies.turn_result). It waits for the repositories' state that the engine
   journals after the turn (`repo.status.changed`: the pull request it opened), or `REPLICAS_REPLY_WAIT_SECONDS`.
   On a GitLab thread, the merge requests of the branches it pushed are opened then (team_merge_requests.py).
   The workspace's pull requests on the same provider become tracked threads of it then;
3. threads whose `archive_at` passed archive their workspace (a closed issue; the last tracked pull request
   merged or closed, unless one is open again).

    task = start(app.state)          # at start-up
    await loops.cancel(task)         # at shut-down
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from replicas.errors import ReplicasError
from replicas.services import loops, team_loop, team_merge_requests, team_replies
from replicas.services.team_threads import PR_KINDS, live_workspace, pull_request_key
from replicas.store.models import Workspace, WorkspaceEvent, aware, utcnow
from replicas.store.team_models import TeamMessage, TeamThread

log = logging.getLogger("replicas.team_loop")
SETTLED = ("active", "sleeping", "archived")
ARCHIVE_RETRY_SECONDS = 5.0


def start(services: Any) -> asyncio.Task:
    return asyncio.create_task(loops.run_every("team loop", services.settings.team_loop_interval_seconds,
                                               lambda: pass_once(services)), name="team-loop")


async def pass_once(services: Any) -> None:
    await team_replies.post_queued(services)
    now = utcnow()
    async with services.sessions() as session:
        due = list(await session.scalars(select(TeamMessage.thread_id).where(
            TeamMessage.status == "pending", TeamMessage.due_at <= now, TeamMessage.thread_id.is_not(None))
            .distinct()))
        waiting = list(await session.scalars(select(TeamThread).where(
            TeamThread.reply_after_seq.is_not(None), TeamThread.workspace_id.is_not(None))))
        closing = list(await session.scalars(select(TeamThread).where(TeamThread.archive_at <= now)))
    for thread_id in due:
        await team_loop.flush_thread(services, thread_id)
    replies = [reply for thread in waiting if (reply := await _turn_result(services, thread)) is not None]
    await asyncio.gather(*(team_replies.post(services, thread, text) for thread, text in replies))
    for thread in closing:
        await _archive(services, thread)


def settled(workspace: Workspace) -> bool:
    chats = (workspace.snapshot or {}).get("chats", [])
    return workspace.status in SETTLED and not workspace.pending_messages and not any(
        chat.get("processing") for chat in chats)


async def _turn_result(services: Any, thread: TeamThread) -> tuple[TeamThread, str] | None:
    """The thread and what to post on it, once its answer is ready; the thread's wait is claimed then."""
    async with services.sessions() as session:
        workspace = await session.get(Workspace, thread.workspace_id)
        if workspace is None or not settled(workspace):
            return None
        turn = await session.scalar(select(WorkspaceEvent).where(
            WorkspaceEvent.workspace_id == workspace.id, WorkspaceEvent.type == "chat.turn.completed",
            WorkspaceEvent.seq > thread.reply_after_seq).order_by(WorkspaceEvent.seq.desc()).limit(1))
        if turn is None:
            return None
        repos_after = await session.scalar(select(WorkspaceEvent.seq).where(
            WorkspaceEvent.workspace_id == workspace.id, WorkspaceEvent.seq > turn.seq,
            WorkspaceEvent.type.in_(("repo.status.changed", "repo.discovered"))).limit(1))
        if repos_after is None and _age(turn.ts) < services.settings.reply_wait_seconds:
            return None
        claimed = await session.execute(update(TeamThread).where(
            TeamThread.id == thread.id, TeamThread.reply_after_seq == thread.reply_after_seq)
            .values(reply_after_seq=None).execution_options(synchronize_session=False))
        await session.commit()
        if claimed.rowcount != 1:
            return None
        opened = await team_merge_requests.open_merge_requests(services, session, workspace, thread)
        await track_pull_requests(session, workspace, thread.provider, opened)
        return thread, team_replies.turn_result(workspace, (turn.payload or {}).get("chatId"), thread)


def _age(ts: str | None) -> float:
    try:
        at = datetime.fromisoformat((ts or "").replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (utcnow() - aware(at)).total_seconds()


async def track_pull_requests(session, workspace: Workspace, provider: str,
                              known: dict[str, tuple[str, str]] | None = None) -> None:
    """The workspace's pull requests on `provider` as threads of it (what its closing and its follow-ups
    are decided by), with their head and base branch from the engine's records or `known` ({URL: (head, base)}:
    the merge requests the loop opened)."""
    branches = {record.get("url"): (record.get("branch"), repo.get("defaultBranch"))
                for repo in (workspace.snapshot or {}).get("repos", []) for record in repo.get("pullRequests") or []}
    branches.update(known or {})
    for pr in workspace.pull_requests or []:
        found = pull_request_key(pr.get("url", ""))
        if found is None or found[0] != provider:
            continue
        key = found[1]
        exists = await session.scalar(select(TeamThread.id).where(
            TeamThread.organization_id == workspace.organization_id, TeamThread.key == key))
        if exists is not None:
            continue
        path, number = (key.split(":", 1)[1].rsplit("#", 1) if provider == "github"
                        else key.split(":", 1)[1].rsplit("!", 1))
        target = ({"repository": path, "number": int(number)} if provider == "github" else
                  {"project_id": path.replace("/", "%2F"), "noteable": "merge_requests", "iid": int(number),
                   "repository": path})
        session.add(TeamThread(organization_id=workspace.organization_id, provider=provider, key=key,
                               kind="pull_request" if provider == "github" else "merge_request",
                               workspace_id=workspace.id, environment_id=workspace.environment_id, target=target,
                               details=_pull_request_details(pr["url"], *branches.get(pr["url"], (None, None)))))
        await session.commit()


def _pull_request_details(url: str, head_branch: str | None, base_branch: str | None) -> dict[str, str]:
    """What a follow-up needs to know of a tracked pull request: its URL and, when the engine recorded them, its
    branch (a replacement workspace checks it out) and base (a push there may make it conflict)."""
    return {"url": url, **({"head_branch": head_branch} if head_branch else {}),
            **({"base_branch": base_branch} if base_branch else {})}


async def _archive(services: Any, thread: TeamThread) -> None:
    async with services.sessions() as session:
        claimed = await session.execute(update(TeamThread).where(
            TeamThread.id == thread.id, TeamThread.archive_at.is_not(None), TeamThread.archive_at <= utcnow())
            .values(archive_at=None).execution_options(synchronize_session=False))
        await session.commit()
        if claimed.rowcount != 1:
            return
        workspace = await live_workspace(session, thread)
        if workspace is None or workspace.status == "archived":
            return
        if thread.kind in PR_KINDS and await team_loop.open_pull_requests(session, workspace):
            return  # a tracked pull request is open (again)
    try:
        await services.replicas.archive(team_loop.bot(thread.organization_id, thread.provider), str(workspace.id))
    except ReplicasError as exc:  # preparing: try again shortly
        log.info("team loop: archiving workspace %s later: %s", workspace.id, exc)
        async with services.sessions() as session:
            row = await session.get(TeamThread, thread.id)
            if row is not None and row.archive_at is None:
                row.archive_at = utcnow() + timedelta(seconds=ARCHIVE_RETRY_SECONDS)
                await session.commit()
        return
    log.info("team loop archived workspace %s (%s %s)", workspace.id, thread.key, thread.state)
