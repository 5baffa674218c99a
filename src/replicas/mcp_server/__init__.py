"""The Replicas MCP server (spec §8.1): the hosted server's twelve tools, on the official `mcp` SDK.

Two transports, the same tools:

- stdio, `replicas mcp` (`stdio.run`): an MCP client starts it as a subprocess; it speaks to the server at
  REPLICAS_API_URL with REPLICAS_API_KEY;
- Streamable HTTP at `POST /v1/mcp` on the control plane (`replicas.api.routers.mcp`), with the caller's
  `Authorization: Bearer sk_replicas_...`.

Either way a tool is a REST call through the SDK (`replicas.client`) with the caller's key, so what a tool may
do and see is exactly what the REST API allows that key. Like the SDK, this package imports nothing of the
server (`api`, `services`, `store`, `engine`).
"""

from replicas.mcp_server.tools import TOOL_NAMES, build_server

__all__ = ["TOOL_NAMES", "build_server"]
