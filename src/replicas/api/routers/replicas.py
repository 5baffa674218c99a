"""/v1/replica/* (contract tag Replica): replicas, messages, chats, queues, history, hooks, events.

Thin: each handler validates, calls `ReplicaService` (app.state.replicas) and shapes the answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from replicas.api.deps import PrincipalDep
from replicas.api.pagination import MAX_OFFSET, Page, Window, paged, windowed
from replicas.api.responses import JSONBody
from replicas.api.schemas.common import ERROR_RESPONSES
from replicas.api.schemas.replicas import (
    CreateChatRequest,
    CreateReplicaRequest,
    ReorderQueueRequest,
    SendReplicaMessageRequest,
    Source,
    Status,
)
from replicas.errors import BadRequest
from replicas.services.replica_views import list_item, replica_chat
from replicas.services.replicas import ReplicaService

router = APIRouter(prefix="/v1/replica", tags=["Replica"], responses=ERROR_RESPONSES)


async def get_replicas(request: Request) -> ReplicaService:
    return request.app.state.replicas


ReplicasDep = Annotated[ReplicaService, Depends(get_replicas)]
# Our addition: a read that leaves a sleeping or archived replica as it is (a dashboard showing its page).
NO_WAKE = ("false: answer from what is stored and leave a sleeping or archived replica asleep (our addition; "
           "the default wakes it, as the hosted API does)")
HistoryWindow = Annotated[Window, windowed(default_limit=50, max_limit=500)]


@router.post("", status_code=201)
async def create_replica(body: CreateReplicaRequest, principal: PrincipalDep, replicas: ReplicasDep,
                         x_replicas_api_version: Annotated[str | None, Header()] = None):
    """Create a replica and deliver its first message. Without `X-Replicas-Api-Version` the call
    blocks until the replica is active (legacy); with `2026-05-17` it answers `preparing` at once."""
    row = await replicas.create(principal, body, wait=x_replicas_api_version is None)
    return {"replica": list_item(row)}


@router.get("")
async def list_replicas(principal: PrincipalDep, replicas: ReplicasDep,
                        paging: Annotated[Page, paged(default_limit=10)], user_id: str | None = None,
                        source: Source | None = None, status: Status | None = None):
    """Replicas of the organization, newest first (archived ones by last activity)."""
    return JSONBody(await replicas.list(principal, page=paging.page, limit=paging.limit, user_id=user_id,
                                        source=source, status=status))


@router.get("/{replica_id}")
async def get_replica(replica_id: str, principal: PrincipalDep, replicas: ReplicasDep, include: str | None = None,
                      wake: Annotated[bool, Query(description=NO_WAKE)] = True):
    """A replica's details; `include=environment,diffs`. Reading a sleeping replica wakes it (not with
    `wake=false`)."""
    wanted = {part.strip() for part in (include or "").split(",") if part.strip()}
    unknown = wanted - {"environment", "diffs"}
    if unknown:
        raise BadRequest("Invalid request", f"include: unknown value(s) {', '.join(sorted(unknown))}")
    return JSONBody(await replicas.details(principal, replica_id, wanted, wake=wake))


@router.delete("/{replica_id}")
async def delete_replica(replica_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    """Stop and remove the sandbox and the replica (fires `replica.deleted`)."""
    await replicas.delete(principal, replica_id)
    return {"success": True}


@router.post("/{replica_id}/messages")
async def send_message(replica_id: str, body: SendReplicaMessageRequest, principal: PrincipalDep,
                       replicas: ReplicasDep):
    """Send a message: `sent`, `queued` behind a busy agent (with its position), or `waking`."""
    return await replicas.send_message(principal, replica_id, body.message, chat_id=body.chat_id,
                                       coding_agent=body.coding_agent, sender_user_id=body.senderUserId,
                                       sender_email=body.senderEmail, **body.options())


@router.get("/{replica_id}/chats")
async def list_chats(replica_id: str, principal: PrincipalDep, replicas: ReplicasDep,
                     wake: Annotated[bool, Query(description=NO_WAKE)] = True):
    _, chats, waking = await replicas.chats(principal, replica_id, wake=wake)
    out = {"chats": [replica_chat(chat) for chat in chats]}
    if waking:
        out["waking"] = True
    return out


@router.post("/{replica_id}/chats", status_code=201)
async def create_chat(replica_id: str, body: CreateChatRequest, principal: PrincipalDep, replicas: ReplicasDep):
    return replica_chat(await replicas.create_chat(principal, replica_id, body.engine_body()))


@router.delete("/{replica_id}/chats/{chat_id}")
async def delete_chat(replica_id: str, chat_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    await replicas.delete_chat(principal, replica_id, chat_id)
    return {"success": True}


@router.get("/{replica_id}/chats/{chat_id}/slash-commands")
async def slash_commands(replica_id: str, chat_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    return await replicas.slash_commands(principal, replica_id, chat_id)


@router.get("/{replica_id}/chats/{chat_id}/queue")
async def get_queue(replica_id: str, chat_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    return await replicas.engine_call(principal, replica_id, "GET", f"/chats/{chat_id}/queue")


@router.delete("/{replica_id}/chats/{chat_id}/queue")
async def clear_queue(replica_id: str, chat_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    """Clear the queue; the running turn goes on."""
    return await replicas.queue_mutation(principal, replica_id, chat_id, "DELETE")


@router.delete("/{replica_id}/chats/{chat_id}/queue/{message_id}")
async def remove_queued(replica_id: str, chat_id: str, message_id: str, principal: PrincipalDep,
                        replicas: ReplicasDep):
    return await replicas.queue_mutation(principal, replica_id, chat_id, "DELETE", f"/{message_id}")


@router.patch("/{replica_id}/chats/{chat_id}/queue/reorder")
async def reorder_queue(replica_id: str, chat_id: str, body: ReorderQueueRequest, principal: PrincipalDep,
                        replicas: ReplicasDep):
    return await replicas.reorder(principal, replica_id, chat_id, body.messageId, body.position)


@router.get("/{replica_id}/history")
async def history(replica_id: str, principal: PrincipalDep, replicas: ReplicasDep, window: HistoryWindow,
                  chat_id: str | None = None):
    """A chat's events, paged from the end (served from the store: a sleeping replica stays asleep)."""
    return JSONBody(await replicas.history(principal, replica_id, chat_id=chat_id, limit=window.limit,
                                           offset=window.offset))


@router.get("/{replica_id}/read", include_in_schema=False)
async def read(replica_id: str, principal: PrincipalDep, replicas: ReplicasDep, window: HistoryWindow,
               chat_id: str | None = None):
    """Deprecated alias of /history (spec §10 #30)."""
    return JSONBody(await replicas.history(principal, replica_id, chat_id=chat_id, limit=window.limit,
                                           offset=window.offset))


@router.get("/{replica_id}/hooks")
async def hooks(replica_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    return await replicas.hooks(principal, replica_id)


@router.get("/{replica_id}/events")
async def events(replica_id: str, principal: PrincipalDep, replicas: ReplicasDep,
                 after: Annotated[int | None, Query(ge=0, le=MAX_OFFSET)] = None,
                 last_event_id: Annotated[str | None, Header()] = None):
    """Server-sent events: a snapshot, then every event (`id:` = its sequence number) from
    `Last-Event-ID` (or `?after=`), or from now; `: ping` every 15 s."""
    row = await replicas.get_workspace(principal, replica_id)
    start = after
    if last_event_id:
        try:
            start = int(last_event_id)
        except ValueError:
            start = -1
        if not 0 <= start <= MAX_OFFSET:  # an id past any sequence must not reach SQL's 64-bit integers
            raise BadRequest("Invalid Last-Event-ID", "it must be the integer id of an event")
    return StreamingResponse(replicas.stream(row, start), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
