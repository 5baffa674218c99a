"""Replica API fixtures: the app with the real agent CLIs and the scripted model, and an environment
bound to a real git repository whose variables point the agents at the scripted model.

Per-test settings: `@pytest.mark.replica_settings(max_active_workspaces=1, ...)`.

Runtime backend: every test runs on the `local` backend unless it asks for more. The `replica_backend`
fixture ("local" by default) is merged into `settings`; a module or test that must also hold on the
`docker` backend (each workspace a container from the test base image, `tests/docker_support.py`)
parametrizes it indirectly, with the shorthand `ON_BOTH_BACKENDS`::

    pytestmark = [..., ON_BOTH_BACKENDS]          # or on one test: @ON_BOTH_BACKENDS

    @on_both_backends(docker_xfail="why")        # docker variant expected to fail (strict xfail)

The docker variant is skipped, with the reason printed, where dockerd or the base image cannot be had.
Tests that start their own `replicas serve` take the same choice as environment variables
(`backend_env(replica_backend)`). At teardown on docker, `replica_env` also checks that no container or
volume of this test's data dir is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from replicas.settings import Settings
from replicas.store.models import Workspace
from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures
from tests.docker_support import BASE_IMAGE_TAG, ensure_base_image

VERSIONED = {"X-Replicas-Api-Version": "2026-05-17"}

BACKENDS = ("local", "docker")
ON_BOTH_BACKENDS = pytest.mark.parametrize("replica_backend", BACKENDS, indirect=True)


def on_both_backends(docker_xfail: str | None = None):
    """Parametrize `replica_backend` over both backends; with `docker_xfail`, the docker variant is a
    strict xfail with that reason (a known product bug on docker: it must fail until fixed)."""
    if docker_xfail is None:
        return ON_BOTH_BACKENDS
    docker = pytest.param("docker", marks=pytest.mark.xfail(reason=docker_xfail, strict=True))
    return pytest.mark.parametrize("replica_backend", ["local", docker], indirect=True)


@pytest.fixture
def replica_backend(request) -> str:
    """The runtime backend of this test's workspaces: "local" unless parametrized (see the module docstring)."""
    backend = getattr(request, "param", "local")
    assert backend in BACKENDS, backend
    if backend == "docker":
        reason = ensure_base_image()
        if reason:
            print(f"\nSKIP docker backend: {reason}")
            pytest.skip(f"docker backend: {reason}")
    return backend


def backend_settings(backend: str) -> dict:
    """Settings overrides that put the workspaces on `backend`. Docker runs the control plane's own engine
    in the test base image (`host-python`, the development mode: no image build per source change); the
    default, the image's own engine, is tested with a `replicas images build` image in tests/docker."""
    if backend == "docker":
        return {"runtime": "docker", "docker_image": BASE_IMAGE_TAG, "docker_network": "host",
                "docker_engine": "host-python"}
    return {"runtime": "local"}


def backend_env(backend: str) -> dict[str, str]:
    """The same overrides as `REPLICAS_*` environment variables, for a `replicas serve` subprocess."""
    return {f"REPLICAS_{key.upper()}": value for key, value in backend_settings(backend).items()}


def docker_leftovers(data_dir: Path) -> list[str]:
    """The containers and volumes (`kind:name`) that the docker backend labelled with this data dir."""
    label = f"replicas.data_dir={os.path.realpath(data_dir)}"
    found = []
    for kind, argv in (("container", ["docker", "ps", "-a", "--format", "{{.Names}}"]),
                       ("volume", ["docker", "volume", "ls", "--format", "{{.Name}}"])):
        listed = subprocess.run([*argv, "--filter", f"label={label}"], capture_output=True, text=True,
                                timeout=60, check=True)
        found += [f"{kind}:{name}" for name in listed.stdout.split()]
    return found


def remove_docker_leftovers(data_dir: Path) -> list[str]:
    """Force-remove what `docker_leftovers` finds (only this test's: the label holds its data dir)."""
    leftovers = docker_leftovers(data_dir)
    for item in leftovers:
        kind, name = item.split(":", 1)
        argv = ["docker", "rm", "-f", name] if kind == "container" else ["docker", "volume", "rm", "-f", name]
        subprocess.run(argv, capture_output=True, timeout=60, check=False)
    return leftovers


@pytest.fixture
def settings(request, tmp_path, database_url, agent_tools, replica_backend) -> Settings:  # noqa: F811
    """The root fixture's settings, for the Replica API: fast webhook and lifecycle timers, the agent tools,
    the `replica_backend`, and the test's `replica_settings` marker."""
    marker = request.node.get_closest_marker("replica_settings")
    values = {"webhook_retry_delays": [0.2, 0.5], "webhook_poll_seconds": 0.1, "lifecycle_interval_seconds": 0.2,
              "cron_enabled": False, "pool_enabled": False, **backend_settings(replica_backend),
              **(marker.kwargs if marker else {})}
    return Settings(data_dir=tmp_path / "data", database_url=database_url, secret_key=None, tools_dir=agent_tools,
                    **values)


@dataclass
class ReplicaEnv:
    environment_id: str
    origin: Path
    repository_id: str


@pytest.fixture
async def replica_env(app, client, make_git_repo, model) -> ReplicaEnv:  # noqa: F811
    """An environment bound to a `shop` repository, with the scripted model's variables. At teardown,
    every workspace's processes are stopped (they outlive the control plane by design)."""
    origin = make_git_repo("shop", {"README.md": "# shop\n", "app.py": "print('hi')\n"})
    repo = (await client.post("/v1/replica/repositories", json={"name": "acme/shop", "url": str(origin)})).json()
    env = (await client.post("/v1/environments", json={"name": "shop", "repository_id": repo["repository"]["id"]}))
    env_id = env.json()["environment"]["id"]
    for key, value in {**model.anthropic_env(), **model.openai_env(), "REPLICAS_AGENT_MAX_RETRIES": "1"}.items():
        response = await client.post(f"/v1/environments/{env_id}/variables", json={"key": key, "value": value})
        assert response.status_code == 201, response.text
    yield ReplicaEnv(env_id, origin, repo["repository"]["id"])
    await destroy_all(app)
    if app.state.settings.runtime == "docker":
        left = remove_docker_leftovers(app.state.settings.data_dir)
        assert left == [], f"destroy_all left docker objects behind: {left}"


@pytest.fixture
async def own_database():
    """A PostgreSQL database for this test alone, for `replicas serve` processes whose loops must see no other
    test's rows (the session's database is shared); dropped at the end."""
    from tests.conftest import PG_ADMIN_URL, _pg_execute

    name = f"replicas_own_{uuid.uuid4().hex[:10]}"
    await _pg_execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    await _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def destroy_all(app) -> None:
    """Cancel running transitions, then stop and remove every sandbox of this app (and its record: the
    PostgreSQL database is shared by the whole test session). Through the app's runtime, so on docker
    this removes each workspace's container and volume too."""
    from sqlalchemy import delete, select, update

    from replicas.services import base_snapshots
    from replicas.store.models import WarmPoolConfig

    service = app.state.replicas
    # Let transitions that are about to finish (a wake the test saw reach `active`) finish; cancel the rest.
    pending = [task for task in service._transitions.values() if not task.done()]
    if pending:
        await asyncio.wait(pending, timeout=10)
    for task in list(service._transitions.values()):
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    root = str(app.state.settings.data_dir.resolve())
    async with app.state.sessions() as session:
        rows = list(await session.scalars(select(Workspace).where(Workspace.runtime_state.is_not(None))))
    mine = [row for row in rows if str(row.runtime_state.get("workspace_dir", "")).startswith(root)]
    for row in mine:
        await service.pump.stop(row.id)
        with contextlib.suppress(Exception):
            await service.manager.runtime.destroy(service.manager.runtime.load_state(row.runtime_state))
    async with app.state.sessions() as session:
        for row in mine:
            await session.execute(delete(Workspace).where(Workspace.id == row.id))
        await session.commit()
    # Base snapshots (their disks, and on docker their volumes): this app's filler stopped and its pools off,
    # then nothing is current.
    for task in service._loops:
        if task.get_name() == "warm-pool-filler":
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    await service.pools.stop()
    async with app.state.sessions() as session:
        await session.execute(update(WarmPoolConfig).values(enabled=False))
        await session.commit()
    await base_snapshots.collect(service.manager, set(), 0)


async def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    """Poll an async predicate until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def replica(client: httpx.AsyncClient, replica_id: str) -> dict:
    response = await client.get(f"/v1/replica/{replica_id}")
    assert response.status_code == 200, response.text
    return response.json()["replica"]


async def row_of(app, replica_id: str) -> Workspace | None:
    async with app.state.sessions() as session:
        return await session.get(Workspace, uuid.UUID(replica_id))


async def set_row(app, replica_id: str, **values) -> None:
    async with app.state.sessions() as session:
        row = await session.get(Workspace, uuid.UUID(replica_id))
        for key, value in values.items():
            setattr(row, key, value)
        await session.commit()


async def status_of(app, replica_id: str) -> str | None:
    row = await row_of(app, replica_id)
    return row.status if row else None


async def settled(app, replica_id: str, turns: int = 1) -> dict | None:
    """The workspace's projected snapshot once `turns` turns completed and no chat is processing."""
    row = await row_of(app, replica_id)
    snapshot = row.snapshot or {}
    busy = any(chat.get("processing") for chat in snapshot.get("chats", []))
    if row.status == "active" and snapshot.get("turns_completed", 0) >= turns and not busy \
            and not row.pending_messages:
        return snapshot
    return None


def checkout(settings: Settings, replica_id: str, repo: str = "shop") -> Path:
    """Where the workspace's checkout of `repo` lives, seen from the host: the same path on both backends
    (docker mounts the workspace directory's volume at its own path)."""
    return (settings.data_dir / "workspaces" / replica_id / "home" / "workspaces" / repo).resolve()


async def create(client: httpx.AsyncClient, env: ReplicaEnv, message: str, *, versioned: bool = True,
                 **fields) -> dict:
    """POST /v1/replica; returns the created ReplicaListItem (asserting 201 and the contract)."""
    from tests.contract import assert_contract

    response = await client.post("/v1/replica", headers=VERSIONED if versioned else {},
                                 json={"name": fields.pop("name", "r"), "environment_id": env.environment_id,
                                       "message": message, **fields})
    assert response.status_code == 201, response.text
    return assert_contract(response, "/v1/replica")["replica"]


def assert_history(response: httpx.Response) -> dict:
    """GET /v1/replica/{id}/history against the contract. The contract's HistoryEvent wraps an AgentEvent
    in `payload` while its prose (and the hosted API) sends the AgentEvent itself as the history event
    ({timestamp, type, payload: the SDK message}); each event is checked as the AgentEvent it is."""
    from tests.contract import assert_contract, validate_schema

    body = response.json()
    if response.status_code != 200:
        return assert_contract(response, "/v1/replica/{id}/history")
    validate_schema({**body, "events": []}, "ReadReplicaHistoryResponse")
    for event in body["events"]:
        validate_schema(event, "AgentEvent")
    return body


class Receiver:
    """A webhook receiver on 127.0.0.1 that records each POST (raw body and headers); the first
    `fail_first` requests are answered 500."""

    def __init__(self, fail_first: int = 0):
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answered: list[int] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = 500 if len(receiver.answered) < receiver.fail_first else 200
                receiver.answered.append(status)
                if status == 200:
                    receiver.received.append((dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]

    async def wait(self, event_type: str, count: int = 1) -> list[dict]:
        async def found():
            matching = [e for e in self.events() if e["type"] == event_type]
            return matching if len(matching) >= count else None

        return await wait_for(found, timeout=30, what=f"webhook {event_type}")
