"""Warm hooks, start hooks and warm pools: request/response models and views (contract tag Environments).

Contract schemas mirrored here: WarmHookRecord / StartHookRecord, WarmHookTestResult, the Get/Save/Test
responses, WarmPoolConfigWithStats, WarmPoolWorkspaceRecord. The repository-hooks shapes and the
streaming request's `mode` are seed-only (spec §3.8) and ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from replicas.api.schemas.common import Request, iso
from replicas.repo_config import HookSpec
from replicas.services.hook_runner import HookResult
from replicas.store.models import EnvironmentHook, WarmPoolConfig, WarmPoolWorkspace

if TYPE_CHECKING:
    from replicas.services.env_hooks import RepositoryHooks

WorkspaceStatus = Literal["warming", "snapshotting", "ready", "assigned", "expired", "failed"]


class HookContentRequest(Request):
    """Save/test requests: the script. Size and blankness are checked by the service (rules differ)."""

    content: str = Field(description="Shell script content")


class StreamWarmHookTestRequest(HookContentRequest):
    mode: Literal["save_test", "test_only"] = "save_test"


class UpsertWarmPoolRequest(Request):
    enabled: bool
    target_size: int | None = Field(default=None, ge=0, le=20,
                                    description="Extension: pool size 0..20 (default 5 on creation)")


class HookRecord(BaseModel):
    id: str
    organization_id: str
    environment_id: str
    version: int
    content: str
    is_active: bool
    created_at: str


class HookTestResult(BaseModel):
    exit_code: int
    output: str
    timed_out: bool


class WarmPoolConfigWithStats(BaseModel):
    id: str
    organization_id: str
    environment_id: str
    enabled: bool
    target_size: int
    generation: int
    error_count: int
    next_retry_at: str | None
    last_error_at: str | None
    last_error_message: str | None
    has_base_snapshot: bool
    updated_at: str
    ready_count: int
    stale_count: int
    warming_count: int
    snapshotting_count: int
    last_failure_at: str | None
    last_failure_reason: str | None


class WarmPoolWorkspaceRecord(BaseModel):
    id: str
    organization_id: str
    warm_pool_config_id: str
    sandbox_id: str
    status: WorkspaceStatus
    generation: int
    error_message: str | None
    created_at: str


class GetWarmHooksResponse(BaseModel):
    warm_hook: HookRecord | None
    warm_pool: WarmPoolConfigWithStats | None


class SaveWarmHookResponse(BaseModel):
    warm_hook: HookRecord


class HookTestResponse(BaseModel):
    test: HookTestResult


class SaveAndTestWarmHookResponse(BaseModel):
    warm_hook: HookRecord
    test: HookTestResult


class GetStartHooksResponse(BaseModel):
    start_hook: HookRecord | None


class SaveStartHookResponse(BaseModel):
    start_hook: HookRecord | None


class UpsertWarmPoolConfigResponse(BaseModel):
    warm_pool: WarmPoolConfigWithStats


class ListWarmPoolWorkspacesResponse(BaseModel):
    workspaces: list[WarmPoolWorkspaceRecord]


class RepositoryHookSpec(BaseModel):
    commands: list[str]
    timeout: int = Field(description="Milliseconds; per command when `separate`, else for the whole script")
    separate: bool


class RepositoryHooksEntry(BaseModel):
    repository_id: str
    repository_name: str
    config_file: Literal["replicas.json", "replicas.yaml", "replicas.yml"] | None
    warm_hook: RepositoryHookSpec | None
    start_hook: RepositoryHookSpec | None
    error: str | None


class ListRepositoryHooksResponse(BaseModel):
    repository_hooks: list[RepositoryHooksEntry]


def hook_view(hook: EnvironmentHook | None) -> dict | None:
    if hook is None:
        return None
    return {
        "id": str(hook.id),
        "organization_id": str(hook.organization_id),
        "environment_id": str(hook.environment_id),
        "version": hook.version,
        "content": hook.content,
        "is_active": hook.is_active,
        "created_at": iso(hook.created_at),
    }


def hook_test_view(result: HookResult) -> dict:
    return {"exit_code": result.exit_code, "output": result.output, "timed_out": result.timed_out}


def pool_view(config: WarmPoolConfig | None, counts: dict[str, int] | None = None) -> dict | None:
    if config is None:
        return None
    counts = counts or {}
    return {
        "id": str(config.id),
        "organization_id": str(config.organization_id),
        "environment_id": str(config.environment_id),
        "enabled": config.enabled,
        "target_size": config.target_size,
        "generation": config.generation,
        "error_count": config.error_count,
        "next_retry_at": iso(config.next_retry_at),
        "last_error_at": iso(config.last_error_at),
        "last_error_message": config.last_error_message,
        "has_base_snapshot": config.has_base_snapshot,
        "updated_at": iso(config.updated_at),
        "ready_count": counts.get("ready_count", 0),
        "stale_count": counts.get("stale_count", 0),
        "warming_count": counts.get("warming_count", 0),
        "snapshotting_count": counts.get("snapshotting_count", 0),
        "last_failure_at": iso(config.last_failure_at),
        "last_failure_reason": config.last_failure_reason,
    }


def pool_workspace_view(row: WarmPoolWorkspace) -> dict:
    return {
        "id": str(row.id),
        "organization_id": str(row.organization_id),
        "warm_pool_config_id": str(row.warm_pool_config_id),
        "sandbox_id": row.sandbox_id,
        "status": row.status,
        "generation": row.generation,
        "error_message": row.error_message,
        "created_at": iso(row.created_at),
    }


def _spec_view(spec: HookSpec | None) -> dict | None:
    return None if spec is None else spec.as_dict()


def repository_hooks_view(entry: RepositoryHooks) -> dict:
    return {
        "repository_id": str(entry.repository_id),
        "repository_name": entry.repository_name,
        "config_file": entry.config_file,
        "warm_hook": _spec_view(entry.warm_hook),
        "start_hook": _spec_view(entry.start_hook),
        "error": entry.error,
    }
