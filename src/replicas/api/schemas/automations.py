"""Automation request bodies and wire views (contract tag Automation). Trigger configs are validated by
`services/automation_triggers.py`, so `triggers` is taken as plain JSON here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from replicas.api.pagination import Page
from replicas.api.schemas.common import Request, iso, sid
from replicas.api.schemas.replicas import AnyAgent, ThinkingLevel
from replicas.crypto import SecretBox
from replicas.services.automations import webhook_token
from replicas.store.models import Automation, AutomationExecution

# `delete_when_done` is the older docs' value (spec §7.3): accepted, stored as `archive_when_done`.
WorkspacePolicy = Literal["default", "archive_when_done", "sleep_when_done", "delete_after_inactivity",
                          "delete_when_done"]
TriggerType = Literal["all", "cron", "github", "gitlab", "slack", "sentry", "custom", "linear"]


class _AutomationFields(Request):
    description: str | None = None
    prompt: str | None = Field(default=None, min_length=1)
    debounce_seconds: int | None = Field(default=None, ge=0, le=86400)
    enabled: bool | None = None
    workspace_lifecycle_policy: WorkspacePolicy | None = None
    workspace_auto_stop_minutes: int | None = Field(default=None, ge=3, le=1440)
    workspace_size: Literal["small", "large"] | None = None
    config: dict[str, Any] | None = None
    agent_provider: AnyAgent | None = None
    model: str | None = None
    thinking_level: ThinkingLevel | None = None
    plan_mode: bool | None = None
    goal_mode: bool | None = None
    fast_mode: bool | None = None


class CreateAutomationRequest(_AutomationFields):
    name: str = Field(min_length=1, max_length=255)
    scope: Literal["org", "user"] = "org"
    triggers: list[Any] = Field(min_length=1)
    prompt: str = Field(min_length=1)
    environment_id: str = Field(min_length=1)


class UpdateAutomationRequest(_AutomationFields):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    triggers: list[Any] | None = Field(default=None, min_length=1)
    environment_id: str | None = None


class PullRequestRef(Request):
    repository_id: str = Field(min_length=1)
    number: int = Field(ge=1)


class TriggerAutomationRequest(Request):
    payload: dict[str, Any] | None = None
    pr: PullRequestRef | None = None


def automation_view(row: Automation, box: SecretBox) -> dict[str, Any]:
    """AutomationRecord (every field required by the contract, nullable ones as null)."""
    return {
        "id": str(row.id), "organization_id": str(row.organization_id), "name": row.name,
        "description": row.description, "triggers": row.triggers or [], "prompt": row.prompt,
        "debounce_seconds": row.debounce_seconds, "environment_id": str(row.environment_id),
        "enabled": row.enabled, "webhook_token": webhook_token(box, row),
        "cron_expression": row.cron_expression, "cron_timezone": row.cron_timezone,
        "cron_next_fire_at": iso(row.cron_next_fire_at), "user_id": sid(row.user_id),
        "created_by": sid(row.created_by), "workspace_lifecycle_policy": row.workspace_lifecycle_policy,
        "workspace_auto_stop_minutes": row.workspace_auto_stop_minutes, "workspace_size": row.workspace_size,
        "config": row.config or {}, "agent_provider": row.agent_provider, "model": row.model,
        "thinking_level": row.thinking_level, "plan_mode": bool(row.plan_mode), "goal_mode": row.goal_mode,
        "fast_mode": row.fast_mode, "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
        # Ours (the contract allows extra fields): why the circuit breaker disabled it, and its count.
        "disabled_reason": row.disabled_reason, "consecutive_failures": row.consecutive_failures or 0,
    }


def execution_view(row: AutomationExecution) -> dict[str, Any]:
    """AutomationExecutionRecord, plus our `trigger_type`."""
    return {
        "id": str(row.id), "automation_id": str(row.automation_id), "organization_id": str(row.organization_id),
        "workspace_id": sid(row.workspace_id), "triggered_at": iso(row.triggered_at),
        "trigger_payload": row.trigger_payload or {}, "status": row.status, "config": row.config or {},
        "error": row.error, "completed_at": iso(row.completed_at), "trigger_type": row.trigger_type,
    }


def page_of(key: str, items: list[dict[str, Any]], total: int, paging: Page) -> dict[str, Any]:
    """The contract's paged list; `totalPages` is camelCase here (spec §2.5)."""
    return {key: items, "total": total, "page": paging.page, "limit": paging.limit,
            "totalPages": paging.total_pages(total)}
