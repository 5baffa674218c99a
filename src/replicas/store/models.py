"""ORM models. Every organization-owned row carries `organization_id`, and every query filters on it.

Secret columns end in `_encrypted` and hold `crypto.SecretBox` tokens; API keys are stored as hashes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """`value` with its zone: SQLite hands stored datetimes back naive (they are UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a `Z` (None stays None)."""
    return None if value is None else aware(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


def _org() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), default=utcnow)


def _updated() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = _created()


class User(Base):
    """A member of one organization. `role` is `admin` or `member` (spec §7.7)."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("organization_id", "email"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(80))
    # The profile photo: an http(s) URL, or an uploaded image kept as a data: URI (there is no object store).
    avatar_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    role: Mapped[str] = mapped_column(String(16), default="member")
    created_at: Mapped[datetime] = _created()


class ApiKey(Base):
    """An org key (`user_id` null: acts as the org's bot, with admin rights) or a personal key."""

    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=True
    )
    name: Mapped[str] = mapped_column(String(255))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Repository(Base):
    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    name: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(Text)
    default_branch: Mapped[str] = mapped_column(String(255))
    credential_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class RepositorySet(Base):
    __tablename__ = "repository_sets"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class RepositorySetMember(Base):
    __tablename__ = "repository_set_members"
    repository_set_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("repository_sets.id", ondelete="CASCADE"), primary_key=True
    )
    repository_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)


class Environment(Base):
    """An environment. `scope_owner` is '' for team environments and the owner's user id for personal
    ones, so that one unique index enforces "name unique within scope" and the Global singleton."""

    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("organization_id", "scope_owner", "name"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    scope_owner: Mapped[str] = mapped_column(String(36), default="")
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    is_global: Mapped[bool] = mapped_column(Boolean, default=False)
    repository_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="SET NULL"), nullable=True
    )
    repository_set_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("repository_sets.id", ondelete="SET NULL"), nullable=True
    )
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    mobile_testing_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    personal_preferences: Mapped[str | None] = mapped_column(Text, nullable=True)
    source_environment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("environments.id", ondelete="RESTRICT"), nullable=True
    )
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


def _env() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)


class EnvironmentVariable(Base):
    __tablename__ = "environment_variables"
    __table_args__ = (UniqueConstraint("environment_id", "key"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    environment_id: Mapped[uuid.UUID] = _env()
    key: Mapped[str] = mapped_column(String(255))
    value_encrypted: Mapped[str] = mapped_column(Text)
    personal_override_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class EnvironmentFile(Base):
    __tablename__ = "environment_files"
    __table_args__ = (UniqueConstraint("environment_id", "path"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    environment_id: Mapped[uuid.UUID] = _env()
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1024))
    content_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class EnvironmentSkill(Base):
    __tablename__ = "environment_skills"
    __table_args__ = (
        UniqueConstraint("environment_id", "slug"),
        UniqueConstraint("environment_id", "source"),
    )
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    environment_id: Mapped[uuid.UUID] = _env()
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class EnvironmentSkillsRegistry(Base):
    __tablename__ = "environment_skills_registries"
    __table_args__ = (UniqueConstraint("environment_id", "url"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    environment_id: Mapped[uuid.UUID] = _env()
    name: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(String(1024))
    repository_full_name: Mapped[str] = mapped_column(String(512))
    default_branch: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class EnvironmentMcp(Base):
    """`config_encrypted` holds the JSON config, encrypted: stdio `env` and http `headers` carry tokens."""

    __tablename__ = "environment_mcps"
    __table_args__ = (UniqueConstraint("environment_id", "name"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    environment_id: Mapped[uuid.UUID] = _env()
    name: Mapped[str] = mapped_column(String(64))
    transport: Mapped[str] = mapped_column(String(16))
    config_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class EnvironmentHook(Base):
    """A version of an environment's warm (`kind='warm'`) or start (`kind='start'`) hook script."""

    __tablename__ = "environment_hooks"
    __table_args__ = (UniqueConstraint("environment_id", "kind", "version"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    environment_id: Mapped[uuid.UUID] = _env()
    kind: Mapped[str] = mapped_column(String(8))
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = _created()


class WarmPoolConfig(Base):
    __tablename__ = "warm_pool_configs"
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    environment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), unique=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    target_size: Mapped[int] = mapped_column(Integer, default=5)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    next_retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    has_base_snapshot: Mapped[bool] = mapped_column(Boolean, default=False)
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = _updated()


class WarmPoolWorkspace(Base):
    __tablename__ = "warm_pool_workspaces"
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    warm_pool_config_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("warm_pool_configs.id", ondelete="CASCADE"), index=True
    )
    sandbox_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The warm-up's live output (warm hooks, capped): what the stream endpoint sends as `output` events.
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _created()


class BaseSnapshot(Base):
    """An environment's warmed state for one pool generation (services/base_snapshots.py): checkouts plus warm
    hooks, built once in a workspace disk of the runtime (`runtime_state`, never started) that new workspaces
    of that generation then start from, copy-on-write. `environment_id` has no foreign key: a deleted
    environment's snapshot is found by the collector and its disk destroyed."""

    __tablename__ = "base_snapshots"
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    environment_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    generation: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # building | ready | failed
    runtime_state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    warm_hook_logs: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    repo_heads: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _created()


class Automation(Base):
    """An automation bound to one environment (spec §3.9, §6). Environments refuse deletion while one
    references them.

    `triggers` is the contract's AutomationTrigger list, validated and normalised by
    `services/automation_triggers.py`; `cron_*` are derived from its cron trigger. `cron_next_fire_at` is
    the next slot (UTC): a scheduler claims a slot with one conditional UPDATE on it. The custom-webhook
    token is stored twice: hashed (`webhook_token_hash`, the lookup, so an unknown token costs the same
    as a known one) and encrypted (`webhook_token_encrypted`, shown on the record). `user_id` is the
    owner of a personal automation (NULL: org-owned). The circuit breaker counts `consecutive_failures`
    and records why it disabled the automation in `disabled_reason`."""

    __tablename__ = "automations"
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    environment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("environments.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    prompt: Mapped[str] = mapped_column(Text, default="")
    triggers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    debounce_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    webhook_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    webhook_token_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    cron_expression: Mapped[str | None] = mapped_column(String(255), nullable=True)
    cron_timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cron_next_fire_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True,
                                                               index=True)
    workspace_lifecycle_policy: Mapped[str] = mapped_column(String(32), default="default",
                                                            server_default="default")
    workspace_auto_stop_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    workspace_size: Mapped[str | None] = mapped_column(String(16), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    agent_provider: Mapped[str | None] = mapped_column(String(16), nullable=True)
    model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    thinking_level: Mapped[str | None] = mapped_column(String(16), nullable=True)
    plan_mode: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    goal_mode: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    fast_mode: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class AutomationExecution(Base):
    """One firing of an automation (spec §6): `pending -> creating -> running -> completed | failed`.

    `delivery_id` (the provider's delivery or request id) is unique per automation, so a redelivered
    event finds its execution instead of firing again (NULLs never collide). `fire_at` is when a pending
    execution may be started by the reconciler: the end of the debounce window, or a recovery deadline
    for one whose firing process stopped. `prompt` is the message the workspace was (or will be) given;
    `config` the WorkspaceConfig snapshot; `workspace_id` has no foreign key, so the history outlives
    the workspace."""

    __tablename__ = "automation_executions"
    __table_args__ = (
        UniqueConstraint("automation_id", "delivery_id"),
        Index("ix_automation_executions_status_fire_at", "status", "fire_at"),
        Index("ix_automation_executions_automation_triggered", "automation_id", "triggered_at"),
    )
    id: Mapped[uuid.UUID] = _id()
    automation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("automations.id", ondelete="CASCADE"))
    organization_id: Mapped[uuid.UUID] = _org()
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    triggered_at: Mapped[datetime] = _created()
    trigger_type: Mapped[str] = mapped_column(String(32))
    trigger_payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    delivery_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    prompt: Mapped[str] = mapped_column(Text, default="")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    fire_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = _updated()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEvent(Base):
    """One configuration change: who, what, when, and a redacted before/after (spec §7.7)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_org_time", "organization_id", "created_at"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = _created()
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    action: Mapped[str] = mapped_column(String(128))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Workspace(Base):
    """A workspace (a replica): its environment, status, and the runtime backend's persisted handle.

    `runtime_state` is the backend's small JSON handle (`Runtime.get_state`), so that a restarted
    control plane reattaches to workspaces that kept running. `last_event_seq` is the highest engine
    journal sequence the control plane has stored."""

    __tablename__ = "workspaces"
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("environments.id", ondelete="SET NULL"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="preparing")
    size: Mapped[str] = mapped_column(String(16), default="small")
    source: Mapped[str] = mapped_column(String(32), default="api")
    runtime: Mapped[str] = mapped_column(String(32), default="local")
    runtime_state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    engine_secret_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    default_chat_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    last_activity_at: Mapped[datetime] = _created()
    # The Replica API's record (issue 4). `config` is the contract's WorkspaceConfig; `repositories` the
    # bound repositories at creation ({id, name, url}); `pull_requests` the contract's list.
    coding_agent: Mapped[str] = mapped_column(String(16), default="claude")
    model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lifecycle_policy: Mapped[str] = mapped_column(String(32), default="default")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    repositories: Mapped[list[Any]] = mapped_column(JSON, default=list)
    pull_requests: Mapped[list[Any]] = mapped_column(JSON, default=list)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What the engine last reported, projected from stored events in the same transaction:
    # {"chats": [EngineChatSummary], "deleted_chats": [...], "repos": [EngineRepoState],
    #  "hooks": {running, completed}, "status": EngineStatusSnapshot, "turns_completed": n}.
    # Reads of a sleeping workspace are served from here.
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Messages accepted while the engine is not up (preparing, waking): delivered once it is.
    pending_messages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status_changed_at: Mapped[datetime] = _created()
    # An SSE client keeps the workspace awake: each attached stream pushes this forward as it pings.
    attached_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ready_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    # Minutes of inactivity before the lifecycle reaper stops this workspace (sleep, or delete under
    # `delete_after_inactivity`); NULL: the server's timers. Set from an automation's
    # `workspace_auto_stop_minutes`.
    auto_stop_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ReplicaTombstone(Base):
    """A replica deleted, kept a day so that a status stream resuming after it (`Last-Event-ID`) still reports
    the deletion: the workspace row itself is gone. Written in the deleting transaction
    (services/replica_status_feed.py), pruned there too."""

    __tablename__ = "replica_tombstones"
    replica_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org()
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ProviderCredential(Base):
    """An agent provider's API key (e.g. `opencode-go`), for the organization (`user_id` null) or one user.

    NULL `user_id`s never collide in the unique index, so the service keeps the org-scope row a
    singleton itself (select, then update or insert)."""

    __tablename__ = "provider_credentials"
    __table_args__ = (UniqueConstraint("organization_id", "user_id", "provider"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    last_fetched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WorkspaceEvent(Base):
    """One engine journal event, stored by the control plane before it is fanned out (principle 3).

    `seq` is the engine's journal sequence number, unique per workspace; `payload` is the envelope's
    payload as the engine sent it."""

    __tablename__ = "workspace_events"
    __table_args__ = (
        UniqueConstraint("workspace_id", "seq"),
        Index("ix_workspace_events_workspace_seq", "workspace_id", "seq"),
        Index("ix_workspace_events_history", "workspace_id", "chat_id", "type", "seq"),
    )
    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    ts: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The chat an event is about (`payload.chatId`), so history pages are an indexed query.
    chat_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = _created()


class WebhookDelivery(Base):
    """One outbound webhook POST in the durable outbox (spec §4.3, §10 #1-#2).

    `body` holds the exact bytes (UTF-8 JSON) that are signed and sent on every attempt. A dispatcher
    claims a pending row by setting `lease_owner`/`lease_expires_at` (principle 2: a lease in the
    database, never an in-memory lock). `status` is `pending`, `delivered` or `failed`."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status_next_attempt", "status", "next_attempt_at"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    secret_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = _created()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Preview(Base):
    """A public URL for one port of a workspace (spec §3.7). `token` is the unguessable part of the URL;
    an `authenticated` preview also needs an API key of the workspace's organization."""

    __tablename__ = "previews"
    __table_args__ = (UniqueConstraint("workspace_id", "port"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    port: Mapped[int] = mapped_column(Integer)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    authenticated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()


class UsageSession(Base):
    """One stretch of a workspace being awake (active), for metering (spec §7.6, §10 #33).

    Opened when the workspace becomes active, closed when it sleeps, is archived, fails or is deleted.
    Kept after the workspace is deleted (no foreign key), with its name, size and source copied."""

    __tablename__ = "usage_sessions"
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    workspace_name: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    size: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = _created()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Lease(Base):
    """A named lease for singleton work across control-plane processes (principle 2): the lifecycle
    reaper, and one event pump per workspace. A holder renews it; anyone may take it once expired."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IntegrationSecret(Base):
    """An inbound integration's verification secret for one organization, stored encrypted: the GitHub
    webhook secret, GitLab secret token, Slack signing secret, Sentry client secret or Linear webhook
    secret (`provider`). The webhook receivers verify each delivery with it (services/integrations.py)."""

    __tablename__ = "integration_secrets"
    __table_args__ = (UniqueConstraint("organization_id", "provider"),)
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    provider: Mapped[str] = mapped_column(String(16))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class DashboardSession(Base):
    """A browser's signed-in session (the dashboard's cookie), made by exchanging an API key. Only the
    SHA-256 of the cookie's token is kept; the session acts as the key that signed in (same organization,
    same user, same role) and ends with it: deleting the key deletes its sessions."""

    __tablename__ = "dashboard_sessions"
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = _org()
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
