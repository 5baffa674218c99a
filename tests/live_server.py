"""A real `replicas` control plane on a loopback port, for the clients' tests (the SDK, the CLI): uvicorn
runs the app in a thread with its own event loop, exactly as `replicas serve` does, so every request the
clients make is real HTTP. `call()` runs a coroutine on the server's loop (minting keys, cleaning up).

    with LiveServer(settings) as server:
        key = server.new_org_key()
        Replicas(server.url, api_key=key).replicas.list()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import uvicorn

from replicas.api.app import create_app
from replicas.services import auth
from replicas.settings import Settings


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port (for `serving`; its port can be named in settings first)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serving(app: Any, sock: socket.socket | None = None, *, lifespan: str = "off",
                  graceful: float = 2) -> AsyncIterator[str]:
    """`app` served by uvicorn over real HTTP on this event loop (the test's: fixtures and server share its
    database connections), on `sock` or a new loopback socket; yields the base URL. `lifespan="off"` for an app
    the `app` fixture already started."""
    sock = sock or loopback_socket()
    server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_level="warning",
                                           timeout_graceful_shutdown=graceful))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


def live_settings(request, tmp_path_factory, **values) -> Settings:
    """Settings for a module's server on the database of `request.param` ("sqlite" or "postgresql")."""
    root = tmp_path_factory.mktemp("server")
    if request.param == "sqlite":
        database_url = f"sqlite:///{root / 'replicas.db'}"
    else:
        database_url = request.getfixturevalue("postgres_url")
    return Settings(data_dir=root / "data", database_url=database_url, secret_key=None, cron_enabled=False,
                    pool_enabled=False, boot_takeover_enabled=False, **values)


class LiveServer:
    def __init__(self, settings: Settings):
        # The socket first: the settings then name the port the server really listens on (the workspaces
        # get it as REPLICAS_API_URL).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.settings = settings.model_copy(update={"host": "127.0.0.1", "port": self.port})
        self.app = create_app(self.settings)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        sock = self._socket
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[sock])

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), name=f"replicas-{self.port}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the replicas server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._server = self._thread = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 120) -> Any:
        """Run `coroutine` on the server's event loop (where its database connections live) and wait."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def new_org_key(self, name: str | None = None) -> str:
        """A new organization (a unique name unless given) and an org API key of it."""

        async def mint() -> str:
            async with self.app.state.sessions() as session:
                org = await auth.get_or_create_organization(session, name or f"org-{uuid.uuid4().hex[:8]}")
                key = await auth.create_org_key(session, org, name="test")
                await session.commit()
            return key

        return self.call(mint())

    def new_user_key(self, email: str, org_key_name: str | None = None) -> str:
        """A member (of a new organization) with a personal API key."""
        from replicas.crypto import hash_api_key, new_api_key
        from replicas.store.models import ApiKey

        async def mint() -> str:
            async with self.app.state.sessions() as session:
                org = await auth.get_or_create_organization(session, org_key_name or f"org-{uuid.uuid4().hex[:8]}")
                user = await auth.create_user(session, org, email)
                key = new_api_key()
                session.add(ApiKey(organization_id=org.id, user_id=user.id, name="test",
                                   key_hash=hash_api_key(key), key_prefix=key[:16]))
                await session.commit()
            return key

        return self.call(mint())


def replica_settings(request, tmp_path_factory, agent_tools, **values) -> Settings:
    """`live_settings` for servers whose workspaces run the real agent CLIs (local runtime, fast timers)."""
    return live_settings(request, tmp_path_factory, tools_dir=agent_tools, runtime="local",
                         lifecycle_interval_seconds=0.2, **values)


def shop_environment(server: LiveServer, key: str, origin, model) -> dict:
    """Through the API as a user would: repository `acme/shop` at `origin`, environment `shop` bound to it,
    with the variables that point the agents at the scripted `model`. Returns the environment."""
    from replicas.client import Replicas

    with Replicas(server.url, api_key=key) as client:
        repository = client.repositories.create(name="acme/shop", url=str(origin))
        environment = client.environments.create(name="shop", repository_id=repository.id)
        for name, value in {**model.anthropic_env(), **model.openai_env(), "REPLICAS_AGENT_MAX_RETRIES": "1"}.items():
            client.environments.variables.create(environment.id, key=name, value=value)
    return environment.to_json()


def destroy_workspaces(server: LiveServer) -> None:
    """Stop and remove every workspace this server started (their processes outlive a control plane)."""
    from tests.replicas.conftest import destroy_all

    server.call(destroy_all(server.app))


def settle(client, replica_id: str, turns: int, timeout: float = 90) -> None:
    """Wait until the replica is active and idle, with `turns` of Claude Code's turns ended in its history."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replica = client.replicas.get(replica_id)
        ended = [e for e in client.replicas.history(replica_id, limit=500).events if e.type == "claude-result"]
        if replica.status == "active" and not any(c.processing for c in replica.chats) and len(ended) >= turns:
            return
        time.sleep(0.3)
    raise AssertionError(f"replica {replica_id} did not settle after {turns} turn(s)")
