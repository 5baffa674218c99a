"""`replicas mcp`: the MCP server on stdin/stdout, for an MCP client that starts it as a subprocess.

    {"mcpServers": {"replicas": {"command": "replicas", "args": ["mcp"],
                                 "env": {"REPLICAS_API_URL": "http://127.0.0.1:8321",
                                         "REPLICAS_API_KEY": "sk_replicas_..."}}}}

One SDK client, from the environment (`Credentials.from_env`), serves every tool call for the life of the
process. Nothing but the protocol may go to stdout, so the SDK's logging goes to stderr.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import Context

from replicas.client import AsyncReplicas, Credentials
from replicas.mcp_server.tools import build_server


async def serve(credentials: Credentials) -> None:
    """Serve MCP on stdio until the client closes stdin, speaking to the API as `credentials`."""
    async with AsyncReplicas(credentials=credentials) as client:

        @asynccontextmanager
        async def shared_client(_ctx: Context) -> AsyncIterator[AsyncReplicas]:
            yield client

        await build_server(shared_client).run_stdio_async()
