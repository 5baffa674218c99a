"""The MCP server's tests: the Replica API fixtures (real agent CLIs behind the scripted model, an environment
bound to a real repository), the app served over real HTTP on a loopback port, and an MCP client of the
official `mcp` SDK on either transport: Streamable HTTP at `/v1/mcp`, or `replicas mcp` started as a
subprocess speaking stdio."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp import Client, StdioServerParameters
from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures
from tests.live_server import serving
from tests.replicas.conftest import replica_backend, replica_env, settings  # noqa: F401 - fixtures

REPLICAS_CLI = str(Path(sys.executable).parent / "replicas")


@pytest.fixture
async def api_url(app) -> AsyncIterator[str]:
    """The app (started by the `app` fixture) served over HTTP on a loopback port, on this test's event loop,
    so that clients in other processes (`replicas mcp`, Claude Code) reach the same app as the fixtures."""
    async with serving(app) as url:
        yield url


def key_of(client) -> str:
    """The API key an httpx client of the fixtures sends."""
    return client.headers["Authorization"].removeprefix("Bearer ")


@asynccontextmanager
async def mcp_client(transport: str, api_url: str, key: str) -> AsyncIterator[Client]:
    """A connected client of the `mcp` SDK: over Streamable HTTP with the key as bearer, or over stdio to a
    `replicas mcp` subprocess configured by REPLICAS_API_URL and REPLICAS_API_KEY."""
    if transport == "http":
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            async with Client(streamable_http_client(f"{api_url}/v1/mcp", http_client=http)) as client:
                yield client
    else:
        server = StdioServerParameters(command=REPLICAS_CLI, args=["mcp"], env={
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "REPLICAS_API_URL": api_url, "REPLICAS_API_KEY": key})
        async with Client(server) as client:
            yield client
