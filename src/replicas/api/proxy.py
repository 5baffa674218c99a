"""The preview proxy: `/previews/{token}/{path}` on the control plane reaches a port inside a workspace.

    mount_preview_proxy(app)      # adds the HTTP and WebSocket routes; `app.state.preview_proxy.aclose()`
                                  # at shutdown closes its upstream connection pool

For every request: the token is looked up (unknown: 404); an `authenticated` preview needs an API key
of the workspace's organization, as `Authorization: Bearer sk_replicas_...` or in the
`replicas_preview` cookie (and neither is passed on to the workspace); a workspace that is not active
is woken first (`ReplicaService.ensure_awake`); the request is recorded as activity (`touch`). Then:

- HTTP: request and response bodies are streamed both ways, unchanged (no decompression). Hop-by-hop
  headers are dropped; `X-Forwarded-For/-Proto/-Host/-Prefix` are set. A redirect to the upstream's own
  origin or to an absolute path is rewritten under the preview's prefix. Nothing listening: 502.
- WebSocket: the upstream handshake is made first (with the client's subprotocols), then the client
  is accepted with the subprotocol the upstream chose; text and binary frames are relayed both ways
  and a close on either side closes the other with the same code and reason. A long-lived socket
  counts as activity while it stays open.

Right after a wake, the workspace's own servers are still starting (its start hook launches them),
so connection refusals are retried for `WAKE_CONNECT_GRACE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
import websockets
from fastapi import FastAPI
from starlette.background import BackgroundTask
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from replicas.api.agent_auth import bearer_token
from replicas.api.errors import error_response
from replicas.errors import BadGateway, NotFound, ReplicasError, Unauthorized
from replicas.services import auth
from replicas.services import previews as previews_service
from replicas.store.models import Preview, Workspace

log = logging.getLogger("replicas.previews")

PREVIEW_COOKIE = "replicas_preview"
WAKE_CONNECT_GRACE_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0
# A WebSocket that stays open keeps its workspace from the idle sleeper: activity is recorded this often.
WEBSOCKET_TOUCH_SECONDS = 60.0
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "proxy-connection"})
# Set by the proxy itself, or describing the client's connection rather than the request.
_NOT_FORWARDED = HOP_BY_HOP | {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                               "x-forwarded-prefix", "x-forwarded-port"}
# The websockets client makes its own handshake headers.
_WS_NOT_FORWARDED = _NOT_FORWARDED | {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                                      "sec-websocket-protocol", "sec-websocket-accept", "content-length"}
# Codes a close frame may not carry (RFC 6455 §7.4.1), and what is sent in their place.
_UNSENDABLE_CLOSE_CODES = {1005: 1000, 1006: 1011, 1015: 1011}


@dataclass
class Target:
    """Where one request goes: the preview, its (awake) workspace and the upstream origin."""

    preview: Preview
    workspace: Workspace
    upstream: str  # http://host:port
    woken: bool


def _close_code(code: int | None) -> int:
    if code is None:
        return 1000
    code = _UNSENDABLE_CLOSE_CODES.get(code, code)
    return code if code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999 else 1000


def _without_preview_cookie(value: str) -> str:
    parts = [p for p in value.split(";") if p.strip() and p.strip().split("=", 1)[0].strip() != PREVIEW_COOKIE]
    return ";".join(parts).strip()


def forwarded_headers(connection: HTTPConnection, preview: Preview, skip: frozenset[str]) -> list[tuple[str, str]]:
    """The client's headers for the upstream: no hop-by-hop ones, and no credentials meant for us."""
    connection_tokens = {t.strip().lower() for t in connection.headers.get("connection", "").split(",")}
    headers: list[tuple[str, str]] = []
    for name, value in connection.headers.items():
        lower = name.lower()
        if lower in skip or lower in connection_tokens:
            continue
        if preview.authenticated and lower == "authorization":
            continue
        if lower == "cookie":
            value = _without_preview_cookie(value)
            if not value:
                continue
        headers.append((name, value))
    client_ip = connection.client.host if connection.client else None
    prior = connection.headers.get("x-forwarded-for")
    if client_ip:
        headers.append(("X-Forwarded-For", f"{prior}, {client_ip}" if prior else client_ip))
    scheme = {"ws": "http", "wss": "https"}.get(connection.url.scheme, connection.url.scheme)
    headers += [("X-Forwarded-Proto", scheme),
                ("X-Forwarded-Prefix", previews_service.proxy_path(preview.token))]
    if host := connection.headers.get("host"):
        headers.append(("X-Forwarded-Host", host))
    return headers


def upstream_path(connection: HTTPConnection, token: str) -> str:
    """The path (still percent-encoded, as the client sent it) and query after `/previews/{token}`."""
    raw = connection.scope.get("raw_path") or connection.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    prefix = previews_service.proxy_path(token)
    rest = path[len(prefix):] if path.startswith(prefix) else "/"
    query = connection.scope.get("query_string", b"").decode("latin-1")
    return (rest or "/") + (f"?{query}" if query else "")


def rewrite_location(location: str, upstream: str, prefix: str) -> str:
    """Keep redirects inside the preview: upstream-origin and absolute-path targets move under `prefix`."""
    if location.startswith(upstream):
        location = location[len(upstream):] or "/"
    if location.startswith("/") and not location.startswith("//"):
        return prefix + location
    return location


class PreviewProxy:
    """Resolves preview tokens and relays HTTP and WebSocket traffic to the workspace's port."""

    def __init__(self, app: FastAPI):
        self.app = app
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env=False: an HTTP(S)_PROXY meant for the outside world must not see loopback traffic.
            # A jar that accepts nothing: one client serves every visitor, so it must never keep a cookie.
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_SECONDS), follow_redirects=False,
                trust_env=False, limits=httpx.Limits(max_connections=None, max_keepalive_connections=50),
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- resolving a token ---------------------------------------------------------------------

    async def _authorize(self, session, connection: HTTPConnection, preview: Preview) -> None:
        key = bearer_token(connection.headers.get("authorization")) or connection.cookies.get(PREVIEW_COOKIE)
        if not key:
            raise Unauthorized("Missing authorization token", "this preview requires an API key of its organization")
        principal = await auth.authenticate(session, f"Bearer {key}")
        if principal.organization_id != preview.organization_id:
            raise Unauthorized("Invalid token")

    async def resolve(self, connection: HTTPConnection, token: str) -> Target:
        state = self.app.state
        async with state.sessions() as session:
            preview = await previews_service.find_by_token(session, token)
            if preview is None:
                raise NotFound("Preview not found")
            if preview.authenticated:
                await self._authorize(session, connection, preview)
            workspace = await session.get(Workspace, preview.workspace_id)
        if workspace is None:  # pragma: no cover - previews go with their workspace (cascade)
            raise NotFound("Preview not found")
        replicas = state.replicas
        woken = workspace.status != "active"
        if woken:
            log.info("preview traffic wakes workspace workspace_id=%s status=%s", workspace.id, workspace.status)
            workspace = await replicas.ensure_awake(workspace)
        await replicas.touch(workspace)
        manager = replicas.manager
        endpoint = manager.runtime.port_endpoint(manager._handle(workspace), preview.port)
        return Target(preview, workspace, endpoint.url, woken)

    # -- HTTP ----------------------------------------------------------------------------------

    async def http(self, request: Request) -> Response:
        token = request.path_params["token"]
        target = await self.resolve(request, token)
        prefix = previews_service.proxy_path(token)
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        upstream_request = self.client.build_request(
            request.method, target.upstream + upstream_path(request, token),
            headers=forwarded_headers(request, target.preview, _NOT_FORWARDED),
            content=request.stream() if has_body else None)
        upstream = await self._send(upstream_request, target)
        headers = []
        connection_tokens = {t.strip().lower() for t in upstream.headers.get("connection", "").split(",")}
        for name, value in upstream.headers.multi_items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in connection_tokens:
                continue
            if lower == "location":
                value = rewrite_location(value, target.upstream, prefix)
            headers.append((name.encode("latin-1"), value.encode("latin-1")))

        async def body():
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:  # also when the client goes away mid-stream: give the upstream connection back
                await upstream.aclose()

        response = StreamingResponse(body(), status_code=upstream.status_code,
                                     background=BackgroundTask(upstream.aclose))
        response.raw_headers = headers
        return response

    async def _send(self, upstream_request: httpx.Request, target: Target) -> httpx.Response:
        deadline = time.monotonic() + (WAKE_CONNECT_GRACE_SECONDS if target.woken else 0)
        while True:
            try:
                return await self.client.send(upstream_request, stream=True)
            except httpx.ConnectError as exc:
                if time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    continue
                raise BadGateway("Preview is unreachable",
                                 f"nothing answers on port {target.preview.port} in the workspace") from exc
            except httpx.TransportError as exc:
                raise BadGateway("Preview is unreachable", f"port {target.preview.port}: {type(exc).__name__}") from exc

    # -- WebSocket -----------------------------------------------------------------------------

    async def websocket(self, websocket: WebSocket) -> None:
        token = websocket.path_params["token"]
        try:
            target = await self.resolve(websocket, token)
            upstream = await self._connect(websocket, target, token)
        except ReplicasError as exc:
            await self._deny(websocket, exc)
            return
        except Exception:
            log.exception("preview websocket failed before accept")
            await self._deny(websocket, ReplicasError())
            return
        async with upstream:
            await websocket.accept(subprotocol=upstream.subprotocol)
            await self._relay(websocket, upstream, target)

    async def _connect(self, websocket: WebSocket, target: Target, token: str) -> ClientConnection:
        url = "ws" + target.upstream[len("http"):] + upstream_path(websocket, token)
        headers = forwarded_headers(websocket, target.preview, _WS_NOT_FORWARDED)
        headers = [(n, v) for n, v in headers if n.lower() not in ("origin", "user-agent")]
        subprotocols = list(websocket.scope.get("subprotocols") or []) or None
        deadline = time.monotonic() + (WAKE_CONNECT_GRACE_SECONDS if target.woken else 0)
        while True:
            try:
                return await ws_connect(
                    url, additional_headers=headers, subprotocols=subprotocols, origin=websocket.headers.get("origin"),
                    user_agent_header=websocket.headers.get("user-agent"), open_timeout=CONNECT_TIMEOUT_SECONDS,
                    max_size=None, compression=None, proxy=None)
            except websockets.exceptions.InvalidHandshake as exc:
                raise BadGateway("Preview refused the WebSocket", f"port {target.preview.port}: {exc}") from exc
            except OSError as exc:  # refused, reset, timed out
                if isinstance(exc, ConnectionRefusedError) and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    continue
                raise BadGateway("Preview is unreachable",
                                 f"nothing answers on port {target.preview.port} in the workspace") from exc

    async def _deny(self, websocket: WebSocket, exc: ReplicasError) -> None:
        """Refuse before accepting: with the error as an HTTP response where the server allows it."""
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(error_response(exc.status, exc.error, exc.details))
        else:
            await websocket.close(code=1008 if exc.status < 500 else 1011, reason=exc.error[:120])

    async def _relay(self, websocket: WebSocket, upstream: ClientConnection, target: Target) -> None:
        async def client_to_upstream() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close(_close_code(message.get("code")), message.get("reason") or "")
                    return
                if message.get("text") is not None:
                    await upstream.send(message["text"])
                elif message.get("bytes") is not None:
                    await upstream.send(message["bytes"])

        async def upstream_to_client() -> None:
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                async for message in upstream:
                    if isinstance(message, str):
                        await websocket.send_text(message)
                    else:
                        await websocket.send_bytes(message)
            received = upstream.protocol.close_rcvd
            code, reason = (received.code, received.reason) if received else (1006, "")
            if websocket.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await websocket.close(_close_code(code), reason)

        async def keep_awake() -> None:
            while True:
                await asyncio.sleep(WEBSOCKET_TOUCH_SECONDS)
                await self.app.state.replicas.touch(target.workspace)

        tasks = [asyncio.create_task(coro) for coro in (client_to_upstream(), upstream_to_client(), keep_awake())]
        try:
            done, _ = await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None and not isinstance(
                        exc, WebSocketDisconnect | websockets.exceptions.ConnectionClosed):
                    log.warning("preview websocket relay ended workspace_id=%s error=%r", target.workspace.id, exc)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if websocket.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await websocket.close(1011)


def mount_preview_proxy(app: FastAPI) -> None:
    """Serve `/previews/{token}/...` (HTTP and WebSocket) on `app`; see the module docstring."""
    proxy = PreviewProxy(app)
    app.state.preview_proxy = proxy

    async def redirect_to_slash(request: Request) -> Response:
        # Relative links in the previewed app resolve against the directory, so it must end in a slash.
        query = request.url.query
        target = f"{previews_service.proxy_path(request.path_params['token'])}/" + (f"?{query}" if query else "")
        return RedirectResponse(target, status_code=307)

    prefix = previews_service.PROXY_PREFIX
    app.router.add_route(prefix + "/{token}", redirect_to_slash, methods=HTTP_METHODS, include_in_schema=False)
    app.router.add_route(prefix + "/{token}/{path:path}", proxy.http, methods=HTTP_METHODS, include_in_schema=False)
    app.router.add_websocket_route(prefix + "/{token}/{path:path}", proxy.websocket)
