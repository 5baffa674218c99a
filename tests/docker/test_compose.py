"""compose.yaml, run as a user runs it: `up -d --build`, then the API on the published port answers with
PostgreSQL behind it and the docker runtime configured.

No registry is reachable, so the file's images come from environment variables it reads: BASE_IMAGE is the
mmdebstrap base of tests/docker_support.py, POSTGRES_IMAGE the local stand-in of compose_support.py, and
WITH_AGENTS=0 keeps the agent CLIs out of the workspace image. Everything else is compose.yaml's own.
Each run is a compose project of its own (`-p replicas-compose-test-<hex>`, its own network and volume),
taken down with `down -v --remove-orphans` whatever happens. The built images keep their tags, so a
second run reuses their layers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.contract import assert_contract
from tests.docker.compose_support import compose_command, ensure_postgres_image
from tests.docker.test_images import _base_or_skip, _docker, _extra_ca_certs, _free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONTROL_PLANE_TAG = "replicas-compose-test:control-plane"
WORKSPACE_TAG = "replicas-compose-test:workspace"


def _skip(reason: str) -> None:
    print(f"SKIP compose test: {reason}")
    pytest.skip(reason)


class ComposeProject:
    """`<compose> -p NAME -f compose.yaml ...` with the environment the file reads."""

    def __init__(self, command: list[str], name: str, env: dict[str, str]) -> None:
        self.command, self.name, self.env = command, name, env

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [*self.command, "--project-name", self.name, "--file", str(REPO / "compose.yaml"), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=REPO,
                              check=False)

    def container(self, service: str) -> str:
        ids = self("ps", "--all", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def logs(self) -> str:
        done = self("logs", "--no-color", "--tail", "60")
        return (done.stdout + done.stderr)[-6000:]


@pytest.fixture
def project():
    base = _base_or_skip()
    command, reason = compose_command()
    if reason:
        _skip(reason)
    postgres_image, reason = ensure_postgres_image()
    if reason:
        _skip(reason)
    print(f"compose tool: {' '.join(command)}; base {base}; postgres stand-in {postgres_image}")

    name = f"replicas-compose-test-{secrets.token_hex(4)}"
    data_dir = tempfile.mkdtemp(prefix="replicas-compose-data-")
    port = _free_port()
    env = {
        **os.environ,
        "BASE_IMAGE": base,
        "EXTRA_CA_CERTS": _extra_ca_certs(),
        "WITH_AGENTS": "0",
        "POSTGRES_IMAGE": postgres_image,
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "REPLICAS_IMAGE": CONTROL_PLANE_TAG,
        "REPLICAS_DOCKER_IMAGE": WORKSPACE_TAG,
        "REPLICAS_DOCKER_NETWORK": name,
        "REPLICAS_HOST_DATA_DIR": data_dir,
        "REPLICAS_BIND": "127.0.0.1",
        "REPLICAS_PORT": str(port),
        "REPLICAS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "REPLICAS_BOOTSTRAP_API_KEY": f"sk_replicas_{secrets.token_urlsafe(24)}",
        "REPLICAS_SECRET_KEY": "",
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
    }
    compose = ComposeProject(command, name, env)
    try:
        yield compose
    finally:
        down = compose("down", "-v", "--remove-orphans", timeout=300)
        if down.returncode != 0:
            print(f"compose down failed: {down.stderr[-2000:]}")
        shutil.rmtree(data_dir, ignore_errors=True)


def test_compose_up_serves_the_api_with_postgresql_and_the_docker_runtime(project):
    env = project.env
    started = time.monotonic()
    up = project("up", "-d", "--build", timeout=1800)
    print(f"compose up -d --build: {time.monotonic() - started:.1f} s")
    assert up.returncode == 0, f"compose up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}\n{project.logs()}"

    base_url = f"http://127.0.0.1:{env['REPLICAS_PORT']}"
    clock, health = time.monotonic(), None
    with httpx.Client(base_url=base_url, timeout=5) as client:
        while time.monotonic() < clock + 120:
            try:
                health = client.get("/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.5)
        print(f"compose up -> /healthz answered in {time.monotonic() - clock:.1f} s")
        assert health is not None, f"no answer on {base_url} in 120 s:\n{project.logs()}"
        assert health.status_code == 200 and health.json()["status"] == "ok"

        key = {"Authorization": f"Bearer {env['REPLICAS_BOOTSTRAP_API_KEY']}"}
        for path in ("/v1/environments", "/v1/replica/repositories"):
            listed = client.get(path, headers=key)
            assert listed.status_code == 200, listed.text
            assert_contract(listed, path)
        anonymous = client.get("/v1/environments")
        assert anonymous.status_code == 401
        assert "error" in anonymous.json()

    # The control plane: the docker runtime, PostgreSQL at the postgres service, the socket's group.
    replicas = project.container("replicas")
    config = _docker("inspect", "--format", "{{json .Config.Env}}|{{.State.Running}}|{{json .HostConfig.GroupAdd}}",
                     replicas).stdout.strip()
    environment, running, groups = config.split("|")
    assert running == "true"
    assert '"REPLICAS_RUNTIME=docker"' in environment
    assert f'"REPLICAS_DATABASE_URL=postgresql://replicas:{env["POSTGRES_PASSWORD"]}@postgres:5432/replicas"' \
        in environment
    assert f'"REPLICAS_DOCKER_NETWORK={project.name}"' in environment
    # A multi-tenant deployment: no local repositories, no tenant URL to private addresses.
    assert '"REPLICAS_ALLOW_LOCAL_REPOSITORIES=false"' in environment
    assert '"REPLICAS_ALLOW_PRIVATE_OUTBOUND=false"' in environment
    assert f'"{env["DOCKER_GID"]}"' in groups
    logs = _docker("logs", replicas)
    assert "database=postgresql runtime=docker" in logs.stdout + logs.stderr, project.logs()

    postgres = project.container("postgres")
    health_status = _docker("inspect", "--format", "{{.State.Health.Status}}", postgres).stdout.strip()
    assert health_status == "healthy"

    # The two one-shot services did their work: the workspace image exists, the data dir is uid 1000's.
    for service in ("workspace-image", "data-dir"):
        state = _docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", project.container(service))
        assert state.stdout.split() == ["exited", "0"], f"{service}: {state.stdout}"
    assert _docker("image", "inspect", WORKSPACE_TAG).returncode == 0
    assert os.stat(env["REPLICAS_HOST_DATA_DIR"]).st_uid == 1000
