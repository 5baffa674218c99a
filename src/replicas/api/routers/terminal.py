"""Terminal sessions (contract tag Terminal; spec §3.6): /v1/workspaces/{workspaceId}/terminal/sessions/...

    GET    .../terminal/sessions                    {sessions}
    POST   .../terminal/sessions                    {cols, rows} -> 201 {session}; 429 past eight sessions
    POST   .../terminal/sessions/{sessionId}/input  {data, generation, sequence} -> {success: true}; 400 stale
    POST   .../terminal/sessions/{sessionId}/resize {cols, rows} -> {success: true}
    DELETE .../terminal/sessions/{sessionId}        {success: true}
    GET    .../terminal/sessions/{sessionId}/stream text/event-stream, relayed from the engine

The shells run in the workspace's engine (`replicas.engine.terminal`, whose docstring describes the input
ordering and the stream's events); this router authorizes and relays. Only creating a session wakes a
sleeping workspace: a sleeping workspace has no sessions, so listing them answers an empty list and the
other operations 404, without waking it.
"""

from __future__ import annotations

import contextlib
import time
from typing import Annotated

import anyio
import httpx
from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import Field

from replicas.api.deps import PrincipalDep
from replicas.api.routers.replicas import ReplicasDep
from replicas.api.schemas.common import ERROR_RESPONSES
from replicas.api.schemas.common import Request as RequestBody
from replicas.errors import NotFound, ServiceUnavailable
from replicas.services.replicas import ReplicaService
from replicas.services.workspaces import engine_refusal
from replicas.store.models import Workspace

router = APIRouter(prefix="/v1/workspaces", tags=["Terminal"], responses=ERROR_RESPONSES)

SESSIONS = "/{workspace_id}/terminal/sessions"
ENGINE_SESSIONS = "/terminal/sessions"
_TOUCH_SECONDS = 30.0  # input records workspace activity at most this often (not on every keystroke)
_touched: dict[str, float] = {}

Cols = Annotated[int, Field(strict=True, ge=2, le=500, description="Columns (2-500)")]
Rows = Annotated[int, Field(strict=True, ge=1, le=200, description="Rows (1-200)")]


class TerminalSizeRequest(RequestBody):
    cols: Cols
    rows: Rows


class WriteTerminalRequest(RequestBody):
    nul_allowed = True  # Ctrl-@ is a keystroke, and the input goes to the shell, never to the store

    data: str = Field(max_length=65536, description="Input, at most 65536 characters")
    generation: int = Field(strict=True, ge=0, description="Client generation used to reset input ordering")
    sequence: int = Field(strict=True, ge=0, description="Zero-based batch sequence within the generation")


async def _active(replicas: ReplicaService, principal, workspace_id: str) -> Workspace:
    """The workspace, which must be active to hold terminal sessions (no wake: a sleeping one has none)."""
    row = await replicas.get_workspace(principal, workspace_id)
    if row.status != "active":
        raise NotFound("Terminal session not found", f"the workspace is {row.status}")
    return row


async def _touch(replicas: ReplicaService, row: Workspace) -> None:
    now = time.monotonic()
    if now - _touched.get(str(row.id), 0.0) >= _TOUCH_SECONDS:
        _touched[str(row.id)] = now
        await replicas.touch(row)


@router.get(SESSIONS, summary="List Terminal Sessions")
async def list_sessions(workspace_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    row = await replicas.get_workspace(principal, workspace_id)
    if row.status != "active":
        return {"sessions": []}
    return await replicas.manager.call_engine(row, "GET", ENGINE_SESSIONS)


@router.post(SESSIONS, status_code=201, summary="Create Terminal Session",
             responses={429: {"description": "The workspace already has eight terminal sessions"}})
async def create_session(workspace_id: str, body: TerminalSizeRequest, principal: PrincipalDep,
                         replicas: ReplicasDep):
    """A shell in the workspace; a sleeping workspace is woken first. At most eight sessions (429)."""
    row = await replicas.awake_workspace(principal, workspace_id)
    _touched[str(row.id)] = time.monotonic()
    await replicas.touch(row)
    return await replicas.manager.call_engine(row, "POST", ENGINE_SESSIONS, json=body.model_dump())


@router.post(SESSIONS + "/{session_id}/input", summary="Write Terminal Input")
async def write_input(workspace_id: str, session_id: str, body: WriteTerminalRequest, principal: PrincipalDep,
                      replicas: ReplicasDep):
    """Idempotent per (generation, sequence); a generation older than the session's current one is 400."""
    row = await _active(replicas, principal, workspace_id)
    await _touch(replicas, row)
    return await replicas.manager.call_engine(row, "POST", f"{ENGINE_SESSIONS}/{session_id}/input",
                                              json=body.model_dump())


@router.post(SESSIONS + "/{session_id}/resize", summary="Resize Terminal Session")
async def resize(workspace_id: str, session_id: str, body: TerminalSizeRequest, principal: PrincipalDep,
                 replicas: ReplicasDep):
    row = await _active(replicas, principal, workspace_id)
    return await replicas.manager.call_engine(row, "POST", f"{ENGINE_SESSIONS}/{session_id}/resize",
                                              json=body.model_dump())


@router.delete(SESSIONS + "/{session_id}", summary="Delete Terminal Session")
async def delete_session(workspace_id: str, session_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    row = await _active(replicas, principal, workspace_id)
    return await replicas.manager.call_engine(row, "DELETE", f"{ENGINE_SESSIONS}/{session_id}")


@router.get(SESSIONS + "/{session_id}/stream", summary="Stream Terminal Output",
            response_class=StreamingResponse)
async def stream(workspace_id: str, session_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    """The engine's server-sent events (a `replay`, then `output` events, an `exit`), relayed as they come.
    The upstream stream is opened before answering, so an unknown session is a 404; it is closed when the
    client goes away."""
    row = await _active(replicas, principal, workspace_id)
    path = f"{ENGINE_SESSIONS}/{session_id}/stream"
    upstream = contextlib.AsyncExitStack()
    try:
        client = await upstream.enter_async_context(replicas.manager.engine(row, timeout=None))
        response = await upstream.enter_async_context(client.stream("GET", path))
        if response.status_code != 200:
            await response.aread()
            raise engine_refusal(response, "GET", path)
    except (httpx.TransportError, FileNotFoundError, ConnectionError) as exc:
        await upstream.aclose()
        raise ServiceUnavailable("Workspace engine is unreachable", str(exc) or type(exc).__name__) from None
    except BaseException:
        await upstream.aclose()
        raise

    async def relay():
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.TransportError:
            return  # the engine went away (the workspace slept or stopped)
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()

    return StreamingResponse(relay(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
