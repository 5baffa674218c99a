"""POST /v1/mcp: the MCP server over Streamable HTTP (spec §8.1), served by the control plane itself.

The request must carry `Authorization: Bearer sk_replicas_...`. It is checked here first, so a missing or
unknown key gets the API's 401 (`{"error": ..., "details": ...}`) before any MCP is spoken. The tools then
call the REST API through the SDK with that same key, over an in-process ASGI transport to this very app:
what a tool may do and see, and how it is refused, is the REST API's by construction.

The endpoint is stateless: each POST is a whole exchange, with no `Mcp-Session-Id` to keep, so nothing of a
caller outlives its request and any of several control planes can answer. Answers are JSON rather than an
SSE stream, since no tool streams. The MCP server and its session manager belong to one app and live for
its lifespan (this router's, merged into the app's by FastAPI).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI
from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from replicas.api.errors import error_response
from replicas.client import AsyncReplicas
from replicas.errors import ReplicasError, Unauthorized
from replicas.mcp_server import build_server
from replicas.services import auth

PATH = "/v1/mcp"
# The SDK needs a base URL; requests never leave the process (httpx.ASGITransport).
IN_PROCESS_URL = "http://replicas.in-process"


class McpEndpoint:
    """One app's MCP server, its Streamable HTTP transport, and the SDK clients its tools use."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.server = build_server(self.client_for)
        # A bearer key guards the endpoint, and a browser page cannot send one cross-origin, so the SDK's
        # DNS-rebinding check (a list of allowed Host headers) would only refuse a real deployment's host.
        self.asgi = self.server.streamable_http_app(
            streamable_http_path=PATH, stateless_http=True, json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    @asynccontextmanager
    async def client_for(self, ctx: Context) -> AsyncIterator[AsyncReplicas]:
        """An SDK client of this app with the key of the MCP request being served."""
        headers = {name.lower(): value for name, value in (ctx.headers or {}).items()}
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("Missing authorization token")  # checked before; a tool never runs without
        async with AsyncReplicas(IN_PROCESS_URL, api_key=key.strip(),
                                 transport=httpx.ASGITransport(app=self.app)) as client:
            yield client

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The session manager runs for the app's life in a task of its own: its anyio task group must be left
        by the task that entered it, and an app's start and end may run in different tasks (a test's)."""
        started, stop = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with self.server.session_manager.run():
                started.set()
                await stop.wait()

        task = asyncio.create_task(hold(), name="mcp-session-manager")
        await asyncio.wait([task, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # it failed to start: raise why
        try:
            yield
        finally:
            stop.set()
            await task


class ServeMcp:
    """The route's ASGI app (a class: Starlette wraps a plain function as request -> response): authenticate
    as the REST API does, then hand the request to the MCP transport."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            async with request.app.state.sessions() as session:
                await auth.authenticate(session, request.headers.get("authorization"))
        except ReplicasError as exc:
            await error_response(exc.status, exc.error, exc.details, exc.headers)(scope, receive, send)
            return
        await request.app.state.mcp.asgi(scope, receive, send)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.mcp = McpEndpoint(app)
    async with app.state.mcp.running():
        yield


router = APIRouter(lifespan=lifespan)
router.add_route(PATH, ServeMcp(), methods=["POST"], include_in_schema=False)
