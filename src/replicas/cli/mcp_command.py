"""`replicas mcp`: the Replicas MCP server on stdin/stdout (replicas.mcp_server), for an MCP client (Claude
Code, Claude Desktop, Cursor, ...) that starts it as a subprocess. It speaks to the server at REPLICAS_API_URL
with REPLICAS_API_KEY, else as `replicas login` stored (the CLI's own order, `session.current_credentials`)."""

from __future__ import annotations

import asyncio
import logging
import sys

import typer


def mcp() -> None:
    """Serve the Replicas MCP tools on stdio (REPLICAS_API_URL, REPLICAS_API_KEY)."""
    from replicas.cli.session import current_credentials
    from replicas.mcp_server.stdio import serve

    # stdout carries the protocol: logging goes to stderr, warnings only (the SDK would log each request).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="replicas mcp: %(levelname)s %(message)s")
    credentials = current_credentials()
    if not credentials.api_key and not credentials.agent_mode:
        typer.echo("replicas mcp: set REPLICAS_API_KEY and REPLICAS_API_URL (or run `replicas login`)", err=True)
        raise typer.Exit(2)
    asyncio.run(serve(credentials))


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp)
