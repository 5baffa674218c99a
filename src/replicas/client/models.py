"""The resources the SDK returns, as pydantic models of the wire JSON.

Field names are the wire's own (snake_case for the API's resources, camelCase where the contract passes an
engine payload through: previews, events, the profile). Models are tolerant: a field the server adds later
is kept (`extra="allow"`), timestamps stay ISO-8601 strings, and enums stay strings, so an older SDK reads a
newer server. `to_json()` gives back the JSON the server sent (what a script or an MCP tool prints).
"""

from __future__ import annotations

import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

T = TypeVar("T")


class Model(BaseModel):
    """A wire object: unknown fields are kept, nothing is coerced beyond the declared types."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        """The object as it came over the wire (fields it did not carry are not invented)."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


# --- repositories -----------------------------------------------------------------------------------

class Repository(Model):
    id: str
    name: str
    url: str
    default_branch: str | None = None


class RepositorySet(Model):
    id: str
    name: str
    description: str | None = None
    repositories: list[Repository] = Field(default_factory=list)


# --- replicas ---------------------------------------------------------------------------------------

class PullRequest(Model):
    repository: str
    number: int
    url: str


class Replica(Model):
    """ReplicaListItem: what a list shows and what create answers."""

    id: str
    name: str
    status: str
    source: str | None = None
    created_at: str | None = None
    last_activity_at: str | None = None
    repositories: list[Repository] = Field(default_factory=list)
    pull_requests: list[PullRequest] = Field(default_factory=list)


class GitDiff(Model):
    added: int = 0
    removed: int = 0
    full_diff: str | None = None


class RepositoryStatus(Model):
    repository: str
    branch: str = ""
    default_branch: str = ""
    pr_urls: list[str] = Field(default_factory=list)
    start_hooks_completed: bool = False
    git_diff: GitDiff | None = None


class Chat(Model):
    """ReplicaChat."""

    id: str
    provider: str
    title: str = ""
    created_at: str | None = None
    updated_at: str | None = None
    processing: bool = False


class ReplicaDetails(Replica):
    """ReplicaDetails: the list item plus the engine's view (`environment` with include=environment)."""

    coding_agent: str | None = None
    repository_statuses: list[RepositoryStatus] = Field(default_factory=list)
    waking: bool | None = None
    chats: list[Chat] = Field(default_factory=list)
    environment: dict[str, Any] | None = None


class SendResult(Model):
    """SendReplicaMessageResponse: `sent`, `queued` (with `position`) or `waking`."""

    status: str
    message_id: str | None = None
    position: int | None = None
    chat_id: str | None = None


class HistoryEvent(Model):
    """One AgentEvent of a chat's history: the agent's own event (`claude-assistant`, `event_msg`, ...)."""

    timestamp: str | None = None
    type: str
    payload: Any = None


class Sender(Model):
    senderUserId: str | None = None
    senderEmail: str | None = None
    recordedAt: str | None = None


class History(Model):
    """ReadReplicaHistoryResponse: a page of events taken from the end, oldest first inside the page."""

    thread_id: str | None = None
    events: list[HistoryEvent] = Field(default_factory=list)
    total: int = 0
    has_more: bool = False
    coding_agent: str | None = None
    waking: bool | None = None
    senders: list[Sender] = Field(default_factory=list)


class HookLogs(Model):
    logs: list[dict[str, Any]] = Field(default_factory=list)


class ReplicaHooks(Model):
    """HooksResponse: the warm and start hook logs of a replica (each entry the contract's log entry)."""

    warm_hooks: HookLogs = Field(default_factory=HookLogs)
    start_hooks: HookLogs = Field(default_factory=HookLogs)


class Event(Model):
    """One event of `/v1/replica/{id}/events` (EngineEvent): `seq` is the stream's `id:` (None for the
    snapshot sent on connect, which carries the current state rather than something that happened)."""

    id: str | None = None
    ts: str | None = None
    type: str
    payload: dict[str, Any] = Field(default_factory=dict)
    seq: int | None = Field(default=None, exclude=True)

    @classmethod
    def from_sse(cls, data: str, event_id: str | None) -> Event:
        seq = int(event_id) if event_id and event_id.isdigit() else None
        event = cls.model_validate(json.loads(data))
        event.seq = seq
        return event


# --- environments -----------------------------------------------------------------------------------

class Environment(Model):
    id: str
    name: str
    organization_id: str | None = None
    user_id: str | None = None
    description: str | None = None
    is_global: bool = False
    repository_id: str | None = None
    repository_set_id: str | None = None
    system_prompt: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class EnvironmentVariable(Model):
    id: str
    key: str
    value: str
    environment_id: str | None = None
    personal_override_allowed: bool = False
    created_at: str | None = None
    updated_at: str | None = None


class EnvironmentFile(Model):
    id: str
    name: str
    path: str
    content: str = ""
    environment_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class EnvironmentMcp(Model):
    """An MCP server written into each workspace's agent configs. `config`: stdio `{command, args, env}`,
    http/sse `{url, headers}`."""

    id: str
    name: str
    transport: str
    config: dict[str, Any] = {}
    environment_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class McpTestResult(Model):
    """Whether an MCP server answered the handshake, its tools, and why not (`error`, a stdio server's stderr)."""

    ok: bool
    transport: str
    server: dict[str, Any] | None = None
    protocol_version: str | None = None
    tools: list[str] = []
    error: str | None = None
    output: str = ""


class EnvironmentSkill(Model):
    """A skill enabled on an environment (the membership row: `id` is what a delete takes)."""

    id: str
    name: str
    slug: str
    source: str
    environment_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class SkillSearchResult(Model):
    """One hit of the skills catalog: enable it with its `name`, `slug` and `source`."""

    name: str
    slug: str
    source: str
    installs: int = 0


class HookRecord(Model):
    """WarmHookRecord / StartHookRecord: one saved version of an environment's hook script."""

    id: str
    version: int
    content: str
    is_active: bool = True
    environment_id: str | None = None
    created_at: str | None = None


class WarmPool(Model):
    """WarmPoolConfigWithStats."""

    id: str | None = None
    environment_id: str | None = None
    enabled: bool = False
    target_size: int = 0
    generation: int = 0
    ready_count: int = 0
    stale_count: int = 0
    warming_count: int = 0
    snapshotting_count: int = 0
    last_error_message: str | None = None
    last_failure_reason: str | None = None


class WarmHookState(Model):
    """GetWarmHooksResponse: the active warm hook and the pool, each None until first configured."""

    warm_hook: HookRecord | None = None
    warm_pool: WarmPool | None = None


class HookTestResult(Model):
    exit_code: int
    output: str = ""
    timed_out: bool = False


class HookTestEvent(Model):
    """One event of a streamed hook test: `progress` and `error` (`message`), `output` (`output`: a chunk),
    `complete` (`exit_code`, `timed_out`, and `warm_hook` when the run saved it)."""

    type: str
    message: str | None = None
    output: str | None = None
    exit_code: int | None = None
    timed_out: bool | None = None
    warm_hook: HookRecord | None = None


# --- automations ------------------------------------------------------------------------------------

class Automation(Model):
    id: str
    name: str
    prompt: str = ""
    environment_id: str | None = None
    enabled: bool = True
    triggers: list[dict[str, Any]] = Field(default_factory=list)
    description: str | None = None
    webhook_token: str | None = None
    cron_expression: str | None = None
    cron_timezone: str | None = None
    cron_next_fire_at: str | None = None
    user_id: str | None = None
    workspace_lifecycle_policy: str | None = None
    workspace_auto_stop_minutes: int | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Execution(Model):
    id: str
    automation_id: str
    status: str
    workspace_id: str | None = None
    triggered_at: str | None = None
    error: str | None = None
    completed_at: str | None = None


class TriggerResult(Model):
    execution_id: str
    workspace_id: str | None = None


# --- previews and the user --------------------------------------------------------------------------

class Preview(Model):
    port: int
    publicUrl: str
    authenticated: bool = False
    createdAt: str | None = None


class Profile(Model):
    userId: str | None = None
    email: str | None = None
    displayName: str | None = None
    avatarUrl: str | None = None


# --- pages ------------------------------------------------------------------------------------------

class Page(Model, Generic[T]):
    """One page of a paged list. The wire names the list after the resource (`replicas`, `automations`)
    and spells the page count `total_pages` or `totalPages`; here they are `items` and `total_pages`, and
    `to_json()` gives the wire's spelling back."""

    items: list[T]
    total: int
    page: int
    limit: int
    total_pages: int
    _wire_keys: tuple[str, str] = PrivateAttr(default=("items", "total_pages"))

    @property
    def has_next(self) -> bool:
        return self.page < self.total_pages

    @classmethod
    def parse(cls, body: dict[str, Any], key: str, item: type[T]) -> Page[T]:
        pages_key = "totalPages" if "totalPages" in body else "total_pages"
        page = Page[item].model_validate({  # type: ignore[valid-type]
            "items": body.get(key, []), "total": body.get("total", 0), "page": body.get("page", 1),
            "limit": body.get("limit", 0), "total_pages": body.get(pages_key, 0)})
        page._wire_keys = (key, pages_key)
        return page

    def to_json(self) -> dict[str, Any]:
        key, pages_key = self._wire_keys
        return {key: [item.to_json() if isinstance(item, Model) else item for item in self.items],
                "total": self.total, "page": self.page, "limit": self.limit, pages_key: self.total_pages}
