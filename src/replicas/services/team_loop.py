"""The agent in the team's loop (spec §6.1, §3.2.1): verified GitHub, GitLab, Slack and Linear deliveries that
start a workspace or steer one, besides the automations they fire (services/integrations.py calls `route`).

    handled = await route(app.state, "github", organization_id, headers, payload)

What each kind of event does (team_events.py says how each is recognised):
- `mention` of `@REPLICAS_MENTION_HANDLE` (GitHub/GitLab: only by a login on the integration's allow-list; never
  the token's own `bot_login`, nor a comment the server posted): on a thread that has a workspace, a follow-up
  to it; on a pull request a workspace opened or pushed to, a follow-up to that workspace; otherwise a new
  workspace (`source` = the provider) in the environment bound to the repository (GitHub, GitLab) or named
  with `[env:name]`, else the integration's default (Slack, Linear). Its first message carries the issue,
  the comment, and asks for a plan first, then the work and a pull request; on someone else's pull request
  it works on that pull request's branch. Slack: 👀 on the mention; `/plan` asks for plan mode. The 👀 and
  the notice that no environment fits are queued, and posted by the watcher (team_replies.py).
- `thread_reply` (Slack): a new message in a thread that leads to a workspace is a follow-up (older or
  already-seen messages are not sent again).
- `review`, `check_failed`, `conflict` on a pull request whose workspace has `pr_followups`: follow-ups.
  Review comments wait `REPLICAS_REVIEW_BATCH_SECONDS` of quiet and go as one message; a failed job carries
  its name and the tail of its log when the API gives it; a GitLab branch pipeline, or a GitHub run that names no
  pull request, goes to the open tracked pull (merge) request of its branch. `push` to a base branch checks the
  open tracked pull (merge) requests on it for conflicts.
- `pr_closed`: when the workspace's last tracked pull request merged (closed), it is archived after
  `REPLICAS_PR_CLOSE_GRACE_SECONDS`, unless `keep_open_on_pr_merge` (`keep_open_on_pr_close`) is set;
  `issue_closed`: the issue's workspace is archived.

Every delivery acted on is recorded under its dedupe key first (team_threads.record), so a redelivery does
nothing. Messages are sent through the Replica API's own path (`send_message`: a sleeping or archived
workspace wakes for it); a thread whose workspace was deleted gets a new one. When a turn that answers a
message ends, its result is posted back (team_watcher.py). What each message says is team_texts.py's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from replicas.errors import ReplicasError
from replicas.services import integration_credentials, team_replies
from replicas.services import team_texts as texts
from replicas.services.integration_credentials import LOOP_PROVIDERS, LoopCredential
from replicas.services.principal import Principal
from replicas.services.providers import ProviderError, client_of
from replicas.services.replica_requests import NewReplica
from replicas.services.team_events import LoopOptions, TeamEvent, parse
from replicas.services.team_threads import (
    PR_KINDS,
    claim_pending,
    ensure_thread,
    environment_by_hint,
    environment_for_repository,
    live_workspace,
    pr_followups,
    pull_request_key,
    pull_request_owner,
    record,
    thread_by_key,
    workspace_threads,
)
from replicas.store.models import Environment, Workspace, utcnow
from replicas.store.team_models import TeamMessage, TeamThread

log = logging.getLogger("replicas.team_loop")
_tasks: set[asyncio.Task] = set()


def spawn(coro: Coroutine) -> asyncio.Task:
    """Run work the delivery's answer must not wait for (Slack wants an answer within 3 s)."""
    task = asyncio.create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


def bot(organization_id: uuid.UUID, provider: str) -> Principal:
    """Who the team loop acts as: the organization's bot (messages carry no user sender)."""
    return Principal(organization_id, None, None, "admin", f"team-loop:{provider}")


# -- routing ---------------------------------------------------------------------------------------


# How long a delivery's answer waits for its events to be acted on (`team_route_wait_seconds`, Slack at most
# SLACK_ROUTE_WAIT: it gives 3 s). A provider that is slow or failing (its calls retried, `provider_retry_delays`)
# must not make the sender time out, retry or disable the webhook: past this, the work goes on in the background.
SLACK_ROUTE_WAIT = 2.0
_chains: dict[tuple[uuid.UUID, str], asyncio.Task] = {}


async def route(services: Any, provider: str, organization_id: uuid.UUID, headers: Any,
                payload: dict[str, Any]) -> int:
    """Act on a verified delivery's team-loop events; returns how many were acted on (those done within the
    delivery's wait: the rest go on in the background). Never raises for one event's failure (logged): the
    delivery's automations must still fire. An organization's deliveries of one provider are acted on in the
    order they came (a thread's replies, a review after the pull request's opening), each after the one before."""
    if provider not in LOOP_PROVIDERS:
        return 0
    async with services.sessions() as session:
        credential = await integration_credentials.load(session, services.box, organization_id, provider)
    events = parse(provider, headers, payload, LoopOptions(services.settings.mention_handle, credential.bot_user_id))
    events = [event for event in events if _trusted(credential, event)]
    if not events:
        return 0
    key = (organization_id, provider)
    before = _chains.get(key)
    if before is not None and (before.done() or before.get_loop() is not asyncio.get_running_loop()):
        before = None
    task = spawn(_act_in_order(before, services, organization_id, credential, events))
    _chains[key] = task
    task.add_done_callback(lambda done: _chains.pop(key, None) if _chains.get(key) is done else None)
    wait = services.settings.team_route_wait_seconds
    if provider == "slack":
        wait = min(wait, SLACK_ROUTE_WAIT)
    try:
        return await asyncio.wait_for(asyncio.shield(task), wait)
    except TimeoutError:
        log.warning("team loop still acting on a %s delivery after %.0f s; answered, it goes on in the background",
                    provider, wait)
        return 0


async def _act_in_order(before: asyncio.Task | None, services: Any, organization_id: uuid.UUID,
                        credential: LoopCredential, events: list[TeamEvent]) -> int:
    if before is not None:
        await asyncio.wait({before})
    handled = 0
    for event in events:
        try:
            handled += bool(await HANDLERS[event.kind](services, organization_id, credential, event))
        except (ReplicasError, ProviderError) as exc:
            log.warning("team loop event failed provider=%s kind=%s thread=%s: %s", event.provider, event.kind,
                        event.thread_key, exc)
        except Exception:  # noqa: BLE001 - in the background now: logged, never lost silently
            log.exception("team loop event failed provider=%s kind=%s thread=%s", event.provider, event.kind,
                          event.thread_key)
    return handled


def _trusted(credential: LoopCredential, event: TeamEvent) -> bool:
    """Own comments never loop; on GitHub and GitLab only the allow-list may mention or review."""
    if credential.is_bot(event.actor):
        log.info("team loop ignored its own %s on %s", event.kind, event.thread_key)
        return False
    if event.provider in ("github", "gitlab") and event.kind in ("mention", "review"):
        if event.actor_is_bot or not credential.allows(event.actor):
            log.info("team loop ignored %s by %s (not on the allow-list) on %s", event.kind, event.actor,
                     event.thread_key)
            return False
    return True


def _own_comment(thread: TeamThread | None, event: TeamEvent) -> bool:
    return thread is not None and event.comment_id is not None and \
        event.comment_id in (thread.details or {}).get("posted", [])


async def on_mention(services: Any, organization_id: uuid.UUID, credential: LoopCredential,
                     event: TeamEvent) -> bool:
    async with services.sessions() as session:
        thread = await thread_by_key(session, organization_id, event.thread_key)
        if _own_comment(thread, event):
            return False
        workspace = await live_workspace(session, thread)
        if workspace is None and event.thread_kind in PR_KINDS:
            thread, workspace = await pull_request_owner(session, organization_id, event)
    if event.provider == "slack":
        await team_replies.queue_reaction(services, organization_id, event.target["channel"], event.ts)
    if workspace is not None:
        return await follow_up(services, organization_id, event, thread, texts.mention_text(event))
    async with services.sessions() as session:
        if await record(session, organization_id, event.dedupe_key, event.kind) is None:
            return False
    return await start(services, organization_id, credential, event, thread)


async def on_thread_reply(services: Any, organization_id: uuid.UUID, credential: LoopCredential,
                          event: TeamEvent) -> bool:
    async with services.sessions() as session:
        thread = await thread_by_key(session, organization_id, event.thread_key)
    if thread is None or not _newer(event.ts, thread.last_message_ts):
        return False
    return await follow_up(services, organization_id, event, thread, texts.thread_reply_text(event))


def _newer(ts: str | None, last: str | None) -> bool:
    try:
        return last is None or float(ts or 0) > float(last)
    except ValueError:
        return True


async def on_pull_request_event(services: Any, organization_id: uuid.UUID, credential: LoopCredential,
                                event: TeamEvent) -> bool:
    """A review, a failed check or a conflict: a follow-up for the pull request's workspace (with
    `pr_followups`), or for a new one if it was deleted; a review that mentions the handle on a pull request
    no workspace has is a mention."""
    if event.thread_key is None and not await _branch_merge_request(services, organization_id, event):
        return False  # a branch pipeline whose branch has no tracked merge request
    async with services.sessions() as session:
        thread, workspace = await pull_request_owner(session, organization_id, event)
    if _own_comment(thread, event):
        return False
    if workspace is None and (thread is None or thread.workspace_id is not None or thread.state != "open"):
        if event.kind == "review" and event.mentioned:
            event.kind = "mention"
            return await on_mention(services, organization_id, credential, event)
        return False  # no workspace is on it (a deleted one left `workspace_id` NULL: replaced below)
    if workspace is not None and not pr_followups(workspace):
        return False
    if event.kind == "review":
        return await follow_up(services, organization_id, event, thread, texts.review_text(event),
                               delay=services.settings.review_batch_seconds)
    if event.kind == "check_failed":
        text = await check_text(services, organization_id, credential, event)
        return bool(text) and await follow_up(services, organization_id, event, thread, text)
    return await follow_up(services, organization_id, event, thread, texts.conflict_text(event, thread))


async def _branch_merge_request(services: Any, organization_id: uuid.UUID, event: TeamEvent) -> bool:
    """A run that names no pull (merge) request: a GitLab branch pipeline, a GitHub check or workflow run that
    names none (GitHub leaves `pull_requests` empty for a pull request from a fork, or one opened after the run
    started). The open tracked one whose head is its branch becomes the event's thread (False when none is)."""
    if event.provider not in ("github", "gitlab") or not event.head_branch:
        return False
    async with services.sessions() as session:
        thread = next((t for t in await _open_tracked(session, organization_id, event)
                       if (t.details or {}).get("head_branch") == event.head_branch), None)
    if thread is None:
        return False
    mark = "!" if event.provider == "gitlab" else "#"
    event.thread_key, event.target, event.number = thread.key, thread.target, int(thread.key.rsplit(mark, 1)[1])
    event.url = event.url or (thread.details or {}).get("url")
    return True


async def _open_tracked(session, organization_id: uuid.UUID, event: TeamEvent) -> list[TeamThread]:
    """The open tracked pull (merge) requests of the event's repository, newest first."""
    mark = "!" if event.provider == "gitlab" else "#"
    prefix = f"{event.provider}:{(event.repository or '').lower()}{mark}"
    return list(await session.scalars(select(TeamThread).where(
        TeamThread.organization_id == organization_id, TeamThread.kind.in_(PR_KINDS), TeamThread.state == "open",
        TeamThread.key.startswith(prefix)).order_by(TeamThread.created_at.desc())))


# After a push to the base, GitHub computes a pull request's `mergeable` in the background (null meanwhile), and
# GitLab a merge request's `merge_status` ("unchecked", "checking"): one read in that moment is read again after
# these waits, in the background (the delivery is answered at once).
MERGEABILITY_WAITS = (1.0, 2.0, 4.0, 8.0, 15.0)
GITLAB_COMPUTING = frozenset({"unchecked", "checking", "cannot_be_merged_recheck", "preparing"})


async def on_push(services: Any, organization_id: uuid.UUID, credential: LoopCredential, event: TeamEvent) -> bool:
    """A base branch moved: its open tracked pull (merge) requests may conflict now, which GitHub (`mergeable`)
    and GitLab (`has_conflicts`, `merge_status`) say on a read. One whose base is not known yet is read too (its
    base is learnt from the answer). One whose provider is still computing is read again later."""
    async with services.sessions() as session:
        threads = [t for t in await _open_tracked(session, organization_id, event)
                   if (t.details or {}).get("base_branch") in (None, event.base_branch)]
    handled = 0
    async with client_of(credential, services.settings, event.repository) as client:
        for thread in threads:
            followed = await _follow_up_conflict(services, organization_id, credential, event, client, thread)
            if followed is None:
                spawn(_when_computed(services, organization_id, credential, event, thread))
            handled += bool(followed)
    return bool(handled)


async def _follow_up_conflict(services: Any, organization_id: uuid.UUID, credential: LoopCredential,
                              event: TeamEvent, client: Any, thread: TeamThread) -> bool | None:
    """Read the thread's pull (merge) request: True when it conflicts with the pushed base (the follow-up is
    sent), False when not, None while its provider is still computing."""
    base, conflicted, head_sha, url = await _mergeability(client, event, thread)
    if base != event.base_branch:
        return False
    if conflicted is None:
        return None
    if not conflicted:
        return False
    conflict = TeamEvent(event.provider, "conflict", f"{event.provider}-conflict:{thread.key}:{head_sha}:"
                         f"{event.head_sha}", thread_key=thread.key, thread_kind=thread.kind,
                         target=thread.target, repository=event.repository,
                         repository_ids=event.repository_ids, url=url, base_branch=event.base_branch)
    return bool(await on_pull_request_event(services, organization_id, credential, conflict))


async def _when_computed(services: Any, organization_id: uuid.UUID, credential: LoopCredential, event: TeamEvent,
                         thread: TeamThread) -> None:
    for wait in MERGEABILITY_WAITS:
        await asyncio.sleep(wait)
        try:
            async with client_of(credential, services.settings, event.repository) as client:
                if await _follow_up_conflict(services, organization_id, credential, event, client, thread) is not None:
                    return
        except (ReplicasError, ProviderError) as exc:
            log.warning("team loop could not read %s again after the push to %s: %s", thread.key,
                        event.base_branch, exc)
            return
    log.info("team loop: %s still had no mergeability %.0fs after the push to %s; no conflict follow-up",
             thread.key, sum(MERGEABILITY_WAITS), event.base_branch)


async def _mergeability(client: Any, event: TeamEvent, thread: TeamThread) -> tuple[str | None, bool | None,
                                                                                    str | None, str | None]:
    """(base branch, has conflicts (None: not computed yet), head commit, URL) of the thread's pull (merge)
    request, as its provider says."""
    if event.provider == "gitlab":
        mr = await client.merge_request(thread.target.get("project_id"), int(thread.key.rsplit("!", 1)[1]))
        if mr.get("merge_status") in GITLAB_COMPUTING or mr.get("detailed_merge_status") in GITLAB_COMPUTING:
            conflicted = None
        else:
            conflicted = bool(mr.get("has_conflicts")) or mr.get("merge_status") == "cannot_be_merged" \
                or mr.get("detailed_merge_status") == "conflict"
        return mr.get("target_branch"), conflicted, mr.get("sha"), mr.get("web_url")
    pull = await client.pull_request(event.repository, int(thread.key.rsplit("#", 1)[1]))
    if pull.get("mergeable") is None and pull.get("mergeable_state") in (None, "unknown"):
        conflicted = None
    else:
        conflicted = pull.get("mergeable") is False or pull.get("mergeable_state") == "dirty"
    return (pull.get("base") or {}).get("ref"), conflicted, (pull.get("head") or {}).get("sha"), pull.get("html_url")


async def on_pr_closed(services: Any, organization_id: uuid.UUID, credential: LoopCredential,
                       event: TeamEvent) -> bool:
    """Mark the pull request closed; when none of its workspace's tracked pull requests is open any more,
    schedule the archive (unless the workspace's preference keeps it open)."""
    async with services.sessions() as session:
        if await record(session, organization_id, event.dedupe_key, event.kind) is None:
            return False
        thread, workspace = await pull_request_owner(session, organization_id, event)
        if thread is None:
            return False
        thread = await session.get(TeamThread, thread.id)
        thread.state = "merged" if event.merged else "closed"
        await session.commit()
        if workspace is None:
            return True
        preferences = (workspace.config or {}).get("preferences") or {}
        keep = preferences.get("keep_open_on_pr_merge" if event.merged else "keep_open_on_pr_close")
        if not keep and not await open_pull_requests(session, workspace):
            thread.archive_at = utcnow() + timedelta(seconds=services.settings.pr_close_grace_seconds)
            await session.commit()
            log.info("team loop: workspace %s archives in %.0fs (last pull request %s)", workspace.id,
                     services.settings.pr_close_grace_seconds, thread.state)
    return True


async def on_pr_reopened(services: Any, organization_id: uuid.UUID, credential: LoopCredential,
                         event: TeamEvent) -> bool:
    """Open again: tracked as open, and the workspace's pending archive is called off."""
    async with services.sessions() as session:
        thread = await thread_by_key(session, organization_id, event.thread_key)
        if thread is None or await record(session, organization_id, event.dedupe_key, event.kind) is None:
            return False
        thread = await session.get(TeamThread, thread.id)
        thread.state = "open"
        for other in await workspace_threads(session, thread.workspace_id) if thread.workspace_id else [thread]:
            other.archive_at = None if other.kind in PR_KINDS else other.archive_at
        await session.commit()
    return True


async def open_pull_requests(session, workspace: Workspace) -> list[str]:
    """The workspace's tracked pull requests still open: its threads' (not merged or closed) and the ones it
    reports that have no thread yet."""
    threads = {t.key: t for t in await workspace_threads(session, workspace.id) if t.kind in PR_KINDS}
    keys = set(threads) | {key for pr in workspace.pull_requests or []
                           if (key := (pull_request_key(pr.get("url", "")) or (None, None))[1])}
    return sorted(k for k in keys if k not in threads or threads[k].state == "open")


async def on_issue_closed(services: Any, organization_id: uuid.UUID, credential: LoopCredential,
                          event: TeamEvent) -> bool:
    """The issue's workspace is archived (by the watcher, at once: it retries a workspace still preparing)."""
    async with services.sessions() as session:
        thread = await thread_by_key(session, organization_id, event.thread_key)
        if thread is None or await record(session, organization_id, event.dedupe_key, event.kind) is None:
            return False
        thread = await session.get(TeamThread, thread.id)
        thread.state, thread.archive_at = "closed", utcnow()
        await session.commit()
    return True


HANDLERS: dict[str, Callable[..., Awaitable[bool]]] = {
    "mention": on_mention, "thread_reply": on_thread_reply, "review": on_pull_request_event,
    "check_failed": on_pull_request_event, "conflict": on_pull_request_event, "push": on_push,
    "pr_closed": on_pr_closed, "pr_reopened": on_pr_reopened, "issue_closed": on_issue_closed}


# -- failed CI: the jobs and their logs --------------------------------------------------------------


async def check_text(services: Any, organization_id: uuid.UUID, credential: LoopCredential,
                     event: TeamEvent) -> str | None:
    """The failed jobs not reported before (a job can come in a check run and in a workflow run), each with
    the tail of its log when the API gives it; None when every job was reported."""
    jobs = list(event.jobs)
    async with client_of(credential, services.settings, event.repository) as client:
        project = event.target.get("project_id") if event.provider == "gitlab" else event.repository
        if not jobs and event.run_id:
            try:
                jobs = [{"id": j.get("id"), "name": j.get("name"), "url": j.get("html_url") or j.get("web_url"),
                         "conclusion": j.get("conclusion") or j.get("status")}
                        for j in await client.failed_jobs(project, event.run_id)]
            except ProviderError as exc:
                log.warning("team loop could not list the jobs of run %s: %s", event.run_id, exc)
                jobs = [{"id": None, "name": event.title or f"run {event.run_id}", "conclusion": "failure"}]
        sections = []
        for job in jobs:
            key = f"{event.provider}-job:{(event.repository or '').lower()}:{job.get('id')}#{event.number}"
            if job.get("id") is not None and key != event.dedupe_key:
                async with services.sessions() as session:
                    if await record(session, organization_id, key, "job") is None:
                        continue
            log_tail = await client.job_log_tail(project, job["id"]) if job.get("id") is not None else None
            sections.append(texts.job_section(job, log_tail))
    return texts.check_failed_text(event, sections) if sections else None


# -- starting and steering workspaces --------------------------------------------------------------


async def follow_up(services: Any, organization_id: uuid.UUID, event: TeamEvent, thread: TeamThread | None,
                    text: str, delay: float = 0.0) -> bool:
    """Record the follow-up for the thread (a redelivery records nothing) and send it once due."""
    async with services.sessions() as session:
        if thread is None:
            thread = await ensure_thread(session, organization_id, event)
        if await record(session, organization_id, event.dedupe_key, event.kind, thread=thread, text=text,
                        status="pending", delay=delay) is None:
            return False
        if event.ts:
            row = await session.get(TeamThread, thread.id)
            if _newer(event.ts, row.last_message_ts):
                row.last_message_ts = event.ts
                await session.commit()
    if delay <= 0:
        spawn(flush_thread(services, thread.id))
    return True


async def flush_thread(services: Any, thread_id: uuid.UUID) -> bool:
    """Send the thread's pending messages as one, once the latest is due (team_threads.claim_pending)."""
    async with services.sessions() as session:
        rows = await claim_pending(session, thread_id, utcnow())
        thread = await session.get(TeamThread, thread_id)
    if not rows or thread is None:
        return False
    text = texts.batch_text(rows, thread)
    error = None
    try:
        await deliver(services, thread, text)
    except ReplicasError as exc:
        error = exc.error + (f": {exc.details}" if exc.details else "")
        log.warning("team loop follow-up failed thread=%s: %s", thread.key, error)
    async with services.sessions() as session:
        for row in rows:
            current = await session.get(TeamMessage, row.id)
            current.status, current.sent_at, current.error = ("failed" if error else "sent"), utcnow(), error
        await session.commit()
    return error is None


async def deliver(services: Any, thread: TeamThread, text: str) -> None:
    """Send to the thread's workspace (waking it if it sleeps or is archived), or start a new one in the
    thread's environment if it was deleted; the answering turn is then posted back."""
    async with services.sessions() as session:
        workspace = await live_workspace(session, await session.get(TeamThread, thread.id))
    if workspace is None:
        branch = (thread.details or {}).get("head_branch")
        if thread.kind in PR_KINDS and branch:
            text += texts.replacement_note(branch)
        await _create(services, thread, text, plan_mode=False)
        return
    await services.replicas.send_message(bot(thread.organization_id, thread.provider), str(workspace.id), text)
    await _await_reply(services, thread.id, workspace.last_event_seq)


async def _await_reply(services: Any, thread_id: uuid.UUID, seq: int) -> None:
    async with services.sessions() as session:
        row = await session.get(TeamThread, thread_id)
        if row is not None and row.reply_after_seq is None:
            row.reply_after_seq = seq
            await session.commit()


async def start(services: Any, organization_id: uuid.UUID, credential: LoopCredential, event: TeamEvent,
                thread: TeamThread | None) -> bool:
    """A new workspace for the event's thread; when no environment fits, say so on the thread."""
    async with services.sessions() as session:
        env = await _environment(session, organization_id, credential, event, thread)
        thread = await ensure_thread(session, organization_id, event) if thread is None else thread
        if event.ts:
            row = await session.get(TeamThread, thread.id)
            row.last_message_ts = event.ts
            await session.commit()
    if env is None:
        notice = texts.no_environment_notice(event)
        log.info("team loop cannot start a workspace on %s: %s", event.thread_key, notice)
        await team_replies.queue_notice(services, thread, event.dedupe_key, notice)
        return False
    branch = event.head_branch
    if event.thread_kind == "pull_request" and not branch and credential.can_answer:
        try:
            async with client_of(credential, services.settings, event.repository) as github:
                branch = ((await github.pull_request(event.repository, event.number)).get("head") or {}).get("ref")
        except ProviderError as exc:
            log.warning("team loop could not read pull request %s: %s", event.thread_key, exc)
    async with services.sessions() as session:
        row = await session.get(TeamThread, thread.id)
        row.environment_id = env.id
        row.details = {**(row.details or {}), **({"head_branch": branch} if branch else {})}
        await session.commit()
        thread = row
    await _create(services, thread, texts.first_message(event, branch), plan_mode=event.plan_mode)
    return True


async def _environment(session, organization_id: uuid.UUID, credential: LoopCredential, event: TeamEvent,
                       thread: TeamThread | None) -> Environment | None:
    if thread is not None and thread.environment_id is not None:
        env = await session.get(Environment, thread.environment_id)
        if env is not None:
            return env
    if event.provider in ("github", "gitlab"):
        return await environment_for_repository(session, organization_id, event.repository_ids)
    return await environment_by_hint(session, organization_id, event.environment_hint,
                                     credential.default_environment_id)


async def _create(services: Any, thread: TeamThread, message: str, *, plan_mode: bool) -> Workspace:
    if thread.environment_id is None:
        raise ReplicasError("No environment for this thread")
    request = NewReplica(name=_name(thread), message=message, environment_id=str(thread.environment_id),
                         config={"capabilities": {"pr_followups": True}}, plan_mode=plan_mode or None)
    row = await services.replicas.create(bot(thread.organization_id, thread.provider), request, wait=False,
                                         source=thread.provider)
    async with services.sessions() as session:
        current = await session.get(TeamThread, thread.id)
        current.workspace_id, current.reply_after_seq, current.state = row.id, 0, "open"
        await session.commit()
    log.info("team loop started workspace %s for %s", row.id, thread.key)
    return row


def _name(thread: TeamThread) -> str:
    tail = thread.key.split(":", 1)[1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{thread.provider}-{tail}").strip("-")[:80] or thread.provider
