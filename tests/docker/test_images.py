"""The images: the control plane's (root Dockerfile) serves the API against the test PostgreSQL from a
container, and `replicas images build --no-agents` makes a workspace image with the tools the agents use.

No registry is reachable, so both build FROM the mmdebstrap base of tests/docker_support.py. The
machine's own added CA certificates (a TLS-intercepting egress proxy's, here) go in as EXTRA_CA_CERTS
so that pip reaches PyPI from inside the build. Layers are cached by docker between runs.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from replicas import __version__
from replicas.engine_protocol import ENGINE_PROTOCOL
from tests.contract import assert_contract
from tests.docker_support import BASE_IMAGE_TAG, ensure_base_image, ensure_dockerd

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONTROL_PLANE_TAG = "replicas:test"
WORKSPACE_TAG = "replicas-workspace:test"
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def _extra_ca_certs() -> str:
    """The CA certificates added to this machine's trust store (none on most machines)."""
    return "".join(path.read_text() for path in sorted(LOCAL_CA_DIR.rglob("*.crt"))) if LOCAL_CA_DIR.is_dir() else ""


def _base_or_skip() -> str:
    reason = ensure_dockerd() or ensure_base_image()
    if reason:
        print(f"SKIP docker image tests: {reason}")
        pytest.skip(reason)
    return BASE_IMAGE_TAG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _pg(sql: str) -> None:
    import asyncpg

    from tests.conftest import PG_ADMIN_URL

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def own_database() -> str:
    """A database of its own on the test PostgreSQL: the containerised control plane's reapers must not
    touch the rows of the session's shared test database."""
    from tests.conftest import PG_ADMIN_URL

    name = f"replicas_image_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - report why, never skip silently
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is required: {exc}")
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def control_plane_image() -> str:
    base = _base_or_skip()
    argv = ["build", "--tag", CONTROL_PLANE_TAG, "--build-arg", f"BASE_IMAGE={base}"]
    if certificates := _extra_ca_certs():
        argv += ["--build-arg", f"EXTRA_CA_CERTS={certificates}"]
    started = time.monotonic()
    built = _docker(*argv, str(REPO), timeout=1200)
    print(f"control-plane image {CONTROL_PLANE_TAG} built in {time.monotonic() - started:.1f} s")
    assert built.returncode == 0, f"docker build failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    return CONTROL_PLANE_TAG


def test_control_plane_image_serves_the_api_against_postgresql(control_plane_image, own_database):
    port, key = _free_port(), f"sk_replicas_{secrets.token_urlsafe(24)}"
    name = f"replicas-cp-test-{uuid.uuid4().hex[:8]}"
    started = _docker(
        "run", "--detach", "--rm", "--name", name, "--network", "host",
        "--env", f"REPLICAS_DATABASE_URL={own_database}", "--env", f"REPLICAS_BOOTSTRAP_API_KEY={key}",
        "--env", "REPLICAS_CRON_ENABLED=false",
        control_plane_image, "replicas", "serve", "--host", "127.0.0.1", "--port", str(port))
    assert started.returncode == 0, started.stderr
    try:
        assert _docker("inspect", "--format", "{{.Config.User}}", name).stdout.strip() == "1000:1000"
        base_url = f"http://127.0.0.1:{port}"
        clock = time.monotonic()
        deadline, health = clock + 60, None
        with httpx.Client(base_url=base_url, timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    health = client.get("/healthz")
                    break
                except httpx.TransportError:
                    running = _docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
                    assert running == "true", f"the container exited:\n{_docker('logs', name).stderr[-3000:]}"
                    time.sleep(0.25)
            print(f"container start -> /healthz answered in {time.monotonic() - clock:.1f} s")
            assert health is not None, f"no answer in 60 s:\n{_docker('logs', name).stderr[-3000:]}"
            assert health.status_code == 200 and health.json()["status"] == "ok"

            listed = client.get("/v1/environments", headers={"Authorization": f"Bearer {key}"})
            assert listed.status_code == 200, listed.text
            assert_contract(listed, "/v1/environments")
            anonymous = client.get("/v1/environments")
            assert anonymous.status_code == 401
            assert "error" in anonymous.json()
        logs = _docker("logs", name)
        assert "database=postgresql" in logs.stdout + logs.stderr
    finally:
        _docker("rm", "--force", name)


def test_images_build_makes_a_workspace_image_with_the_agents_tools(tmp_path):
    base = _base_or_skip()
    argv = [sys.executable, "-m", "replicas.cli.main", "images", "build", "--no-agents",
            "--base", base, "--tag", WORKSPACE_TAG]
    if certificates := _extra_ca_certs():
        (tmp_path / "ca.crt").write_text(certificates)
        argv += ["--extra-ca-certs", str(tmp_path / "ca.crt")]
    started = time.monotonic()
    built = subprocess.run(argv, capture_output=True, text=True, timeout=1200, cwd=tmp_path, check=False)
    print(f"workspace image {WORKSPACE_TAG} (--no-agents) built in {time.monotonic() - started:.1f} s")
    assert built.returncode == 0, built.stderr[-3000:]
    assert built.stdout.strip() == WORKSPACE_TAG

    probe = _docker("run", "--rm", "--network", "none", "--entrypoint", "sh", WORKSPACE_TAG, "-c",
                    "id -u; echo $HOME $REPLICAS_TOOLS_DIR; git --version; rg --version | head -1; node --version; "
                    "npm --version; curl --version | head -1; python -c 'import replicas.engine.main'")
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    assert lines[0] == "1000"
    assert lines[1] == "/home/replicas /opt/replicas/tools"
    assert lines[2].startswith("git version") and lines[3].startswith("ripgrep")
    assert lines[4].startswith("v") and lines[6].startswith("curl")

    command = _docker("inspect", "--format", "{{json .Config.Cmd}}", WORKSPACE_TAG).stdout.strip()
    assert command == '["/opt/replicas/bin/python","-m","replicas.engine.main"]'
    usage = _docker("run", "--rm", "--network", "none", WORKSPACE_TAG, *json.loads(command), "--help")
    assert usage.returncode == 0 and "replicas engine" in usage.stdout
    # The engine in the image says which release and protocol it is (what the control plane checks at /health).
    version = _docker("run", "--rm", "--network", "none", WORKSPACE_TAG, *json.loads(command), "--version")
    assert version.stdout.strip() == f"replicas engine {__version__} (protocol {ENGINE_PROTOCOL})", version.stderr
