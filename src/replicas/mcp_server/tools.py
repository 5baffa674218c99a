"""The hosted MCP server's tools (spec §8.1), each one REST call made through the SDK.

A tool takes the REST operation's parameter names (the path's `{id}` and `{chatId}` as `replica_id` and
`chat_id`, the names the rest of the API gives them) and returns the REST answer's JSON unchanged, as text
and as structured content. It builds the call with the SDK's `calls` (the one place that knows the paths)
and keeps the raw JSON instead of the SDK's model, so that nothing is lost or renamed on the way.

A refusal of the API becomes an MCP tool error (`isError`) whose text is the API's own body with its status,
`{"status": 404, "error": "Workspace not found", "details": null}`, so the model reads what a REST client
would. Which server is asked, and as whom, is the caller's `client_for`: the stdio server has one SDK client
for its whole life (REPLICAS_API_URL, REPLICAS_API_KEY), the HTTP endpoint one per request with that
request's key (`replicas.api.routers.mcp`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from replicas import __version__
from replicas.client import AsyncReplicas, ReplicasError, calls
from replicas.client.calls import Call

ClientFor = Callable[[Context], AbstractAsyncContextManager[AsyncReplicas]]

TOOL_NAMES = ("create_replica", "list_replicas", "get_replica", "send_replica_message", "delete_replica",
              "list_repositories", "list_repository_sets", "list_chats", "create_chat", "delete_chat",
              "read_replica_history", "get_replica_hooks")

INSTRUCTIONS = (
    "Replicas runs coding agents (Claude Code, Codex, opencode, ...) in cloud workspaces called replicas. "
    "create_replica starts one with a first message (it answers at once with status preparing); follow its "
    "work with get_replica (status, repository_statuses, chats) and read_replica_history, and talk to it with "
    "send_replica_message. Every tool returns the Replica API's JSON.")

Agent = Literal["claude", "codex", "cursor", "opencode", "pi"]
ThinkingLevel = Literal["low", "medium", "high", "xhigh", "max", "ultra", "ultracode"]
ReplicaId = Annotated[str, Field(description="The replica's id (a UUID)")]
ChatId = Annotated[str, Field(description="A chat's id, from list_chats or get_replica's chats")]
Model = Annotated[str | None, Field(description="Model for the coding agent (its default if left out)")]
PlanMode = Annotated[bool | None, Field(description="Plan only: investigate and propose, change nothing")]
Thinking = Annotated[ThinkingLevel | None, Field(description="Reasoning effort (the agent's default if left out)")]

READ_ONLY = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
CHANGES = ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False)
DESTROYS = ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False)


def tool_result(body: Any) -> CallToolResult:
    """A REST answer as the tool's result: its JSON as text, and as structured content when it is an object."""
    text = json.dumps(body, ensure_ascii=False)
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=body if isinstance(body, dict) else None)


def tool_error(exc: ReplicasError) -> CallToolResult:
    """A refusal of the API as a tool error carrying the API's body and status."""
    body = {"status": exc.status, "error": exc.error, "details": exc.details}
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(body, ensure_ascii=False))],
                          is_error=True)


def build_server(client_for: ClientFor) -> MCPServer:
    """The MCP server with the twelve tools, each asking the server `client_for(ctx)` connects to."""
    # MCPServer calls logging.basicConfig: a no-op where logging is set up (replicas serve, replicas mcp); where
    # it is not, WARNING keeps it to what Python would print anyway.
    server = MCPServer("replicas", title="Replicas", version=__version__, instructions=INSTRUCTIONS,
                       log_level="WARNING")

    async def rest(ctx: Context, call: Call[Any]) -> CallToolResult:
        raw = dataclasses.replace(call, parse=lambda body: body)  # the REST JSON, not the SDK's model
        try:
            async with client_for(ctx) as client:
                return tool_result(await client.run(raw))
        except ReplicasError as exc:
            return tool_error(exc)

    @server.tool(description="Create a replica: a workspace on an environment's repositories with a coding agent "
                             "working on `message`. Answers at once with status `preparing`.", annotations=CHANGES)
    async def create_replica(
        ctx: Context,
        name: Annotated[str, Field(description="Name without whitespace, e.g. fix-login-bug")],
        message: Annotated[str, Field(description="The first message to the coding agent")],
        environment_id: Annotated[str | None, Field(description="The environment to start from")] = None,
        coding_agent: Annotated[Agent | None, Field(description="The coding agent (default claude)")] = None,
        model: Model = None,
        plan_mode: PlanMode = None,
        thinking_level: Thinking = None,
        lifecycle_policy: Annotated[
            Literal["default", "archive_when_done", "sleep_when_done", "delete_after_inactivity"] | None,
            Field(description="What happens once the agent is done")] = None,
        size: Annotated[Literal["small", "large"] | None, Field(description="Compute size")] = None,
        repository_set_id: Annotated[str | None, Field(description="Deprecated: use environment_id")] = None,
        repository_ids: Annotated[list[str] | None, Field(description="Deprecated: use environment_id")] = None,
    ) -> CallToolResult:
        return await rest(ctx, calls.create_replica(
            name=name, message=message, environment_id=environment_id, coding_agent=coding_agent, model=model,
            plan_mode=plan_mode, thinking_level=thinking_level, lifecycle_policy=lifecycle_policy, size=size,
            repository_set_id=repository_set_id, repository_ids=repository_ids))

    @server.tool(description="List the organization's replicas, newest first, a page at a time.",
                 annotations=READ_ONLY)
    async def list_replicas(
        ctx: Context,
        page: Annotated[int, Field(ge=1, description="Page number")] = 1,
        limit: Annotated[int, Field(ge=1, le=100, description="Replicas per page")] = 10,
        user_id: Annotated[str | None, Field(description="Only those this user created")] = None,
        source: Annotated[
            Literal["api", "dashboard", "slack", "linear", "github", "gitlab", "automation"] | None,
            Field(description="Only those created from this source")] = None,
        status: Annotated[Literal["active", "sleeping", "archived", "preparing", "error"] | None,
                          Field(description="Only those in this status")] = None,
    ) -> CallToolResult:
        return await rest(ctx, calls.list_replicas(page=page, limit=limit, user_id=user_id, source=source,
                                                   status=status))

    @server.tool(description="A replica's details: status, repositories with their branch, diff and pull requests, "
                             "and chats. Reading a sleeping replica wakes it (`waking: true`).", annotations=READ_ONLY)
    async def get_replica(
        ctx: Context, replica_id: ReplicaId,
        include: Annotated[str | None, Field(description="Comma-separated: `environment`, `diffs` (full diffs)")]
        = None,
    ) -> CallToolResult:
        wanted = [part.strip() for part in (include or "").split(",") if part.strip()]
        return await rest(ctx, calls.get_replica(replica_id, include=wanted))

    @server.tool(description="Send a message to a replica's coding agent: `sent`, `queued` behind the turn it is "
                             "working on, or `waking` a sleeping replica.", annotations=CHANGES)
    async def send_replica_message(
        ctx: Context, replica_id: ReplicaId,
        message: Annotated[str, Field(description="The message")],
        chat_id: Annotated[str | None, Field(description="The chat to send to (default: the replica's first)")]
        = None,
        coding_agent: Annotated[Agent | None, Field(description="Send to this agent's chat (created if needed)")]
        = None,
        model: Model = None,
        plan_mode: PlanMode = None,
        thinking_level: Thinking = None,
    ) -> CallToolResult:
        return await rest(ctx, calls.send_message(replica_id, message, chat_id=chat_id, coding_agent=coding_agent,
                                                  model=model, plan_mode=plan_mode, thinking_level=thinking_level))

    @server.tool(description="Delete a replica: its workspace is stopped and removed.", annotations=DESTROYS)
    async def delete_replica(ctx: Context, replica_id: ReplicaId) -> CallToolResult:
        return await rest(ctx, calls.delete_replica(replica_id))

    @server.tool(description="List the git repositories available to replicas.", annotations=READ_ONLY)
    async def list_repositories(ctx: Context) -> CallToolResult:
        return await rest(ctx, calls.list_repositories())

    @server.tool(description="List the repository sets (repositories checked out together).", annotations=READ_ONLY)
    async def list_repository_sets(ctx: Context) -> CallToolResult:
        return await rest(ctx, calls.list_repository_sets())

    @server.tool(description="List a replica's chats (one conversation each, with its agent and whether it is "
                             "working). Wakes a sleeping replica.", annotations=READ_ONLY)
    async def list_chats(ctx: Context, replica_id: ReplicaId) -> CallToolResult:
        return await rest(ctx, calls.list_chats(replica_id))

    @server.tool(description="Start a new chat on a replica, with its own agent session.", annotations=CHANGES)
    async def create_chat(
        ctx: Context, replica_id: ReplicaId,
        provider: Annotated[Agent, Field(description="The coding agent of the chat")],
        title: Annotated[str | None, Field(description="A title (default: the agent's name)")] = None,
    ) -> CallToolResult:
        return await rest(ctx, calls.create_chat(replica_id, provider=provider, title=title))

    @server.tool(description="Delete a chat of a replica (its running turn is stopped).", annotations=DESTROYS)
    async def delete_chat(ctx: Context, replica_id: ReplicaId, chat_id: ChatId) -> CallToolResult:
        return await rest(ctx, calls.delete_chat(replica_id, chat_id))

    @server.tool(description="Read a chat's conversation: the user's messages and the agent's events, a page "
                             "taken from the end (`offset` counts back from the newest), with who sent each "
                             "message. Served without waking a sleeping replica.", annotations=READ_ONLY)
    async def read_replica_history(
        ctx: Context, replica_id: ReplicaId,
        chat_id: Annotated[str | None, Field(description="The chat (default: the replica's first)")] = None,
        limit: Annotated[int | None, Field(ge=1, description="Events per page (default 50)")] = None,
        offset: Annotated[int | None, Field(ge=0, description="Events to skip from the newest")] = None,
    ) -> CallToolResult:
        return await rest(ctx, calls.read_history(replica_id, chat_id=chat_id, limit=limit, offset=offset))

    @server.tool(description="A replica's warm and start hook logs.", annotations=READ_ONLY)
    async def get_replica_hooks(ctx: Context, replica_id: ReplicaId) -> CallToolResult:
        return await rest(ctx, calls.get_hooks(replica_id))

    return server
