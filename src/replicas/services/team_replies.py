"""Answering where the team works: a comment on the GitHub issue or pull request, a note on GitLab, a reply in
the Slack thread, a comment on the Linear issue, and Slack's 👀 on a mention. Each goes through the provider's
client (services/providers/) with the organization's stored token; a failure (after the client's retries) is
recorded on the thread (`details.last_error`) and logged, and never reaches the workspace.

    await post(services, thread, "Opened https://github.com/acme/shop/pull/7 ...")
    text = turn_result(workspace, chat_id, thread)     # the PR links and the turn's last words

What a delivery's receipt answers at once (Slack's 👀, the notice that no environment fits) is queued instead
(`queue_reaction`, `queue_notice`): a `team_messages` row in status `to_post`, under a dedupe key of its own, so
that a redelivery queues nothing. The watcher's pass (`post_queued`) claims each row with a conditional update
(`to_post` -> `posting`) and posts it, then marks it `sent` or `failed`: a restart between the receipt and the
pass still posts it, once, and two processes never both post it. A claim expires: claiming sets the row's `due_at`
to the claim's time plus `REPLICAS_TEAM_POST_CLAIM_SECONDS` (longer than a post with all its retries). A row still
`posting` after that was left by a process that died while posting; it is claimed again (`reposting`) and posted
once more. One left `reposting` too is `failed`, never posted a third time: Slack may have seen the dead posts, and
a repeated reaction or notice is worse than a missing one.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from replicas.services import integration_credentials
from replicas.services.providers import ProviderError, client_of
from replicas.services.team_threads import pull_request_key, record
from replicas.store.models import Workspace, utcnow
from replicas.store.team_models import TeamMessage, TeamThread

log = logging.getLogger("replicas.team_loop")
MAX_SUMMARY = 6000
POSTED_KEPT = 50  # comment ids remembered per thread, so that the server's own comments never loop
QUEUED, POSTING, REPOSTING = "to_post", "posting", "reposting"


async def _credential(services: Any, organization_id: uuid.UUID, provider: str):
    async with services.sessions() as session:
        return await integration_credentials.load(session, services.box, organization_id, provider)


async def send(services: Any, organization_id: uuid.UUID, provider: str, target: dict[str, Any],
               text: str) -> str | None:
    """Post `text` where `target` says; returns the posted comment's id. Raises ProviderError."""
    credential = await _credential(services, organization_id, provider)
    async with client_of(credential, services.settings, target.get("repository")) as client:
        if provider == "github":
            return str((await client.comment(target["repository"], int(target["number"]), text)).get("id"))
        if provider == "gitlab":
            return str((await client.note(target["project_id"], target["noteable"], int(target["iid"]), text))
                       .get("id"))
        if provider == "slack":
            return (await client.post_message(target["channel"], target["thread_ts"], text)).get("ts")
        return (await client.comment(target["issue_id"], text)).get("id")


async def post(services: Any, thread: TeamThread, text: str) -> bool:
    """Post on the thread; remember the comment's id (never a follow-up) or record the failure."""
    try:
        posted = await send(services, thread.organization_id, thread.provider, thread.target, text)
    except ProviderError as exc:
        log.warning("team loop reply failed thread=%s provider=%s: %s", thread.key, thread.provider, exc)
        await _note(services, thread.id, last_error={"message": str(exc), "at": utcnow().isoformat()})
        return False
    log.info("team loop replied thread=%s provider=%s", thread.key, thread.provider)
    await _note(services, thread.id, posted=posted)
    return True


async def _note(services: Any, thread_id: uuid.UUID, *, posted: str | None = None,
                last_error: dict | None = None) -> None:
    async with services.sessions() as session:
        row = await session.get(TeamThread, thread_id)
        if row is None:
            return
        details = dict(row.details or {})
        if posted:
            details["posted"] = [*details.get("posted", []), posted][-POSTED_KEPT:]
        if last_error:
            details["last_error"] = last_error
        row.details = details
        await session.commit()


async def react(services: Any, organization_id: uuid.UUID, channel: str, ts: str, name: str = "eyes") -> str | None:
    """Slack's acknowledgement of a mention; returns the failure (logged), None when done."""
    credential = await _credential(services, organization_id, "slack")
    try:
        async with client_of(credential, services.settings) as client:
            await client.add_reaction(channel, ts, name)
    except ProviderError as exc:
        log.warning("slack reaction failed channel=%s: %s", channel, exc)
        return str(exc)
    return None


async def queue_reaction(services: Any, organization_id: uuid.UUID, channel: str, ts: str,
                         name: str = "eyes") -> bool:
    """Queue 👀 on the Slack message `ts` (once per message); False when it was queued before."""
    async with services.sessions() as session:
        return await record(session, organization_id, f"slack-reaction:{channel}:{ts}", "reaction", status=QUEUED,
                            text=json.dumps({"channel": channel, "ts": ts, "name": name})) is not None


async def queue_notice(services: Any, thread: TeamThread, dedupe_key: str, text: str) -> bool:
    """Queue `text` on the thread, once for the delivery `dedupe_key`; False when it was queued before."""
    async with services.sessions() as session:
        return await record(session, thread.organization_id, f"notice:{dedupe_key}", "notice", thread=thread,
                            text=text, status=QUEUED) is not None


async def post_queued(services: Any) -> int:
    """Claim and post every queued answer, and every one whose poster died (see the module docstring); returns
    how many were posted."""
    now = utcnow()
    async with services.sessions() as session:
        await session.execute(update(TeamMessage).where(TeamMessage.status == REPOSTING, TeamMessage.due_at <= now)
                              .values(status="failed", sent_at=now, error="the process posting it stopped, twice")
                              .execution_options(synchronize_session=False))
        await session.commit()
        rows = list(await session.scalars(select(TeamMessage).where(or_(
            TeamMessage.status == QUEUED, and_(TeamMessage.status == POSTING, TeamMessage.due_at <= now)))
            .order_by(TeamMessage.created_at)))
    expires = now + timedelta(seconds=services.settings.team_post_claim_seconds)
    posted = 0
    for row in rows:
        async with services.sessions() as session:
            claim = (TeamMessage.status == QUEUED if row.status == QUEUED else
                     and_(TeamMessage.status == POSTING, TeamMessage.due_at <= now))
            claimed = await session.execute(update(TeamMessage).where(TeamMessage.id == row.id, claim).values(
                status=POSTING if row.status == QUEUED else REPOSTING, due_at=expires)
                .execution_options(synchronize_session=False))
            await session.commit()
            if claimed.rowcount != 1:
                continue  # another process took it
            if row.status == POSTING:
                log.warning("team loop posts %s %s again: its poster stopped while posting", row.kind, row.id)
            thread = await session.get(TeamThread, row.thread_id) if row.thread_id else None
        error = await _post_queued_row(services, row, thread)
        async with services.sessions() as session:
            current = await session.get(TeamMessage, row.id)
            current.status, current.sent_at, current.error = ("failed" if error else "sent"), utcnow(), error
            await session.commit()
        posted += error is None
    return posted


async def _post_queued_row(services: Any, row: TeamMessage, thread: TeamThread | None) -> str | None:
    if row.kind == "reaction":
        where = json.loads(row.text)
        return await react(services, row.organization_id, where["channel"], where["ts"], where["name"])
    if thread is None:
        return "the thread is gone"
    return None if await post(services, thread, row.text) else "not posted (see the thread's last_error)"


def turn_result(workspace: Workspace, chat_id: str | None, thread: TeamThread) -> str:
    """What a finished turn leaves on the thread: the workspace's pull requests (other than the thread itself)
    and the turn's last words."""
    urls = [pr["url"] for pr in workspace.pull_requests or [] if pr.get("url")]
    reviewable = [url for url in urls if pull_request_key(url)]  # a pushed branch counts when there is no PR
    links = [url for url in reviewable or urls if (pull_request_key(url) or ("", ""))[1] != thread.key]
    texts = (workspace.snapshot or {}).get("last_text") or {}
    summary = (texts.get(str(chat_id)) if chat_id else None) or texts.get(str(workspace.default_chat_id)) or ""
    summary = summary.strip()[-MAX_SUMMARY:]
    parts = []
    if links:
        noun = "Merge request" if thread.provider == "gitlab" else "Pull request"
        label = noun if len(links) == 1 else f"{noun}s"
        parts.append(f"{label}: " + ", ".join(links))
    parts.append(summary or "The agent finished its turn without a summary.")
    return "\n\n".join(parts)
