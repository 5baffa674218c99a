"""Previews: register ports (agent mode and org auth), then reach a server started inside a real workspace
through the control plane's proxy, over HTTP and WebSocket, with the app served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
import json
import shlex
import socket
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
import websockets
from sqlalchemy import select
from websockets.asyncio.client import connect as ws_connect

from replicas.api.proxy import mount_preview_proxy
from replicas.api.routers import previews as previews_router
from replicas.runtime import RuntimeStatus
from replicas.services.principal import Principal
from replicas.settings import Settings
from replicas.store.models import Organization, Workspace
from tests.contract import assert_contract

AGENT_DELETE = "/v1/previews/{port}"
ORG_DELETE = "/v1/workspaces/{workspaceId}/previews/{port}"

# The server the workspace runs: plain ASGI on uvicorn (from the control plane's venv, which the
# sandbox sees read-only). HTTP answers with what it received; WebSocket echoes and closes on request.
SERVER = r'''
import json, os, sys
import uvicorn

def pid1():
    try:
        return open("/proc/1/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""

async def app(scope, receive, send):
    if scope["type"] == "http":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/redirect":
            await send({"type": "http.response.start", "status": 302,
                        "headers": [(b"location", b"/landed"), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        payload = json.dumps({
            "method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode(),
            "body": body.decode(errors="replace"), "home": os.environ.get("HOME"), "pid1": pid1(),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        }).encode()
        await send({"type": "http.response.start", "status": 200 if scope["path"] != "/teapot" else 418,
                    "headers": [(b"content-type", b"application/json"), (b"x-served-by", b"workspace"),
                                (b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2; Path=/")]})
        await send({"type": "http.response.body", "body": payload})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        protocols = scope.get("subprotocols") or []
        await send({"type": "websocket.accept", "subprotocol": "echo" if "echo" in protocols else None})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "close":
                await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": "echo:" + message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off")
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def proxy_port() -> int:
    return _free_port()


@pytest.fixture
def settings(tmp_path, database_url, proxy_port) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, secret_key=None,
                    public_url=f"http://127.0.0.1:{proxy_port}")


@pytest.fixture
async def wired(app):
    """The app with the previews router and the proxy (whichever app.py does not wire yet)."""
    if not any(getattr(r, "path", None) == "/v1/previews" for r in app.routes):
        app.include_router(previews_router.router)
    if not hasattr(app.state, "preview_proxy"):
        mount_preview_proxy(app)
    yield app
    await app.state.preview_proxy.aclose()


@pytest.fixture
async def served(wired, proxy_port, settings) -> str:
    """The app on a real loopback port (WebSockets need a real server); returns its base URL."""
    server = uvicorn.Server(uvicorn.Config(wired, host="127.0.0.1", port=proxy_port, lifespan="off",
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    yield settings.public_url
    server.should_exit = True
    await task


async def _org_id(app, org) -> uuid.UUID:
    async with app.state.sessions() as session:
        return await session.scalar(select(Organization.id).where(Organization.name == org.name))


async def _workspace_row(app, org) -> tuple[Workspace, str]:
    """A workspace record with an engine secret and no runtime: enough to register previews."""
    secret = f"engine-{uuid.uuid4().hex}"
    async with app.state.sessions() as session:
        row = Workspace(organization_id=await _org_id(app, org), name="ws", status="active",
                        engine_secret_encrypted=app.state.box.encrypt(secret))
        session.add(row)
        await session.commit()
    return row, secret


def _agent(workspace: Workspace, secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}", "X-Workspace-Id": str(workspace.id)}


# --- registering previews (no runtime needed; SQLite and PostgreSQL) -----------------------------------

async def test_agent_mode_creates_lists_and_deletes_previews(wired, org, anonymous, settings):
    workspace, secret = await _workspace_row(wired, org)
    headers = _agent(workspace, secret)

    created = await anonymous.post("/v1/previews", json={"port": 3000}, headers=headers)
    assert created.status_code == 201
    body = created.json()
    assert body["port"] == 3000 and body["authenticated"] is False and body["createdAt"].endswith("Z")
    token = body["publicUrl"].removeprefix(f"{settings.public_url}/previews/").removesuffix("/")
    assert body["publicUrl"] == f"{settings.public_url}/previews/{token}/" and len(token) >= 32

    again = await anonymous.post("/v1/previews", json={"port": 3000, "authenticated": True}, headers=headers)
    assert again.status_code == 200
    assert again.json()["publicUrl"] == body["publicUrl"] and again.json()["authenticated"] is True
    await anonymous.post("/v1/previews", json={"port": 80}, headers=headers)

    listed = (await anonymous.get("/v1/previews", headers=headers)).json()["previews"]
    assert [(p["port"], p["authenticated"]) for p in listed] == [(80, False), (3000, True)]

    deleted = await anonymous.delete("/v1/previews/3000", headers=headers)
    assert assert_contract(deleted, AGENT_DELETE) == {"success": True, "port": 3000}
    missing = await anonymous.delete("/v1/previews/3000", headers=headers)
    assert missing.status_code == 404 and assert_contract(missing, AGENT_DELETE)["error"] == "Preview not found"
    assert [p["port"] for p in (await anonymous.get("/v1/previews", headers=headers)).json()["previews"]] == [80]


async def test_bad_ports_are_400(wired, org, anonymous):
    workspace, secret = await _workspace_row(wired, org)
    headers = _agent(workspace, secret)
    for port in (0, 65536, -1):
        response = await anonymous.delete(f"/v1/previews/{port}", headers=headers)
        assert response.status_code == 400, port
        assert_contract(response, AGENT_DELETE)
        assert (await anonymous.post("/v1/previews", json={"port": port}, headers=headers)).status_code == 400
    assert (await anonymous.delete("/v1/previews/http", headers=headers)).status_code == 400
    assert (await anonymous.post("/v1/previews", json={}, headers=headers)).status_code == 400


async def test_agent_mode_needs_the_workspaces_own_engine_secret(wired, org, make_org, anonymous, client):
    workspace, secret = await _workspace_row(wired, org)
    other, other_secret = await _workspace_row(wired, await make_org())
    attempts = [
        {},
        {"Authorization": f"Bearer {secret}"},
        {"X-Workspace-Id": str(workspace.id)},
        {"Authorization": "Bearer wrong", "X-Workspace-Id": str(workspace.id)},
        {"Authorization": f"Bearer {other_secret}", "X-Workspace-Id": str(workspace.id)},
        {"Authorization": f"Bearer {secret}", "X-Workspace-Id": "not-a-uuid"},
        {"Authorization": f"Bearer {secret}", "X-Workspace-Id": str(uuid.uuid4())},
    ]
    for headers in attempts:
        response = await anonymous.delete("/v1/previews/3000", headers=headers)
        assert response.status_code == 401, headers
        assert assert_contract(response, AGENT_DELETE)["error"] == "Invalid token"
    # An org API key is not an engine secret.
    response = await client.delete("/v1/previews/3000", headers={"X-Workspace-Id": str(workspace.id)})
    assert response.status_code == 401


async def test_org_endpoints_are_scoped_to_the_organization(wired, org, make_org, anonymous):
    workspace, secret = await _workspace_row(wired, org)
    path = f"/v1/workspaces/{workspace.id}/previews"
    created = await org.client.post(path, json={"port": 5173})
    assert created.status_code == 201 and created.json()["port"] == 5173
    assert [p["port"] for p in (await org.client.get(path)).json()["previews"]] == [5173]
    # The agent sees the same previews for its workspace.
    agent_list = (await anonymous.get("/v1/previews", headers=_agent(workspace, secret))).json()["previews"]
    assert agent_list == (await org.client.get(path)).json()["previews"]

    stranger = await make_org()
    for response in (await stranger.client.get(path), await stranger.client.delete(f"{path}/5173")):
        assert response.status_code == 404
    assert_contract(await stranger.client.delete(f"{path}/5173"), ORG_DELETE)
    assert (await anonymous.get(path)).status_code == 401
    assert_contract(await anonymous.delete(f"{path}/5173"), ORG_DELETE)

    # Agent mode on the workspace family: its own workspace only (spec §10 #36).
    other, other_secret = await _workspace_row(wired, org)
    assert (await anonymous.get(path, headers=_agent(other, other_secret))).status_code == 404
    assert (await anonymous.get(path, headers=_agent(workspace, secret))).status_code == 200

    deleted = await org.client.delete(f"{path}/5173")
    assert assert_contract(deleted, ORG_DELETE) == {"success": True, "port": 5173}
    again = await org.client.delete(f"{path}/5173")
    assert again.status_code == 404 and assert_contract(again, ORG_DELETE)["error"] == "Preview not found"
    assert_contract(await org.client.delete(f"{path}/0"), ORG_DELETE)


async def test_unknown_token_is_404_in_the_error_shape(wired, anonymous):
    response = await anonymous.get("/previews/not-a-token/index.html")
    assert response.status_code == 404 and response.json() == {"error": "Preview not found", "details": None}


async def test_nothing_listening_is_502(served, wired, org, anonymous):
    workspace, secret = await _workspace_row(wired, org)
    # A workspace record without a runtime handle: the proxy cannot reach anything.
    async with wired.state.sessions() as session:
        row = await session.get(Workspace, workspace.id)
        row.runtime_state = {"backend": "local", "workspace_id": str(workspace.id),
                             "workspace_dir": str(wired.state.replicas.manager.runtime.workspaces_root
                                                  / str(workspace.id))}
        await session.commit()
    created = await anonymous.post("/v1/previews", json={"port": _free_port()}, headers=_agent(workspace, secret))
    path = "/previews/" + created.json()["publicUrl"].split("/previews/", 1)[1]
    response = await anonymous.get(path)
    assert response.status_code == 502 and response.json()["error"] == "Preview is unreachable"
    # Without the trailing slash: redirected to it, so that relative links resolve inside the preview.
    bare = await anonymous.get(path.rstrip("/") + "?x=1")
    assert bare.status_code == 307 and bare.headers["location"] == path + "?x=1"
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with ws_connect("ws" + created.json()["publicUrl"].removeprefix("http"), proxy=None):
            pass
    assert refused.value.response.status_code == 502


# --- through the proxy to a server inside a real workspace (local runtime, SQLite) ---------------------

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def workspace_server(wired, org, settings):
    """A real workspace whose start hook launches SERVER, detached, on a free port; yields (workspace, port)."""
    port = _free_port()
    client = org.client
    env_id = (await client.post("/v1/environments", json={"name": "previews"})).json()["environment"]["id"]
    created = await client.post(f"/v1/environments/{env_id}/files",
                                json={"name": "server", "path": "~/preview_server.py", "content": SERVER})
    assert created.status_code == 201, created.text
    hook = (f"setsid {shlex.quote(sys.executable)} \"$HOME/preview_server.py\" {port} "
            f"> \"$HOME/preview_server.log\" 2>&1 < /dev/null &\n")
    saved = await client.post(f"/v1/environments/{env_id}/start-hooks/save", json={"content": hook})
    assert saved.status_code == 201, saved.text

    manager = wired.state.replicas.manager
    manager.settings.resolved_tools_dir.mkdir(parents=True, exist_ok=True)
    principal = Principal.system(await _org_id(wired, org))
    workspace = await manager.create(principal, env_id, name="previews")
    home = Path(manager._handle(workspace).home)
    try:
        await _wait_listening(port, home)
        yield workspace, port
    finally:
        await manager.destroy(workspace)


async def _wait_listening(port: int, home: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(trust_env=False) as probe:
        while True:
            try:
                await probe.get(f"http://127.0.0.1:{port}/")
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    log = home / "preview_server.log"
                    raise AssertionError(f"server in the workspace did not start: "
                                         f"{log.read_text() if log.exists() else '(no log)'}") from None
                await asyncio.sleep(0.1)


async def _reload(app, workspace: Workspace) -> Workspace:
    async with app.state.sessions() as session:
        return await session.get(Workspace, workspace.id)


async def _create_preview(base: str, wired, workspace: Workspace, port: int, **body) -> dict:
    secret = wired.state.box.decrypt(workspace.engine_secret_encrypted)
    async with httpx.AsyncClient(base_url=base, trust_env=False) as agent:
        response = await agent.post("/v1/previews", json={"port": port, **body},
                                    headers={"Authorization": f"Bearer {secret}", "X-Workspace-Id": str(workspace.id)})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.slow
@sqlite_only
async def test_http_and_websocket_reach_a_server_inside_the_workspace(served, wired, workspace_server, org):
    workspace, port = workspace_server
    preview = await _create_preview(served, wired, workspace, port)
    # The engine journaled `preview.changed` (what the replica's event stream carries).
    journal = Path(wired.state.replicas.manager._handle(workspace).home) / ".replicas" / "engine" / "events.jsonl"
    changed = [json.loads(line) for line in journal.read_text().splitlines() if '"preview.changed"' in line]
    assert changed[-1]["payload"]["previews"] == [{"port": port, "publicUrl": preview["publicUrl"],
                                                   "createdAt": preview["createdAt"]}]
    before = (await _reload(wired, workspace)).last_activity_at
    url = preview["publicUrl"]
    prefix = "/previews/" + url.split("/previews/", 1)[1].rstrip("/")

    async with httpx.AsyncClient(trust_env=False) as browser:
        response = await browser.get(url + "some/page%20x?q=1&r=two", headers={"X-Custom": "yes"})
        assert response.status_code == 200, response.text
        seen = response.json()
        assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/some/page x", "q=1&r=two")
        assert seen["home"] == wired.state.replicas.manager._handle(workspace).home
        if wired.state.replicas.manager._handle(workspace).sandboxed:
            assert "bwrap" in seen["pid1"]  # the server runs in the workspace's pid namespace
        assert seen["headers"]["x-custom"] == "yes"
        assert seen["headers"]["host"] == f"127.0.0.1:{port}"
        assert seen["headers"]["x-forwarded-host"] == served.removeprefix("http://")
        assert seen["headers"]["x-forwarded-prefix"] == prefix
        assert seen["headers"]["x-forwarded-proto"] == "http"
        assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert response.headers["x-served-by"] == "workspace"
        assert (await _reload(wired, workspace)).last_activity_at > before  # traffic is activity
        assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]

        # The proxy keeps no cookies of its own: a second visitor gets none of the first one's.
        async with httpx.AsyncClient(trust_env=False) as second_visitor:
            assert "cookie" not in (await second_visitor.get(url)).json()["headers"]

        posted = await browser.post(url + "echo", content=b"x" * 200_000 + b"end")
        assert posted.json()["method"] == "POST" and posted.json()["body"] == "x" * 200_000 + "end"
        assert (await browser.put(url + "echo", json={"a": 1})).json()["body"] == '{"a":1}'
        assert (await browser.get(url + "teapot")).status_code == 418
        redirect = await browser.get(url + "redirect")
        assert redirect.status_code == 302 and redirect.headers["location"] == f"{prefix}/landed"

    ws_url = "ws" + url.removeprefix("http") + "socket?room=1"
    async with ws_connect(ws_url, subprotocols=["echo"], proxy=None) as ws:
        assert ws.subprotocol == "echo"
        await ws.send("hello")
        assert await ws.recv() == "echo:hello"
        await ws.send(b"\x01\x02\x03")
        assert await ws.recv() == b"\x03\x02\x01"
        await ws.send("close")
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await ws.recv()
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye")

    # The client closing first closes the upstream too; the server keeps serving new sockets.
    async with ws_connect(ws_url, proxy=None) as ws:
        await ws.send("again")
        assert await ws.recv() == "echo:again"

    # Deleting the preview (org auth, contract shape) takes the URL down.
    deleted = await org.client.delete(f"/v1/workspaces/{workspace.id}/previews/{port}")
    assert assert_contract(deleted, ORG_DELETE) == {"success": True, "port": port}
    async with httpx.AsyncClient(trust_env=False) as browser:
        gone = await browser.get(url)
        assert gone.status_code == 404 and gone.json()["error"] == "Preview not found"
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with ws_connect(ws_url, proxy=None):
            pass
    assert refused.value.response.status_code == 404


@pytest.mark.slow
@sqlite_only
async def test_authenticated_preview_needs_an_api_key_of_the_workspaces_org(served, wired, workspace_server, org,
                                                                          make_org):
    workspace, port = workspace_server
    url = (await _create_preview(served, wired, workspace, port, authenticated=True))["publicUrl"]
    stranger = await make_org()
    async with httpx.AsyncClient(trust_env=False) as browser:
        assert (await browser.get(url)).status_code == 401
        assert (await browser.get(url, headers={"Authorization": "Bearer sk_replicas_" + "x" * 32})).status_code == 401
        assert (await browser.get(url, headers={"Authorization": f"Bearer {stranger.key}"})).status_code == 401
        assert (await browser.get(url, headers={"Authorization": "Bearer secret"})).json()["error"] == "Invalid token"

        with_key = await browser.get(url + "x", headers={"Authorization": f"Bearer {org.key}",
                                                         "Cookie": "theirs=1; replicas_preview=nope"})
        assert with_key.status_code == 200
        # The key is ours, not the workspace's: it is not passed on.
        assert "authorization" not in with_key.json()["headers"]
        assert with_key.json()["headers"]["cookie"] == "theirs=1"
    async with httpx.AsyncClient(trust_env=False, cookies={"replicas_preview": org.key}) as browser:
        with_cookie = await browser.get(url)
        assert with_cookie.status_code == 200 and "cookie" not in with_cookie.json()["headers"]

    ws_url = "ws" + url.removeprefix("http")
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with ws_connect(ws_url, proxy=None):
            pass
    assert refused.value.response.status_code == 401
    async with ws_connect(ws_url, additional_headers={"Authorization": f"Bearer {org.key}"}, proxy=None) as ws:
        await ws.send("hi")
        assert await ws.recv() == "echo:hi"


@pytest.mark.slow
@sqlite_only
async def test_traffic_to_a_sleeping_workspace_wakes_it(served, wired, workspace_server):
    workspace, port = workspace_server
    url = (await _create_preview(served, wired, workspace, port))["publicUrl"]
    manager = wired.state.replicas.manager
    principal = Principal.system(workspace.organization_id)
    await wired.state.replicas.sleep(principal, str(workspace.id))
    slept = await wired.state.replicas.get_workspace(principal, str(workspace.id))
    assert slept.status == "sleeping" and await manager.poll(slept) == RuntimeStatus.STOPPED
    async with httpx.AsyncClient(trust_env=False, timeout=120) as browser:
        response = await browser.get(url + "after-wake")
    assert response.status_code == 200 and response.json()["path"] == "/after-wake"
    row = await _reload(wired, workspace)
    assert row.status == "active"
    assert json.loads(response.text)["home"] == manager._handle(row).home
