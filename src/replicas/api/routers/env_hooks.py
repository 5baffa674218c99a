"""Warm hooks, start hooks and warm pools (contract tag Environments).

    /v1/environments/{environmentId}/warm-hooks[/save|/test|/save-test|/save-test/stream|/repository-hooks]
    /v1/environments/{environmentId}/start-hooks[/save|/test|/test/stream]
    /v1/environments/{environmentId}/warm-pools
    /v1/warm-pools/{configId}/workspaces
    /v1/warm-pool-workspaces/{workspaceId}/stream

`save-test/stream` and `repository-hooks` are seed-only endpoints (not in the contract).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from replicas.api.deps import BoxDep, PrincipalDep, SessionDep, SettingsDep
from replicas.api.schemas.common import ERROR_RESPONSES
from replicas.api.schemas.hooks import (
    GetStartHooksResponse,
    GetWarmHooksResponse,
    HookContentRequest,
    HookTestResponse,
    ListRepositoryHooksResponse,
    ListWarmPoolWorkspacesResponse,
    SaveAndTestWarmHookResponse,
    SaveStartHookResponse,
    SaveWarmHookResponse,
    StreamWarmHookTestRequest,
    UpsertWarmPoolConfigResponse,
    UpsertWarmPoolRequest,
    hook_test_view,
    hook_view,
    pool_view,
    pool_workspace_view,
    repository_hooks_view,
)
from replicas.api.sse import event_stream
from replicas.services import env_hooks as service
from replicas.services import warm_pools
from replicas.services.env_hooks import START, WARM, HookSandbox, HookTestEvent

router = APIRouter(tags=["Environments"], responses=ERROR_RESPONSES)

ENV = "/v1/environments/{environmentId}"
EnvRef = Annotated[str, Path(alias="environmentId", description="Environment UUID, or `global`")]
SSE_RESPONSE = {200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}}


def _test_frame(event: HookTestEvent, kind: str) -> tuple[str, dict]:
    if event.type == "output":
        return "output", {"output": event.output}
    if event.type == "complete":
        assert event.result is not None
        data = {"exit_code": event.result.exit_code, "timed_out": event.result.timed_out}
        if kind == WARM:
            data["warm_hook"] = hook_view(event.hook)
        return "complete", data
    return event.type, {"message": event.message}


def _sandbox(request: Request, settings, box) -> HookSandbox:
    """Test runs provision a throwaway workspace on the runtime the replicas' workspaces use."""
    return HookSandbox(runtime=request.app.state.replicas.manager.runtime, settings=settings, box=box)


async def _test_frames(events, kind: str):
    async for event in events:
        yield _test_frame(event, kind)


# --- warm hooks -------------------------------------------------------------------------------------

@router.get(f"{ENV}/warm-hooks", response_model=GetWarmHooksResponse)
async def get_warm_hooks(env_ref: EnvRef, session: SessionDep, principal: PrincipalDep):
    hook, config, counts = await service.warm_hook_state(session, principal, env_ref)
    return {"warm_hook": hook_view(hook), "warm_pool": pool_view(config, counts)}


@router.post(f"{ENV}/warm-hooks/save", status_code=201, response_model=SaveWarmHookResponse)
async def save_warm_hook(env_ref: EnvRef, body: HookContentRequest, session: SessionDep,
                         principal: PrincipalDep):
    hook = await service.save_hook(session, principal, env_ref, WARM, body.content)
    return {"warm_hook": hook_view(hook)}


@router.post(f"{ENV}/warm-hooks/test", response_model=HookTestResponse)
async def test_warm_hook(env_ref: EnvRef, body: HookContentRequest, request: Request, session: SessionDep,
                         principal: PrincipalDep, settings: SettingsDep, box: BoxDep):
    result = await service.test_hook(session, principal, _sandbox(request, settings, box), env_ref, WARM,
                                     body.content)
    return {"test": hook_test_view(result)}


@router.post(f"{ENV}/warm-hooks/save-test", status_code=201, response_model=SaveAndTestWarmHookResponse)
async def save_and_test_warm_hook(env_ref: EnvRef, body: HookContentRequest, request: Request,
                                  session: SessionDep, principal: PrincipalDep, settings: SettingsDep, box: BoxDep):
    hook, result = await service.save_and_test_hook(session, principal, _sandbox(request, settings, box), env_ref,
                                                    WARM, body.content)
    return {"warm_hook": hook_view(hook), "test": hook_test_view(result)}


@router.post(f"{ENV}/warm-hooks/save-test/stream", responses=SSE_RESPONSE)
async def stream_save_and_test_warm_hook(env_ref: EnvRef, body: StreamWarmHookTestRequest, request: Request,
                                         session: SessionDep, principal: PrincipalDep, settings: SettingsDep,
                                         box: BoxDep):
    persist = body.mode == "save_test"
    env_id, run = await service.prepare_stream(session, principal, _sandbox(request, settings, box), env_ref,
                                               WARM, body.content, persist=persist)
    events = service.stream_test(request.app.state.sessions, principal, env_id, run, WARM, body.content,
                                 persist=persist)
    return event_stream(_test_frames(events, WARM))


@router.get(f"{ENV}/warm-hooks/repository-hooks", response_model=ListRepositoryHooksResponse)
async def get_repository_hooks(env_ref: EnvRef, session: SessionDep, principal: PrincipalDep, box: BoxDep,
                               settings: SettingsDep):
    entries = await service.repository_hooks(session, principal, box, settings, env_ref)
    return {"repository_hooks": [repository_hooks_view(entry) for entry in entries]}


# --- start hooks ------------------------------------------------------------------------------------

@router.get(f"{ENV}/start-hooks", response_model=GetStartHooksResponse)
async def get_start_hooks(env_ref: EnvRef, session: SessionDep, principal: PrincipalDep):
    _env, hook = await service.get_active_hook(session, principal, env_ref, START)
    return {"start_hook": hook_view(hook)}


@router.post(f"{ENV}/start-hooks/save", status_code=201, response_model=SaveStartHookResponse)
async def save_start_hook(env_ref: EnvRef, body: HookContentRequest, session: SessionDep,
                          principal: PrincipalDep):
    hook = await service.save_hook(session, principal, env_ref, START, body.content)
    return {"start_hook": hook_view(hook)}


@router.post(f"{ENV}/start-hooks/test", response_model=HookTestResponse)
async def test_start_hook(env_ref: EnvRef, body: HookContentRequest, request: Request, session: SessionDep,
                          principal: PrincipalDep, settings: SettingsDep, box: BoxDep):
    result = await service.test_hook(session, principal, _sandbox(request, settings, box), env_ref, START,
                                     body.content)
    return {"test": hook_test_view(result)}


@router.post(f"{ENV}/start-hooks/test/stream", responses=SSE_RESPONSE)
async def stream_test_start_hook(env_ref: EnvRef, body: HookContentRequest, request: Request,
                                 session: SessionDep, principal: PrincipalDep, settings: SettingsDep, box: BoxDep):
    env_id, run = await service.prepare_stream(session, principal, _sandbox(request, settings, box), env_ref,
                                               START, body.content, persist=False)
    events = service.stream_test(request.app.state.sessions, principal, env_id, run, START, body.content,
                                 persist=False)
    return event_stream(_test_frames(events, START))


# --- warm pools -------------------------------------------------------------------------------------

@router.put(f"{ENV}/warm-pools", response_model=UpsertWarmPoolConfigResponse)
async def upsert_warm_pool(env_ref: EnvRef, body: UpsertWarmPoolRequest, session: SessionDep,
                           principal: PrincipalDep):
    config = await warm_pools.upsert_config(session, principal, env_ref, body.enabled, body.target_size)
    return {"warm_pool": pool_view(config, await warm_pools.pool_counts(session, config))}


@router.get("/v1/warm-pools/{configId}/workspaces", response_model=ListWarmPoolWorkspacesResponse,
            responses={404: ERROR_RESPONSES[404]})
async def list_warm_pool_workspaces(config_id: Annotated[str, Path(alias="configId")], session: SessionDep,
                                    principal: PrincipalDep):
    rows = await warm_pools.list_workspaces(session, principal, config_id)
    return {"workspaces": [pool_workspace_view(row) for row in rows]}


async def _workspace_frames(events):
    async for event in events:
        if event.type == "error":
            yield "error", {"message": event.message}
        elif event.type == "output":
            yield "output", {"output": event.text}
        else:
            row = event.workspace
            yield event.type, {"status": row.status, "workspace": pool_workspace_view(row)}


@router.get("/v1/warm-pool-workspaces/{workspaceId}/stream", responses=SSE_RESPONSE)
async def stream_warm_pool_workspace(workspace_id: Annotated[str, Path(alias="workspaceId")],
                                     request: Request, session: SessionDep, principal: PrincipalDep):
    workspace = await warm_pools.get_workspace(session, principal, workspace_id)
    # The stream polls with sessions of its own; give this one's connection back while it runs.
    await session.close()
    events = warm_pools.watch_workspace(request.app.state.sessions, principal, workspace)
    return event_stream(_workspace_frames(events))
