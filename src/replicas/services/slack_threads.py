"""Routing a Slack thread to a workspace (`POST /v1/slack/threads/attach`, spec §3.10, §6.1): the thread's later
replies go to that workspace as follow-ups, and its answers are posted back in the thread (team_loop.py).

    thread = await attach(services, workspace, "C123ABC456", "1712000001.000100")

The thread is the team loop's own record (`team_threads`, key `slack:<team>:<channel>:<thread_ts>`): an existing
one is re-pointed (switching a thread to another workspace), a new one is created. Its Slack team is the existing
thread's, else that of the organization's other Slack threads, else what Slack's `auth.test` says of the stored
bot token; with none of these it is a 400 (Slack is not connected).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select

from replicas.errors import BadRequest
from replicas.services import integration_credentials
from replicas.services.providers import ProviderError, client_for
from replicas.store.models import Workspace, iso
from replicas.store.team_models import TeamThread

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
        async with client_for("slack", credential.token, credential.api_url, services.settings) as slack:
            return (await slack.auth_test())["team_id"]
    except (ProviderError, KeyError) as exc:
        raise BadRequest("Slack is not connected", f"auth.test failed: {exc}") from None


async def attach(services: Any, workspace: Workspace, channel_id: str, thread_ts: str) -> TeamThread:
    """Point the Slack thread at `workspace` (see the module docstring); returns the thread."""
    validate(channel_id, thread_ts)
    async with services.sessions() as session:
        threads = await _slack_threads(session, workspace.organization_id)
        thread = next((t for t in threads if t.key.endswith(f":{channel_id}:{thread_ts}")), None)
        if thread is None:
            team = await _team_id(services, session, workspace.organization_id, threads)
            thread = TeamThread(organization_id=workspace.organization_id, provider="slack", kind="slack_thread",
                                key=f"slack:{team}:{channel_id}:{thread_ts}", details={},
                                target={"channel": channel_id, "thread_ts": thread_ts, "team_id": team})
            session.add(thread)
        thread.workspace_id, thread.environment_id = workspace.id, workspace.environment_id
        thread.state, thread.reply_after_seq, thread.archive_at = "open", None, None
        await session.commit()
        await session.refresh(thread)
        return thread


def thread_record(thread: TeamThread) -> dict[str, Any]:
    """The contract's SlackThreadRecord."""
    details, target = thread.details or {}, thread.target or {}
    return {"id": str(thread.id), "organization_id": str(thread.organization_id),
            "slack_team_id": target.get("team_id") or "", "channel_id": target.get("channel") or "",
            "thread_ts": target.get("thread_ts") or "",
            "workspace_id": str(thread.workspace_id) if thread.workspace_id else None, "status": thread.state,
            "metadata": {"channel_id": target.get("channel") or "", "thread_ts": target.get("thread_ts") or "",
                         "original_message": details.get("original_message") or "",
                         "user_id": details.get("user_id") or ""},
            "last_processed_message_ts": thread.last_message_ts, "created_at": iso(thread.created_at),
            "updated_at": iso(thread.updated_at)}
