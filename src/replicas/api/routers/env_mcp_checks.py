"""The Test of an environment's MCP server (our addition): does it answer the MCP handshake, with which tools?

    POST /v1/environments/{environmentId}/mcps/{mcpId}/test          -> {test: {ok, transport, server, ...}}
    POST /v1/environments/{environmentId}/mcps/{mcpId}/test/stream   -> SSE: progress, output, complete
    POST /v1/environments/{environmentId}/mcps/test[/stream]          {name?, transport, config}: the same for a
         server not saved (the add/edit form's Test), its config checked as a create checks it

A stdio server runs in a throwaway sandbox of its environment, as the warm-hook test's script does; an http or
sse server is reached through the outbound policy (services/mcp_checks.py). Nothing is stored.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from replicas.api.deps import BoxDep, PrincipalDep, SessionDep, SettingsDep
from replicas.api.schemas.common import ERROR_RESPONSES
from replicas.api.schemas.mcp_checks import McpDraftTestRequest, McpTestResponse
from replicas.api.sse import event_stream
from replicas.services import mcp_checks
from replicas.services.env_hooks import HookSandbox

router = APIRouter(prefix="/v1/environments/{environmentId}/mcps", tags=["Environments"],
                   responses=ERROR_RESPONSES)

EnvRef = Annotated[str, Path(alias="environmentId", description="Environment UUID, or `global`")]
McpId = Annotated[str, Path(alias="mcpId", description="Environment MCP UUID")]
SSE_RESPONSE = {200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}}


def _sandbox(request: Request, settings, box) -> HookSandbox:
    return HookSandbox(runtime=request.app.state.replicas.manager.runtime, settings=settings, box=box)


async def _frames(events):
    async for event in events:
        if event.type == "output":
            yield "output", {"output": event.output}
        elif event.type == "complete":
            yield "complete", event.result
        else:
            yield event.type, {"message": event.message}


async def _answer(check: mcp_checks.McpCheck) -> dict:
    output, result = [], {}
    async for event in mcp_checks.run_check(check):
        if event.type == "output":
            output.append(event.output)
        elif event.type == "complete":
            result = event.result
    return {"test": {**result, "output": "".join(output)}}


@router.post("/test", response_model=McpTestResponse)
async def test_mcp_draft(env_ref: EnvRef, body: McpDraftTestRequest, request: Request, session: SessionDep,
                         principal: PrincipalDep, settings: SettingsDep, box: BoxDep):
    """Checks a server that is not saved (nothing is stored); `output` holds a stdio server's stderr."""
    check = await mcp_checks.prepare_draft_check(session, principal, _sandbox(request, settings, box), env_ref,
                                                 transport=body.transport, config=body.config, name=body.name)
    return await _answer(check)


@router.post("/test/stream", responses=SSE_RESPONSE)
async def stream_test_mcp_draft(env_ref: EnvRef, body: McpDraftTestRequest, request: Request, session: SessionDep,
                                principal: PrincipalDep, settings: SettingsDep, box: BoxDep):
    """The check of a server not saved, streamed: `progress` and `output` events, then `complete`."""
    check = await mcp_checks.prepare_draft_check(session, principal, _sandbox(request, settings, box), env_ref,
                                                 transport=body.transport, config=body.config, name=body.name)
    return event_stream(_frames(mcp_checks.run_check(check)))


@router.post("/{mcpId}/test", response_model=McpTestResponse)
async def test_mcp(env_ref: EnvRef, mcp_id: McpId, request: Request, session: SessionDep,
                   principal: PrincipalDep, settings: SettingsDep, box: BoxDep):
    """Checks that the server answers; `output` holds a stdio server's stderr."""
    check = await mcp_checks.prepare_check(session, principal, _sandbox(request, settings, box), env_ref, mcp_id)
    return await _answer(check)


@router.post("/{mcpId}/test/stream", responses=SSE_RESPONSE)
async def stream_test_mcp(env_ref: EnvRef, mcp_id: McpId, request: Request, session: SessionDep,
                          principal: PrincipalDep, settings: SettingsDep, box: BoxDep):
    """The same check, streamed: `progress` and `output` events while it runs, then `complete`."""
    check = await mcp_checks.prepare_check(session, principal, _sandbox(request, settings, box), env_ref, mcp_id)
    return event_stream(_frames(mcp_checks.run_check(check)))
