"""The docker runtime against a *remote* Docker engine: `tcp://` to a proxy in front of the local dockerd
(tests/docker_support.py `DockerTcpProxy`), so the runtime takes its remote path (plain volumes filled
through the API, the engine over TCP with its secret, everything from the image) while nothing leaves
loopback. The image carries the real engine (`ensure_remote_image`). Skipped, with the reason printed,
where no Docker engine or image can be had.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from replicas.errors import NotFound
from replicas.runtime.base import RuntimeFailure, RuntimeStatus, WorkspaceSpec
from replicas.runtime.docker import DockerHandle, DockerRuntime
from replicas.services.workspaces import ENGINE_SECRET_HEADER
from replicas.settings import Settings
from tests.agents.test_real_clis import agent_tools  # noqa: F401 - fixture
from tests.docker_support import DockerTcpProxy, ensure_remote_image

pytestmark = pytest.mark.slow

SECRET = "remote-engine-secret"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def docker_proxy():
    proxy = DockerTcpProxy()
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def remote_image(agent_tools) -> str:  # noqa: F811
    tag, reason = ensure_remote_image(str(agent_tools))
    if reason:
        print(f"\nSKIP remote docker runtime tests: {reason}")
        pytest.skip(reason)
    return tag


@pytest.fixture
def data_dir(tmp_path) -> Path:
    data = tmp_path / "data"
    (data / "workspaces").mkdir(parents=True)
    (data / "replicas.db").write_text("DATABASE CONTENT")
    return data


@pytest.fixture
async def make_runtime(data_dir, remote_image, docker_proxy):
    """Remote docker runtimes on `data_dir`; every workspace they made is destroyed after."""
    made: list[tuple[DockerRuntime, DockerHandle]] = []

    def factory(**overrides) -> DockerRuntime:
        values = {"docker_image": remote_image, "docker_network": "host", "docker_host": docker_proxy.url,
                  "docker_engine_bind": "127.0.0.1", "engine_start_timeout_seconds": 30, **overrides}
        runtime = DockerRuntime(Settings(data_dir=data_dir, database_url=None, secret_key=None, runtime="docker",
                                         **values), stop_grace_seconds=3)
        original = runtime.provision

        async def provision(workspace_id, spec):
            handle = await original(workspace_id, spec)
            made.append((runtime, handle))
            return handle

        runtime.provision = provision
        return runtime

    yield factory
    for runtime, handle in made:
        await runtime.destroy(handle)


async def engine(runtime: DockerRuntime, handle, route: str = "/health", secret: str = SECRET) -> httpx.Response:
    endpoint = runtime.engine_endpoint(handle)
    assert endpoint.uds is None and endpoint.base_url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient(base_url=endpoint.base_url, timeout=10, trust_env=False) as client:
        return await client.get(route, headers={ENGINE_SECRET_HEADER: secret})


async def wait_for_engine(runtime, handle, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (await engine(runtime, handle)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, await runtime.read_log(handle)
        await asyncio.sleep(0.05)


async def test_remote_workspace_lives_in_its_volume_and_its_engine_answers_over_tcp(make_runtime, data_dir):
    runtime = make_runtime()
    assert runtime.remote
    handle = await runtime.provision("ws1", WorkspaceSpec(ro_binds=[str(data_dir)]))
    assert handle.remote and await runtime.poll(handle) == RuntimeStatus.STOPPED
    [volume] = runtime.client().volumes.list(filters={"name": handle.volume})
    assert volume.attrs["Options"] in (None, {})  # a plain volume, not a directory of this machine

    # What provisioning writes goes to the staging area, and into the volume at the first exec or start.
    # A git checkout travels as its .git plus what differs from it (a modified and an untracked file).
    staged = Path(handle.home) / "workspaces" / "shop"
    staged.mkdir(parents=True)
    (staged / "app.py").write_text("print('hi')\n")
    (staged / "config.txt").write_text("committed\n")
    (staged / "bin").mkdir()
    (staged / "bin" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (staged / "bin" / "run.sh").chmod(0o755)
    for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "i"]):
        subprocess.run(["git", "-C", str(staged), *argv], check=True)
    (staged / "config.txt").write_text("changed while provisioning\n")
    (staged / ".env").write_text("FROM=files step\n")
    result = await runtime.exec(handle, ["sh", "-c", "cd workspaces/shop && cat app.py config.txt .env && "
                                         "bin/run.sh && git status --porcelain && id -u && stat -c %u ."], 30)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["print('hi')", "changed while provisioning", "FROM=files step", "run",
                                          " M config.txt", "?? .env", "1000", "1000"]
    assert not Path(handle.workspace_dir).exists()  # the disk is the volume's alone now

    started = time.monotonic()
    await runtime.start(handle, ["ignored: the image's CMD runs"], {"REPLICAS_ENGINE_SECRET": SECRET})
    await wait_for_engine(runtime, handle)
    ready = time.monotonic() - started
    assert (await engine(runtime, handle, secret="wrong")).status_code == 401
    assert (await engine(runtime, handle, "/chats")).json()["chats"]
    state = runtime.get_state(handle)
    assert state["remote"] is True and state["engine_port"] == handle.engine_port and SECRET not in json.dumps(state)

    # Nothing of this machine is mounted, the ro_binds asked for included: the data dir is not there.
    attrs = runtime.client().containers.get(handle.container_name).attrs
    assert [m["Destination"] for m in attrs["Mounts"]] == [handle.workspace_dir]
    script = (f"cat {data_dir}/replicas.db 2>/dev/null || echo no-db; echo $REPLICAS_TOOLS_DIR; "
              "touch ../outside 2>/dev/null || echo read-only-above-home")
    result = await runtime.exec(handle, ["sh", "-c", script], 30)
    assert result.output.split() == ["no-db", "/opt/replicas-test/tools", "read-only-above-home"], result.output
    assert "Uvicorn running" in await runtime.read_log(handle) or "engine listening" in await runtime.read_log(handle)

    # A server started inside is reachable at port_endpoint (previews): the Docker host's address.
    port = free_port()
    await runtime.exec(handle, ["sh", "-c", f"cd workspaces/shop && nohup python3 -m http.server {port} "
                                "--bind 127.0.0.1 >/dev/null 2>&1 &"], 30)
    endpoint = runtime.port_endpoint(handle, port)
    assert endpoint.host == "127.0.0.1"
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        while True:
            try:
                answer = await client.get(f"{endpoint.url}/app.py")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
    assert answer.text == "print('hi')\n"

    # A restarted control plane reattaches from the stored state; sleep keeps the volume; wake gets a new port.
    again = make_runtime()
    handle2 = again.load_state(json.loads(json.dumps(state)))
    assert await again.poll(handle2) == RuntimeStatus.RUNNING
    assert (await engine(again, handle2)).status_code == 200
    await again.exec(handle2, ["sh", "-c", "echo kept > workspaces/shop/notes.txt"], 30)
    await again.stop(handle2)
    assert await again.poll(handle2) == RuntimeStatus.STOPPED
    started = time.monotonic()
    await again.start(handle2, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    await wait_for_engine(again, handle2)
    wake = time.monotonic() - started
    result = await again.exec(handle2, ["cat", "workspaces/shop/notes.txt", "workspaces/shop/app.py"], 30)
    assert result.output.split() == ["kept", "print('hi')"]

    await again.destroy(handle2)
    assert await again.poll(handle2) == RuntimeStatus.MISSING
    assert not again.client().volumes.list(filters={"name": handle.volume})
    with pytest.raises(NotFound):
        await again.exec(handle2, ["true"], 5)
    print(f"\nremote docker: start->engine answering {ready:.2f}s, wake->engine answering {wake:.2f}s")


async def test_remote_engine_on_a_user_network_is_published_on_the_docker_host(make_runtime):
    runtime = make_runtime(docker_network="bridge", docker_publish_address="127.0.0.1")
    handle = await runtime.provision("bridged", WorkspaceSpec())
    await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    await wait_for_engine(runtime, handle)
    ports = runtime.client().containers.get(handle.container_name).attrs["NetworkSettings"]["Ports"]
    assert ports["7878/tcp"][0] == {"HostIp": "127.0.0.1", "HostPort": str(handle.engine_port)}
    assert handle.address  # the container's own address on the network, for previews from that network


async def test_an_engine_that_dies_at_start_is_reported_with_its_log(make_runtime):
    runtime = make_runtime(docker_engine_command=["sh", "-c", "echo cannot start the engine; exit 3"])
    handle = await runtime.provision("broken", WorkspaceSpec())
    with pytest.raises(RuntimeFailure) as failure:
        await runtime.start(handle, [], {})
    assert "cannot start the engine" in failure.value.details


@pytest.fixture
def ssh_docker_host(tmp_path, monkeypatch) -> str:
    """`ssh://root@127.0.0.1:PORT`: an sshd of this test's own on loopback, whose `docker system dial-stdio`
    reaches the local dockerd, and a HOME whose ~/.ssh (config with the key, known_hosts with the host's key)
    is what a user of a remote Docker host would have."""
    import os
    import shutil
    import socket
    import subprocess

    from tests.docker_support import _apt_install

    if shutil.which("sshd") is None and not os.path.exists("/usr/sbin/sshd"):
        if reason := _apt_install(["openssh-server"]):
            print(f"\nSKIP ssh:// docker host: {reason}")
            pytest.skip(reason)
    ssh_dir = tmp_path / "sshd"
    home_ssh = tmp_path / "home" / ".ssh"
    for path in (ssh_dir, home_ssh):
        path.mkdir(parents=True)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / name)], check=True)
    (ssh_dir / "authorized_keys").write_text((ssh_dir / "client.pub").read_text())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (ssh_dir / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {ssh_dir / 'host'}\nPidFile {ssh_dir / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {ssh_dir / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nStrictModes no\nUsePAM no\nMaxStartups 100\nMaxSessions 100\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(ssh_dir / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(ssh_dir / "sshd.log", "wb"))
    (home_ssh / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {ssh_dir / 'client'}\n")
    host_key = " ".join((ssh_dir / "host.pub").read_text().split()[:2])
    (home_ssh / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert time.monotonic() < deadline and sshd.poll() is None, (ssh_dir / "sshd.log").read_text()
        time.sleep(0.1)
    yield f"ssh://root@127.0.0.1:{port}"
    sshd.terminate()
    sshd.wait(10)


async def test_a_docker_host_over_ssh(ssh_docker_host, make_runtime):  # sshd outlives the teardown
    runtime = make_runtime(docker_host=ssh_docker_host)
    assert runtime.remote and runtime.engine_address == "127.0.0.1"
    handle = await runtime.provision("over-ssh", WorkspaceSpec())
    (Path(handle.home) / "hello.txt").write_text("through ssh\n")
    await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    await wait_for_engine(runtime, handle)
    result = await runtime.exec(handle, ["cat", "hello.txt"], 30)
    assert result.output == "through ssh\n"
    await runtime.stop(handle)
    assert await runtime.poll(handle) == RuntimeStatus.STOPPED
