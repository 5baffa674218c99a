"""A control plane refuses, with a clear error, a workspace image whose engine it cannot speak to.

The images here run a stand-in engine FROM the test base (tests/docker_support.py): a few lines of Python on
the workspace's unix socket that check the secret and answer `GET /health` as an engine of another release
would. `old` answers what the engine answered before it reported its protocol (an image built from an
earlier checkout); `newer` reports a protocol this control plane does not know. Through the API, with the
docker backend's default settings (the image's own engine): the replica ends in `error` with a message that
names the image, its engine and what to do, a message to it is refused in the contract's error shape, and
the refused engine does not keep running. A wake into an incompatible image is refused the same way.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from replicas import __version__
from replicas.engine_protocol import ENGINE_PROTOCOL
from replicas.errors import ServiceUnavailable
from replicas.services.principal import Principal
from replicas.services.workspaces import WorkspaceManager
from replicas.settings import Settings
from replicas.store.models import Organization
from tests.contract import assert_contract
from tests.docker_support import BASE_IMAGE_TAG, ensure_base_image, ensure_derived_image
from tests.replicas.conftest import remove_docker_leftovers, row_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

# The engine's answer before it reported its protocol (engine/server.py, until engine_protocol.py).
OLD_HEALTH = {"status": "ok", "version": "v1", "lastSeq": 0}
NEWER_HEALTH = {**OLD_HEALTH, "ok": True, "engineVersion": "9.0.0", "protocol": 99}

STAND_IN_ENGINE = r"""
import http.server, json, os, socketserver, sys

HEALTH = json.loads(sys.argv[1]) if len(sys.argv) > 1 else OLD_HEALTH

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

class Handler(http.server.BaseHTTPRequestHandler):
    def address_string(self):
        return "engine"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.headers.get("X-Replicas-Engine-Secret") != os.environ["REPLICAS_ENGINE_SECRET"]:
            status, body = 401, {"error": "missing or wrong engine secret"}
        elif self.path == "/health":
            status, body = 200, HEALTH
        else:
            status, body = 404, {"error": "not found"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

# Bound relative to its directory, as the engine does: a test's data dir is deeper than sun_path allows.
os.chdir(os.path.dirname(os.environ["REPLICAS_ENGINE_SOCKET"]))
name = os.path.basename(os.environ["REPLICAS_ENGINE_SOCKET"])
if os.path.exists(name):
    os.unlink(name)
print("stand-in engine listening", flush=True)
Server(name, Handler).serve_forever()
""".replace("OLD_HEALTH", repr(OLD_HEALTH))


@pytest.fixture(scope="module")
def old_engine_image(tmp_path_factory) -> str:
    if reason := ensure_base_image():
        print(f"\nSKIP engine protocol tests: {reason}")
        pytest.skip(reason)
    script = tmp_path_factory.mktemp("stand-in") / "engine.py"
    script.write_text(STAND_IN_ENGINE)
    tag, reason = ensure_derived_image("replicas-test-old-engine", "COPY engine.py /opt/old-engine/engine.py\n"
                                       'CMD ["python3", "/opt/old-engine/engine.py"]\n', {"engine.py": str(script)})
    assert tag, reason
    return tag


def _settings(tmp_path: Path, database_url: str, **docker) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, secret_key=None, cron_enabled=False,
                    runtime="docker", engine_start_timeout_seconds=20, **docker)


@pytest.fixture
def settings(request, tmp_path, database_url, old_engine_image) -> Settings:
    """The docker backend's defaults (the image's own engine), with the stand-in's image; `newer` passes the
    stand-in a newer engine's answer through REPLICAS_DOCKER_ENGINE_COMMAND."""
    docker = {"docker_image": old_engine_image}
    if getattr(request, "param", "old") == "newer":
        docker["docker_engine_command"] = ["python3", "/opt/old-engine/engine.py", json.dumps(NEWER_HEALTH)]
    yield _settings(tmp_path, database_url, **docker)
    remove_docker_leftovers(tmp_path / "data")


async def _environment(client, make_git_repo) -> str:
    origin = make_git_repo("shop", {"README.md": "# shop\n"})
    repo = (await client.post("/v1/replica/repositories", json={"name": "acme/shop", "url": str(origin)})).json()
    created = await client.post("/v1/environments", json={"name": "shop", "repository_id": repo["repository"]["id"]})
    assert created.status_code == 201, created.text
    return created.json()["environment"]["id"]


def _running(container: str) -> bool:
    done = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}", container], capture_output=True,
                          text=True, timeout=60, check=False)
    return done.stdout.strip() == "true"


@pytest.mark.parametrize(("settings", "reports"), [
    ("old", "an engine of unknown version, which reports no protocol version (older than this check)"),
    ("newer", "engine 9.0.0, which reports protocol 99"),
], indirect=["settings"])
async def test_an_image_whose_engine_speaks_another_protocol_is_refused(app, client, make_git_repo, settings,
                                                                        reports):
    environment_id = await _environment(client, make_git_repo)
    response = await client.post("/v1/replica", json={"name": "old-image", "environment_id": environment_id,
                                                      "message": "hello"})
    assert response.status_code == 201, response.text
    replica_id = response.json()["replica"]["id"]

    async def errored() -> dict | None:
        details = (await client.get(f"/v1/replica/{replica_id}")).json()["replica"]
        return details if details["status"] == "error" else None

    details = await wait_for(errored, timeout=60, what="the replica in error")
    expected = (f"Workspace engine is incompatible: image {settings.docker_image} runs {reports}; this control "
                f"plane (replicas {__version__}) needs engine protocol {ENGINE_PROTOCOL}: "
                "rebuild it with `replicas images build`")
    assert details["config"]["provisioning_error"]["message"] == expected

    message = await client.post(f"/v1/replica/{replica_id}/messages", json={"message": "are you there?"})
    assert message.status_code == 409
    assert assert_contract(message, "/v1/replica/{id}/messages") == {
        "error": "Workspace is in error state", "details": expected}

    # The refused engine was stopped: it did start (its log says so), and no longer runs.
    state = (await row_of(app, replica_id)).runtime_state
    assert "stand-in engine listening" in Path(state["workspace_dir"], "run", "engine.log").read_text()
    assert not _running(state["container_name"])


async def test_a_wake_into_an_incompatible_image_is_refused(app, org, client, make_git_repo, tmp_path, database_url,
                                                            old_engine_image):
    """Slept on this release's engine (the development mode, in the test base image), woken on an image of an
    older one: the wake fails with the same clear error, and the engine it started is stopped."""
    environment_id = await _environment(client, make_git_repo)
    current = _settings(tmp_path, database_url, docker_image=BASE_IMAGE_TAG, docker_engine="host-python")
    manager = WorkspaceManager(current, app.state.sessions, app.state.box)
    async with app.state.sessions() as session:
        principal = Principal.system(await session.scalar(select(Organization.id).where(Organization.name == org.name)))
    workspace = await manager.create(principal, environment_id, name="wake")
    try:
        assert workspace.status == "active"
        health = await manager.call_engine(workspace, "GET", "/health")
        assert (health["engineVersion"], health["protocol"]) == (__version__, ENGINE_PROTOCOL)
        slept = await manager.sleep(workspace)

        downgraded = WorkspaceManager(current.model_copy(update={"docker_image": old_engine_image,
                                                                 "docker_engine": "image"}),
                                      app.state.sessions, app.state.box)
        with pytest.raises(ServiceUnavailable) as refused:
            await downgraded.wake(slept)
        assert refused.value.error == "Workspace engine is incompatible"
        assert refused.value.details.startswith(f"image {old_engine_image} runs an engine of unknown version")
        assert refused.value.details.endswith("rebuild it with `replicas images build`")
        assert not _running(slept.runtime_state["container_name"])
    finally:
        await manager.destroy(workspace)
        remove_docker_leftovers(current.data_dir)


async def test_an_active_workspace_on_an_engine_a_restarted_control_plane_cannot_speak_to_goes_to_error(
        app, org, client, make_git_repo, settings):
    """An engine left running across a control-plane upgrade (here: the stand-in of an older release, started
    through the runtime as the old control plane would have): the new control plane checks each active
    workspace's engine at start-up, stops an incompatible one and puts the workspace in error, naming it."""
    from replicas.api.app import create_app
    from replicas.runtime import WorkspaceSpec
    from replicas.store.models import Workspace

    environment_id = await _environment(client, make_git_repo)
    manager = app.state.replicas.manager
    async with app.state.sessions() as session:
        principal = Principal.system(await session.scalar(select(Organization.id).where(Organization.name == org.name)))
    row = await manager.create_record(principal, environment_id, name="upgraded")
    handle = await manager.runtime.provision(str(row.id), WorkspaceSpec())
    secret = app.state.box.decrypt(row.engine_secret_encrypted)
    await manager.runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": secret})
    async with app.state.sessions() as session:
        stored = await session.get(Workspace, row.id)
        stored.status, stored.runtime_state = "active", manager.runtime.get_state(handle)
        await session.commit()

    restarted = create_app(settings)
    async with restarted.router.lifespan_context(restarted):
        async def errored() -> dict | None:
            details = (await client.get(f"/v1/replica/{row.id}")).json()["replica"]
            return details if details["status"] == "error" else None

        details = await wait_for(errored, timeout=60, what="the replica in error")
    message = details["config"]["provisioning_error"]["message"]
    assert message.startswith(f"Workspace engine is incompatible: image {settings.docker_image} runs an engine of "
                              "unknown version"), message
    assert not _running(handle.container_name)
