"""Routing a Slack thread to a workspace (`POST /v1/slack/threads/attach`, spec §3.10, §6.1): the thread's later
replies go to that workspace as follow-ups, and its answers are posted back in the thread (team_loop.py).

    thread = await attach(services, principal, workspace, "C123ABC456", "1712000001.000100", may_switch=True)

The thread is the team loop's own record (`team_threads`, key `slack:<team>:<channel>:<thread_ts>`): an existing
one is re-pointed, a new one is created. Switching a thread that another live workspace holds takes
`may_switch` (an API key or a user); without it (agent mode) that is a 409. Its Slack team is the existing
thread's, else that of the organization's other Slack threads, else what Slack's `auth.test` says of the stored
bot token; with none of these it is a 400 (Slack is not connected). The record's `metadata.original_message` and
`user_id` are the thread's first message and its author: from the mention that started it, or read from Slack
(`conversations.replies`) when a thread is attached first (left empty when the bot may not read it). Every
attach is audit-logged (`slack_thread.attach`, the thread and the workspace before and after).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from sqlalchemy import select

from replicas.errors import BadRequest, Conflict
from replicas.services import audit, integration_credentials
from replicas.services.principal import Principal
from replicas.services.providers import ProviderError, client_of
from replicas.store.models import Workspace, iso
from replicas.store.team_models import TeamThread

log = logging.getLogger("replicas.team_loop")
THREAD_TS = re.compile(r"^\d{1,12}\.\d{1,9}$")
CHANNEL = re.compile(r"^[A-Z0-9]{2,32}$")


def validate(channel_id: str, thread_ts: str) -> None:
    if not CHANNEL.match(channel_id):
        raise BadRequest("Invalid request", "channel_id: a Slack channel ID, such as C123ABC456")
    if not THREAD_TS.match(thread_ts):
        raise BadRequest("Invalid request", "thread_ts: a Slack message timestamp, such as 1712000001.000100")


async def _slack_threads(session, organization_id: uuid.UUID) -> list[TeamThread]:
    return list(await session.scalars(select(TeamThread).where(
        TeamThread.organization_id == organization_id, TeamThread.kind == "slack_thread")
        .order_by(TeamThread.created_at)))


async def _team_id(services: Any, session, organization_id: uuid.UUID, threads: list[TeamThread]) -> str:
    known = next((t.target.get("team_id") for t in threads if (t.target or {}).get("team_id")), None)
    if known:
        return known
    credential = await integration_credentials.load(session, services.box, organization_id, "slack")
    if not credential.token:
        raise BadRequest("Slack is not connected", "store the bot token with PUT /v1/integrations/slack first")
    try:
        async with client_of(credential, services.settings) as slack:
            return (await slack.auth_test())["team_id"]
    except (ProviderError, KeyError) as exc:
        raise BadRequest("Slack is not connected", f"auth.test failed: {exc}") from None


async def attach(services: Any, principal: Principal, workspace: Workspace, channel_id: str, thread_ts: str, *,
                 may_switch: bool) -> TeamThread:
    """Point the Slack thread at `workspace` (see the module docstring); returns the thread."""
    validate(channel_id, thread_ts)
    async with services.sessions() as session:
        threads = await _slack_threads(session, workspace.organization_id)
        thread = next((t for t in threads if t.key.endswith(f":{channel_id}:{thread_ts}")), None)
        before = _audited(thread)
        if thread is None:
            team = await _team_id(services, session, workspace.organization_id, threads)
            thread = TeamThread(organization_id=workspace.organization_id, provider="slack", kind="slack_thread",
                                key=f"slack:{team}:{channel_id}:{thread_ts}",
                                details=await _first_message(services, session, workspace.organization_id,
                                                             channel_id, thread_ts),
                                target={"channel": channel_id, "thread_ts": thread_ts, "team_id": team})
            session.add(thread)
        elif thread.workspace_id not in (None, workspace.id) and not may_switch \
                and await session.get(Workspace, thread.workspace_id) is not None:
            raise Conflict("The Slack thread is routed to another workspace",
                           "a workspace agent cannot take a thread over; switch it with an API key")
        thread.workspace_id, thread.environment_id = workspace.id, workspace.environment_id
        thread.state, thread.reply_after_seq, thread.archive_at = "open", None, None
        await session.flush()
        audit.record(session, principal, "slack_thread.attach", "slack_thread", thread.id, before=before,
                     after=_audited(thread))
        await session.commit()
        await session.refresh(thread)
        return thread


def _audited(thread: TeamThread | None) -> dict[str, Any] | None:
    if thread is None:
        return None
    target = thread.target or {}
    return {"channel_id": target.get("channel"), "thread_ts": target.get("thread_ts"),
            "slack_team_id": target.get("team_id"),
            "workspace_id": str(thread.workspace_id) if thread.workspace_id else None}


async def _first_message(services: Any, session, organization_id: uuid.UUID, channel_id: str,
                         thread_ts: str) -> dict[str, str]:
    """`original_message` and `user_id` of the thread's first message, as Slack gives them; {} when it does not
    (no `channels:history` scope, a private channel the bot is not in): the attach goes on without them."""
    credential = await integration_credentials.load(session, services.box, organization_id, "slack")
    try:
        async with client_of(credential, services.settings) as slack:
            parent = await slack.thread_parent(channel_id, thread_ts)
    except ProviderError as exc:
        log.info("slack thread %s:%s attached without its first message: %s", channel_id, thread_ts, exc)
        return {}
    if not parent:
        return {}
    return {key: value for key, value in (("original_message", parent.get("text")), ("user_id", parent.get("user")),
                                          ("message_ts", parent.get("ts"))) if value}


def thread_record(thread: TeamThread) -> dict[str, Any]:
    """The contract's SlackThreadRecord."""
    details, target = thread.details or {}, thread.target or {}
    return {"id": str(thread.id), "organization_id": str(thread.organization_id),
            "slack_team_id": target.get("team_id") or "", "channel_id": target.get("channel") or "",
            "thread_ts": target.get("thread_ts") or "",
            "workspace_id": str(thread.workspace_id) if thread.workspace_id else None, "status": thread.state,
            "metadata": {"channel_id": target.get("channel") or "", "thread_ts": target.get("thread_ts") or "",
                         "original_message": details.get("original_message") or "",
                         "user_id": details.get("user_id") or "",
                         **({"message_ts": details["message_ts"]} if details.get("message_ts") else {})},
            "last_processed_message_ts": thread.last_message_ts, "created_at": iso(thread.created_at),
            "updated_at": iso(thread.updated_at)}
