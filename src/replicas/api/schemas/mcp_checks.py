"""The MCP server Test's answer (our addition)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from replicas.api.schemas.common import Request
from replicas.api.schemas.env_resources import Transport


class McpDraftTestRequest(Request):
    """A server as the add/edit form holds it, not saved: the shape of a create (`name` optional, a label)."""

    name: str | None = Field(None, max_length=64)
    transport: Transport
    # The shape depends on `transport` (stdio {command, args?, env?}, http/sse {url, headers?}); checked as a
    # create checks it.
    config: dict[str, Any]


class McpServerInfo(BaseModel):
    name: str
    version: str | None = None


class McpTestResult(BaseModel):
    ok: bool = Field(description="Whether the server answered the MCP handshake")
    transport: str
    server: McpServerInfo | None = Field(None, description="The server's name and version, as it gave them")
    protocol_version: str | None = None
    tools: list[str] = Field(default_factory=list, description="The names of the tools it lists")
    error: str | None = Field(None, description="Why the check failed")
    output: str = Field("", description="A stdio server's stderr during the check")


class McpTestResponse(BaseModel):
    test: McpTestResult
