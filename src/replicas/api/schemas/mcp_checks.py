"""The MCP server Test's answer (our addition)."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
