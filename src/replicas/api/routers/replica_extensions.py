"""Replica endpoints the hosted API does not have (ours; the dashboard uses them, and so may any client):

    GET  /v1/replicas/search?status=&source=&environment_id=&q=&page=&limit=
         {replicas: [ReplicaListItem + environment_id], total, page, limit, total_pages}
    GET  /v1/replicas/status-events
         text/event-stream of replica.created / replica.updated / replica.deleted for the whole organization,
         pushed as they commit; `id:` is a cursor, and `Last-Event-ID` resumes after it
    POST /v1/replica/{id}/chats/{chatId}/interrupt
         {chatId, interrupted, queue}: stops the chat's current turn (the engine's interrupt; the queue stays)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from replicas.api.deps import PrincipalDep, SessionDep
from replicas.api.pagination import Page, paged
from replicas.api.routers.replicas import ReplicasDep
from replicas.api.schemas.common import ERROR_RESPONSES
from replicas.api.schemas.replicas import Source, Status
from replicas.api.sse import event_stream
from replicas.errors import BadRequest, Conflict
from replicas.services import replica_index

router = APIRouter(tags=["Replica (extensions)"], responses=ERROR_RESPONSES)
# Changes are pushed; the store is read again after this many quiet seconds all the same (a lost signal).
STATUS_EVENTS_SAFETY_SECONDS = 15.0


@router.get("/v1/replicas/search", summary="Search Replicas")
async def search(session: SessionDep, principal: PrincipalDep, window: Annotated[Page, paged(default_limit=50)],
                 status: Status | None = None, source: Source | None = None, environment_id: str | None = None,
                 q: Annotated[str | None, Query(max_length=255, description="Part of the name")] = None):
    return await replica_index.search(session, principal, page=window.page, limit=window.limit,
                                      status=status, source=source, environment_id=environment_id, query=q)


@router.get("/v1/replicas/status-events", summary="Stream Replica Status Changes")
async def status_events(request: Request, principal: PrincipalDep,
                        last_event_id: Annotated[str | None, Header()] = None):
    after = None
    if last_event_id:
        if not (last_event_id.isascii() and last_event_id.isdigit()) or int(last_event_id) >= 2**63:
            raise BadRequest("Invalid Last-Event-ID", "it must be the integer id of a status event")
        after = int(last_event_id)

    async def events():
        async for change in replica_index.status_changes(request.app.state.sessions, request.app.state.replicas.hub,
                                                         principal, after, STATUS_EVENTS_SAFETY_SECONDS):
            yield f"id: {change}\n\n" if isinstance(change, int) else change

    return event_stream(events())


@router.post("/v1/replica/{replica_id}/chats/{chat_id}/interrupt", summary="Interrupt Chat")
async def interrupt(replica_id: str, chat_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    row = await replicas.get_workspace(principal, replica_id)
    if row.status != "active":
        raise Conflict("Workspace is not active", f"the workspace is {row.status}; nothing is running")
    return await replicas.manager.call_engine(row, "POST", f"/chats/{chat_id}/interrupt")
