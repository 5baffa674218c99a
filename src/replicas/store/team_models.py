"""The store of the agent in the team's loop (services/team_loop.py): the providers' outbound credentials, the
threads (issues, pull requests, Slack threads, Linear issues) that lead to a workspace, and the messages routed
through them.

Kept apart from models.py (same `Base`, same metadata): these tables belong to one feature and nothing else
reads them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from replicas.store.models import Base, _created, _id, _org, _updated


class IntegrationCredential(Base):
    """What the server needs to answer a provider: the API token (encrypted; a GitHub App installation or
    personal token, a GitLab token, the Slack bot token, a Linear API key), a GitHub App's private key (encrypted)
    and the loop's options (`api_url`, `allowed_logins`, `bot_login`, `bot_user_id`, `default_environment_id`,
    `app_id`, `installation_id`). The inbound
    signing secret stays in `integration_secrets`."""

    __tablename__ = "integration_credentials"
    __table_args__ = (UniqueConstraint("organization_id", "provider"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    provider: Mapped[str] = mapped_column(String(16))
    token_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    private_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)  # a GitHub App's
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class TeamThread(Base):
    """A place where the team talks to a workspace: a GitHub issue or pull request, a GitLab issue or merge
    request, a Slack thread, a Linear issue. `key` names it (`github:acme/shop#12`, `slack:T1:C1:1712.0001`),
    `target` is where answers go (provider-specific), `details` what was learnt on the way (title, URL, head
    branch, the ids of the comments the server posted there).

    `reply_after_seq`: a message went to the workspace when its journal was at this seq; the turn that
    answers it is posted back here, then it is cleared. `archive_at`: a pull request closed, and the
    workspace is archived then unless a tracked pull request is open again."""

    __tablename__ = "team_threads"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    provider: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(24))
    key: Mapped[str] = mapped_column(String(300))
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL"), nullable=True, index=True)
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("environments.id", ondelete="SET NULL"), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="open")
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_message_ts: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reply_after_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    archive_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class TeamMessage(Base):
    """One thing a delivery asked of a workspace (a mention, a review comment, a failed job, a conflict), or
    a delivery acted on otherwise (recorded so that a redelivery does nothing). `dedupe_key` is the
    provider's delivery id, or what identifies the thing itself where two deliveries report it (a job that
    both a check run and a workflow run report). `pending` ones are sent, together per thread, once the
    thread's latest one is due."""

    __tablename__ = "team_messages"
    __table_args__ = (UniqueConstraint("organization_id", "dedupe_key"),
                      Index("ix_team_messages_status_due", "status", "due_at"))
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    dedupe_key: Mapped[str] = mapped_column(String(300))
    thread_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("team_threads.id", ondelete="CASCADE"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(24))
    text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    due_at: Mapped[datetime] = _created()
    created_at: Mapped[datetime] = _created()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
