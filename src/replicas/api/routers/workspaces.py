"""/v1/workspaces/{workspaceId}/* (the dashboard family, contract tag Replica), camelCase as the engine.

The hosted API serves these to dashboard sessions only; we accept API keys too (spec §10 #36).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from replicas.api.deps import PrincipalDep
from replicas.api.routers.replicas import ReplicasDep
from replicas.api.schemas.common import ERROR_RESPONSES
from replicas.api.schemas.replicas import CreateChatRequest, SendDeferredMessageRequest, WorkspaceMessageFields
from replicas.services.replica_views import workspace_chat

router = APIRouter(prefix="/v1/workspaces", tags=["Replica"], responses=ERROR_RESPONSES)


@router.get("/{workspace_id}/chats")
async def list_chats(workspace_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    row, chats, _ = await replicas.chats(principal, workspace_id)
    deleted = (row.snapshot or {}).get("deleted_chats", [])
    return {"chats": [workspace_chat(chat) for chat in chats],
            "deletedChats": [workspace_chat(chat) for chat in deleted]}


@router.post("/{workspace_id}/chats", status_code=201)
async def create_chat(workspace_id: str, body: CreateChatRequest, principal: PrincipalDep, replicas: ReplicasDep):
    """Create a chat; a sleeping or preparing workspace is brought up first. Archived or error: 409."""
    chat = await replicas.create_chat(principal, workspace_id, body.engine_body(), refuse=("archived", "error"))
    return {"chat": workspace_chat(chat)}


@router.post("/{workspace_id}/chats/{chat_id}/messages")
async def send_chat_message(workspace_id: str, chat_id: str, body: WorkspaceMessageFields, principal: PrincipalDep,
                            replicas: ReplicasDep):
    """200 when the engine took it (sent or queued behind the agent); 202 when it waits for start-up."""
    status, answer = await replicas.send_to_chat(principal, workspace_id, chat_id, body.message, **body.options())
    return JSONResponse(answer, status_code=status)


@router.post("/{workspace_id}/messages/deferred", status_code=202)
async def send_deferred(workspace_id: str, body: SendDeferredMessageRequest, principal: PrincipalDep,
                        replicas: ReplicasDep):
    """Pick (or create) the provider's chat, queue the message and wake the workspace."""
    return await replicas.send_deferred(principal, workspace_id, body.provider, body.message, chat_id=body.chatId,
                                        **body.options())


@router.post("/{workspace_id}/archive")
async def archive(workspace_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    await replicas.archive(principal, workspace_id)
    return {"success": True}


@router.post("/{workspace_id}/sleep")
async def sleep(workspace_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    """Sleep now (no-op when already asleep; 409 while preparing or in error)."""
    await replicas.sleep(principal, workspace_id)
    return {"success": True}
