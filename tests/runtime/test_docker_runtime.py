"""The docker runtime against a real dockerd, with the test base image (tests/docker_support.py).

The "engine" is a small Python HTTP server on the workspace's unix socket. Most tests run it with the
host's own Python (`docker_engine = "host-python"`: bind-mounted read-only into the container, as
`WorkspaceSpec.ro_binds` asks); the default, the image's own engine, runs it from an image whose
ENTRYPOINT and CMD start it with the image's Python. Skipped, with the reason printed, where no Docker
engine or base image can be had.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from replicas.errors import Conflict, NotFound
from replicas.runtime import create_runtime
from replicas.runtime.base import EngineEndpoint, RuntimeFailure, RuntimeStatus, WorkspaceSpec
from replicas.runtime.cgroups import SIZE_LIMITS
from replicas.runtime.docker import DockerHandle, DockerRuntime
from replicas.runtime.local import python_environment_paths
from replicas.settings import Settings
from tests.docker_support import BASE_IMAGE_TAG, ensure_base_image, ensure_derived_image

pytestmark = pytest.mark.slow

ENGINE = r"""
import http.server, json, os, socketserver, sys, threading
from urllib.parse import parse_qs, urlparse

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

class Hello(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        data = b"hello from inside the workspace"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

class Handler(http.server.BaseHTTPRequestHandler):
    def address_string(self):
        return "engine"

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = {"pid": os.getpid(), "uid": os.getuid(), "home": os.environ["HOME"], "cwd": os.getcwd(),
                "secret": os.environ.get("SECRET"), "python": sys.executable, "path": os.environ["PATH"],
                "tools": os.environ.get("REPLICAS_TOOLS_DIR")}
        try:
            if url.path == "/read":
                body = {"ok": True, "content": open(query["path"]).read()}
            elif url.path == "/write":
                with open(query["path"], "w") as f:
                    f.write("written from the engine")
                body = {"ok": True}
            elif url.path == "/listen":
                server = http.server.ThreadingHTTPServer(("127.0.0.1", int(query["port"])), Hello)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                body = {"ok": True}
        except OSError as exc:
            body = {"ok": False, "error": type(exc).__name__}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

path = os.environ["REPLICAS_ENGINE_SOCKET"]
if os.path.exists(path):
    os.unlink(path)
print("engine listening", flush=True)
Server(path, Handler).serve_forever()
"""


def engine_command() -> list[str]:
    return [sys.executable, "-c", ENGINE]


async def engine_get(endpoint: EngineEndpoint, route: str = "/", **params) -> dict:
    transport = httpx.AsyncHTTPTransport(uds=endpoint.uds)
    async with httpx.AsyncClient(transport=transport, base_url=endpoint.base_url, timeout=10) as client:
        return (await client.get(route, params=params)).json()


async def wait_for_engine(endpoint: EngineEndpoint, timeout: float = 30) -> float:
    started = time.monotonic()
    while True:
        try:
            await engine_get(endpoint)
            return time.monotonic() - started
        except (httpx.TransportError, FileNotFoundError, ConnectionError):
            if time.monotonic() - started > timeout:
                raise
            await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_image() -> str:
    reason = ensure_base_image()
    if reason:
        print(f"\nSKIP docker runtime tests: {reason}")
        pytest.skip(reason)
    return BASE_IMAGE_TAG


@pytest.fixture
def data_dir(tmp_path) -> Path:
    data = tmp_path / "data"
    (data / "workspaces").mkdir(parents=True)
    (data / "replicas.db").write_text("DATABASE CONTENT")
    (data / "secret.key").write_text("SECRET KEY")
    return data


@pytest.fixture
async def make_runtime(data_dir, base_image):
    """Factory for docker runtimes on `data_dir`; every workspace they provisioned is destroyed after."""
    runtimes: list[DockerRuntime] = []

    def factory(**overrides) -> DockerRuntime:
        values = {"docker_image": base_image, "docker_network": "host", "docker_engine": "host-python", **overrides}
        settings = Settings(data_dir=data_dir, database_url=None, secret_key=None, runtime="docker", **values)
        runtimes.append(DockerRuntime(settings, stop_grace_seconds=3))
        return runtimes[-1]

    yield factory
    for workspace in (data_dir / "workspaces").iterdir():
        runtime = runtimes[0]
        name = f"{runtime.prefix}-{workspace.name}"
        await runtime.destroy(DockerHandle(workspace_id=workspace.name, spec=WorkspaceSpec(),
                                           workspace_dir=str(workspace), container_name=name, volume=name))


@pytest.fixture
def runtime(make_runtime) -> DockerRuntime:
    return make_runtime()


def spec(**fields) -> WorkspaceSpec:
    return WorkspaceSpec(ro_binds=python_environment_paths(), **fields)


async def test_lifecycle_engine_exec_port_sleep_wake_destroy(runtime, data_dir):
    handle = await runtime.provision("ws1", spec(env={"FROM_SPEC": "spec"}))
    root = data_dir / "workspaces" / "ws1"
    assert handle.home == str(root / "home") and (root / "home" / "workspaces").is_dir()
    assert await runtime.poll(handle) == RuntimeStatus.STOPPED
    volumes = runtime.client().volumes.list(filters={"name": handle.volume})
    assert [v.name for v in volumes] == [handle.volume]
    # Before the first start, as provisioning does: files the control plane wrote, then exec in the workspace.
    Path(handle.home, "provisioned.txt").write_text("from the control plane")
    result = await runtime.exec(handle, ["sh", "-c", 'echo "$HOME $FROM_SPEC $FROM_CALL"; pwd; id -u; '
                                         "cat provisioned.txt; echo more >> provisioned.txt"], 30,
                                env={"FROM_CALL": "call"})
    assert result.exit_code == 0 and not result.timed_out, result.output
    assert result.output.split() == [handle.home, "spec", "call", handle.home, "1000", "from", "the",
                                     "control", "plane"]

    started = time.monotonic()
    await runtime.start(handle, engine_command(), {"SECRET": "not stored"})
    container_start = time.monotonic() - started
    endpoint = runtime.engine_endpoint(handle)
    await wait_for_engine(endpoint)
    engine_ready = time.monotonic() - started
    info = await engine_get(endpoint)
    assert info["home"] == handle.home and info["cwd"] == handle.home and info["uid"] == 1000
    assert info["secret"] == "not stored" and "not stored" not in json.dumps(runtime.get_state(handle))
    assert await runtime.poll(handle) == RuntimeStatus.RUNNING
    with pytest.raises(Conflict):
        await runtime.start(handle, engine_command(), {})

    # Files: the engine writes its home; it cannot see the data dir, the database or the key.
    assert (await engine_get(endpoint, "/write", path=handle.home + "/notes.txt"))["ok"]
    for secret in (data_dir / "replicas.db", data_dir / "secret.key"):
        assert (await engine_get(endpoint, "/read", path=str(secret)))["ok"] is False
    # exec joins the running container; a timeout kills the command.
    result = await runtime.exec(handle, ["sh", "-c", "cat notes.txt; echo; grep CapEff /proc/self/status"], 30)
    assert result.exit_code == 0 and result.output.split()[:4] == ["written", "from", "the", "engine"]
    assert result.output.split()[-1] == "0000000000000000"
    t = time.monotonic()
    result = await runtime.exec(handle, ["sh", "-c", "echo before; sleep 30"], 1)
    assert result.timed_out and "before" in result.output and time.monotonic() - t < 10
    # A server listening inside is reachable from the host through port_endpoint (host networking).
    port = free_port()
    assert (await engine_get(endpoint, "/listen", port=port))["ok"]
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(runtime.port_endpoint(handle, port).url)
    assert answer.text == "hello from inside the workspace"

    started = time.monotonic()
    await runtime.stop(handle)
    stop_seconds = time.monotonic() - started
    assert await runtime.poll(handle) == RuntimeStatus.STOPPED
    assert runtime.client().containers.get(handle.container_name).status == "exited"
    assert Path(handle.home, "notes.txt").exists()

    started = time.monotonic()
    await runtime.start(handle, engine_command(), {"SECRET": "new"})
    await wait_for_engine(endpoint)
    wake = time.monotonic() - started
    assert (await engine_get(endpoint, "/read", path=handle.home + "/notes.txt"))["content"] == (
        "written from the engine")
    assert (await engine_get(endpoint))["secret"] == "new"
    assert "engine listening" in Path(handle.log_path).read_text()

    await runtime.destroy(handle)
    assert await runtime.poll(handle) == RuntimeStatus.MISSING
    assert not root.exists()
    assert not runtime.client().containers.list(all=True, filters={"name": handle.container_name})
    assert not runtime.client().volumes.list(filters={"name": handle.volume})
    await runtime.destroy(handle)  # idempotent
    with pytest.raises(NotFound):
        await runtime.start(handle, engine_command(), {})
    print(f"\ndocker: container start {container_start:.3f}s, start->engine answering {engine_ready:.3f}s, "
          f"stop {stop_seconds:.3f}s, wake->engine answering {wake:.3f}s")


async def test_a_new_runtime_reattaches_to_running_and_stopped_containers(make_runtime):
    first = make_runtime()
    running = await first.provision("running", spec())
    sleeping = await first.provision("sleeping", spec())
    for handle in (running, sleeping):
        await first.start(handle, engine_command(), {})
        await wait_for_engine(first.engine_endpoint(handle))
    await first.stop(sleeping)
    states = {h.workspace_id: json.loads(json.dumps(first.get_state(h))) for h in (running, sleeping)}

    second = make_runtime()  # a restarted control plane: nothing in memory but the stored states
    running2, sleeping2 = second.load_state(states["running"]), second.load_state(states["sleeping"])
    assert await second.poll(running2) == RuntimeStatus.RUNNING
    assert await second.poll(sleeping2) == RuntimeStatus.STOPPED
    assert "pid" in await engine_get(second.engine_endpoint(running2))
    await second.stop(running2)
    assert await second.poll(running2) == RuntimeStatus.STOPPED
    await second.start(sleeping2, engine_command(), {})
    await wait_for_engine(second.engine_endpoint(sleeping2))
    assert await second.poll(sleeping2) == RuntimeStatus.RUNNING


async def test_container_limits_and_privileges(runtime):
    handle = await runtime.provision("big", spec(size="large"))
    await runtime.start(handle, engine_command(), {})
    await wait_for_engine(runtime.engine_endpoint(handle))
    attrs = runtime.client().containers.get(handle.container_name).attrs
    host = attrs["HostConfig"]
    limits = SIZE_LIMITS["large"]
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert host["Privileged"] is False and "no-new-privileges:true" in host["SecurityOpt"]
    assert host["PidsLimit"] == limits.pids
    assert host["Memory"] == limits.memory_bytes and host["NanoCpus"] == min(limits.cpus, runtime.engine_cpus()) * 10**9
    assert host["NetworkMode"] == "host"
    assert attrs["Config"]["User"] == "1000:1000"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert not any("docker.sock" in m.get("Source", "") + dest for dest, m in mounts.items())
    assert mounts[handle.workspace_dir]["Type"] == "volume" and mounts[handle.workspace_dir]["RW"]
    assert all(not m["RW"] for dest, m in mounts.items() if dest != handle.workspace_dir)
    result = await runtime.exec(handle, ["sh", "-c", "grep -E 'CapEff|CapBnd' /proc/self/status; id -u"], 30)
    assert result.output.split() == ["CapEff:", "0" * 16, "CapBnd:", "0" * 16, "1000"]
    # Writable: the home and the run dir; not the workspace directory above them (nor anything else).
    script = ('for d in "$HOME" "$REPLICAS_RUN_DIR" "$HOME/.." /; do '
              'touch "$d/probe" 2>/dev/null && echo "$d:rw" || echo "$d:ro"; done')
    result = await runtime.exec(handle, ["sh", "-c", script], 30)
    assert result.output.split() == [f"{handle.home}:rw", f"{handle.run_dir}:rw", f"{handle.home}/..:ro", "/:ro"]


async def test_the_agent_reaches_the_api_at_the_docker_api_url(make_runtime):
    """REPLICAS_DOCKER_API_URL (compose.yaml: the control plane's name on the workspaces' network) is what the
    agent's `replicas` CLI gets as REPLICAS_API_URL, in the engine's environment and in every exec."""
    runtime = make_runtime(docker_api_url="http://replicas:8321")
    handle = await runtime.provision("agentmode", spec())
    await runtime.start(handle, engine_command(), {"REPLICAS_API_URL": "http://localhost:8321"})
    await wait_for_engine(runtime.engine_endpoint(handle))
    engine_env = runtime.client().containers.get(handle.container_name).attrs["Config"]["Env"]
    assert "REPLICAS_API_URL=http://replicas:8321" in engine_env
    result = await runtime.exec(handle, ["sh", "-c", 'echo "$REPLICAS_API_URL"'], 30,
                                env={"REPLICAS_API_URL": "http://localhost:8321"})
    assert result.output.strip() == "http://replicas:8321"
    plain = make_runtime()
    assert plain._environment(handle, {"REPLICAS_API_URL": "http://127.0.0.1:8321"})["REPLICAS_API_URL"] == \
        "http://127.0.0.1:8321"


async def test_handles_from_elsewhere_are_refused(runtime, data_dir):
    handle = await runtime.provision("ws1", spec())
    state = runtime.get_state(handle)
    for bad in ({"workspace_dir": "/etc"}, {"container_name": "someone-else"}, {"volume": "other"},
                {"backend": "local"}):
        with pytest.raises(RuntimeFailure):
            runtime.load_state({**state, **bad})


def test_create_runtime_picks_docker(tmp_path):
    runtime = create_runtime(Settings(data_dir=tmp_path, runtime="docker", docker_image="some/image:1"))
    assert isinstance(runtime, DockerRuntime) and runtime.image == "some/image:1"


@pytest.fixture(scope="module")
def engine_image(base_image, tmp_path_factory) -> str:
    """An image that carries the test engine: Debian's python3 runs it, through an ENTRYPOINT and a CMD, with
    the image's own PATH and REPLICAS_TOOLS_DIR."""
    script = tmp_path_factory.mktemp("engine-image") / "engine.py"
    script.write_text(ENGINE)
    tag, reason = ensure_derived_image(
        "replicas-test-engine-image", "COPY engine.py /opt/stub/engine.py\n"
        "ENV PATH=/opt/stub/bin:/usr/bin:/bin REPLICAS_TOOLS_DIR=/opt/stub/tools\n"
        'ENTRYPOINT ["python3"]\nCMD ["/opt/stub/engine.py"]\n', {"engine.py": str(script)})
    assert tag, reason
    return tag


async def test_by_default_the_images_engine_runs_and_nothing_of_this_machine_is_mounted(make_runtime, engine_image,
                                                                                        data_dir):
    runtime = make_runtime(docker_image=engine_image, docker_engine="image")
    handle = await runtime.provision("own-engine", spec())  # ro_binds asked for, not mounted
    # A hook's command (a throwaway container) is not wrapped by the image's ENTRYPOINT; PATH is the image's.
    python = str(Path(sys.executable).resolve())
    result = await runtime.exec(handle, ["sh", "-c", 'echo "$PATH $REPLICAS_TOOLS_DIR"; test -e "$1" && echo seen '
                                         '|| echo unseen', "sh", python], 30,
                                env={"REPLICAS_TOOLS_DIR": "/the/control/planes/tools"})
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["/opt/stub/bin:/usr/bin:/bin", "/opt/stub/tools", "unseen"]

    # No command from the control plane: the image's ENTRYPOINT and CMD, reached through the unix socket.
    await runtime.start(handle, [], {"SECRET": "s", "REPLICAS_TOOLS_DIR": "/the/control/planes/tools"})
    endpoint = runtime.engine_endpoint(handle)
    assert endpoint.uds
    await wait_for_engine(endpoint)
    info = await engine_get(endpoint)
    assert info["python"] == "/usr/bin/python3" and info["uid"] == 1000 and info["secret"] == "s"
    assert info["path"] == "/opt/stub/bin:/usr/bin:/bin" and info["tools"] == "/opt/stub/tools"
    assert (await engine_get(endpoint, "/read", path=python))["ok"] is False
    mounts = runtime.client().containers.get(handle.container_name).attrs["Mounts"]
    assert [(m["Type"], m["Destination"]) for m in mounts] == [("volume", handle.workspace_dir)]
    assert "engine listening" in Path(handle.log_path).read_text()

    # Sleep and wake: the same engine from the image again.
    await runtime.stop(handle)
    await runtime.start(handle, [], {"SECRET": "woken"})
    await wait_for_engine(endpoint)
    assert (await engine_get(endpoint))["secret"] == "woken"

    # REPLICAS_DOCKER_ENGINE_COMMAND still replaces the image's command.
    await runtime.stop(handle)
    overridden = make_runtime(docker_image=engine_image, docker_engine="image",
                              docker_engine_command=["sh", "-c", "echo overridden; exec python3 /opt/stub/engine.py"])
    await overridden.start(handle, [], {})
    await wait_for_engine(endpoint)
    assert "overridden" in Path(handle.log_path).read_text()


def test_the_control_planes_python_cannot_run_on_a_remote_docker_engine(tmp_path):
    with pytest.raises(RuntimeFailure) as refused:
        DockerRuntime(Settings(data_dir=tmp_path, runtime="docker", docker_host="tcp://127.0.0.1:2375",
                               docker_engine="host-python"))
    assert "REPLICAS_DOCKER_ENGINE=host-python" in refused.value.details
