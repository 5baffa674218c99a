"""A hook test run is tenant code: it runs in a throwaway workspace of the configured runtime, never on the host.

Each attack is sent with a second organization's key through the hook test endpoints, on the `local`
(bubblewrap) and the `docker` backend, with secrets planted where a careless server would show them: the
data dir (the encryption key, the SQLite database, a planted file), another workspace's home, the control
plane's own environment and process. The output must carry none of them. What the environment gives its
workspaces (variables, files, the repositories checked out) must be there.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import time
import uuid

import httpx
import pytest

from replicas.api.app import create_app
from replicas.runtime import WorkspaceSpec, create_runtime
from replicas.runtime.local import LocalRuntime
from replicas.services.hook_runner import ABANDONED_MARGIN_SECONDS, WORKSPACE_PREFIX
from replicas.settings import Settings
from tests.api.test_env_hooks import (  # noqa: F401 - live_url, short_timeout_client: fixtures
    _processes_with,
    _unique_sleep,
    _until_gone,
    live_url,
    short_timeout_client,
)
from tests.contract import assert_contract
from tests.docker_support import ensure_base_image
from tests.replicas.conftest import backend_settings, docker_leftovers

WARM_TEST = "/v1/environments/{environmentId}/warm-hooks/test"
START_TEST = "/v1/environments/{environmentId}/start-hooks/test"
START_STREAM = "/v1/environments/{environmentId}/start-hooks/test/stream"


@pytest.fixture(params=["local", "docker"])
def backend(request) -> str:
    if request.param == "docker":
        reason = ensure_base_image()
        if reason:
            pytest.skip(f"docker backend: {reason}")
    return request.param


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'replicas.db'}"


@pytest.fixture
def planted(monkeypatch) -> str:
    """A secret in the control plane's own environment (where a leaky runner would pass it on)."""
    value = f"planted-env-{secrets.token_hex(8)}"
    monkeypatch.setenv("REPLICAS_SECRET_KEY", value)
    return value


@pytest.fixture
def settings(tmp_path, database_url, backend, planted) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, secret_key=None, cron_enabled=False,
                    hook_test_timeout_seconds=60, **backend_settings(backend))


@pytest.fixture
async def victim(app, make_org, settings, make_git_repo):
    """The first organization: an environment with a secret variable, and secrets on the server's disk."""
    org = await make_org("victim")
    token = f"victim-{secrets.token_hex(8)}"
    env = (await org.client.post("/v1/environments", json={"name": "prod"})).json()["environment"]["id"]
    assert (await org.client.post(f"/v1/environments/{env}/variables",
                                  json={"key": "PROD_TOKEN", "value": token})).status_code == 201
    (settings.data_dir / "planted.txt").write_text(token)
    other_home = settings.data_dir / "workspaces" / "other-workspace" / "home"
    other_home.mkdir(parents=True)
    (other_home / "secret.txt").write_text(token)
    return {"org": org, "env": env, "token": token}


@pytest.fixture
async def attacker(make_org):
    return await make_org("attacker")


async def _run(client, script: str, env: str = "global") -> dict:
    response = await client.post(START_TEST.format(environmentId=env), json={"content": script})
    assert response.status_code == 200, response.text
    return assert_contract(response, START_TEST)["test"]


def _no_sandbox_left(settings: Settings, backend: str) -> None:
    assert list((settings.data_dir / "workspaces").glob("hooktest-*")) == []
    if backend == "docker":
        assert [item for item in docker_leftovers(settings.data_dir) if "hooktest-" in item] == []


async def test_the_data_dir_and_its_secrets_are_out_of_reach(app, settings, backend, victim, attacker, planted):
    data = os.path.realpath(settings.data_dir)
    key = (settings.data_dir / "secret.key").read_bytes()
    script = (f"cat {data}/secret.key; cat {data}/planted.txt; cat {data}/workspaces/other-workspace/home/secret.txt\n"
              f'echo "DB:$(head -c 16 {data}/replicas.db 2>&1)"\n'
              f'echo "LS:$(ls -a {data} 2>&1 | tr "\\n" ,)"\n'
              f'echo "WS:$(ls -a {data}/workspaces 2>&1 | tr "\\n" ,)"\n'
              "env; echo end-of-attack\n")
    test = await _run(attacker.client, script)
    output = test["output"]
    assert "end-of-attack" in output  # the script did run
    assert victim["token"] not in output and planted not in output
    assert key.hex() not in output and key.decode(errors="ignore").strip() not in output
    assert "SQLite format" not in output
    listing = next(line for line in output.splitlines() if line.startswith("LS:"))
    assert not {"planted.txt", "secret.key", "replicas.db"} & set(listing[3:].split(",")), listing
    workspaces = next(line for line in output.splitlines() if line.startswith("WS:"))
    assert "other-workspace" not in workspaces, workspaces
    _no_sandbox_left(settings, backend)


@pytest.fixture
def planted_in_server_home():
    """A secret in the control plane user's home, where its ~/.ssh and ~/.docker/config.json would be."""
    home = os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir)
    path = os.path.join(home, f".replicas-test-planted-{secrets.token_hex(6)}")
    value = secrets.token_hex(16)
    with open(path, "w") as handle:
        handle.write(value)
    yield path, value
    os.unlink(path)


async def test_the_server_users_home_is_out_of_reach(app, settings, backend, attacker, planted_in_server_home):
    path, value = planted_in_server_home
    home = os.path.dirname(path)
    output = (await _run(attacker.client, f'cat {path}; echo "LS:$(ls -a {home} | tr "\\n" ,)"'))["output"]
    assert value not in output
    listing = next(line for line in output.splitlines() if line.startswith("LS:"))
    assert os.path.basename(path) not in listing
    _no_sandbox_left(settings, backend)


async def test_the_control_plane_process_cannot_be_signalled_or_read(app, settings, backend, attacker):
    pid = os.getpid()
    script = (f"kill -0 {pid} && echo SIGNAL-REACHED || echo signal-refused\n"
              f"cat /proc/{pid}/cmdline /proc/{pid}/environ 2>/dev/null | tr '\\0' ' '; echo\n"
              "ps -eo pid,args 2>/dev/null || ls /proc\n")
    output = (await _run(attacker.client, script))["output"]
    assert "signal-refused" in output and "SIGNAL-REACHED" not in output
    with open("/proc/self/cmdline", "rb") as handle:
        own_command = handle.read().replace(b"\0", b" ").decode().strip()
    assert own_command not in output and "REPLICAS_SECRET_KEY" not in output
    _no_sandbox_left(settings, backend)


async def test_another_organizations_environment_cannot_be_used(app, settings, backend, victim, attacker):
    for template in (WARM_TEST, START_TEST, START_STREAM):
        response = await attacker.client.post(template.format(environmentId=victim["env"]), json={"content": "env"})
        assert response.status_code == 404, response.text
        assert victim["token"] not in response.text
    _no_sandbox_left(settings, backend)


async def test_a_run_sees_what_a_workspace_of_its_environment_sees(app, settings, backend, make_org, make_git_repo):
    org = await make_org()
    repo = make_git_repo("demo", {"README.md": "hello from the checkout\n"})
    created = await org.client.post("/v1/replica/repositories", json={"name": "acme/demo", "url": str(repo)})
    assert created.status_code == 201, created.text
    env = (await org.client.post("/v1/environments", json={
        "name": "dev", "repository_id": created.json()["repository"]["id"]})).json()["environment"]["id"]
    await org.client.post("/v1/environments/global/variables", json={"key": "FROM_GLOBAL", "value": "g-1"})
    await org.client.post(f"/v1/environments/{env}/variables", json={"key": "FROM_ENV", "value": "e-2"})
    await org.client.post(f"/v1/environments/{env}/files",
                          json={"name": "notes", "path": "~/notes.txt", "content": "file-3\n"})
    script = ('echo "vars=$FROM_GLOBAL,$FROM_ENV"; cat ~/notes.txt; cat ~/workspaces/demo/README.md;'
              ' echo "user=$(id -u)"; touch ~/workspaces/demo/built\n')
    test = await _run(org.client, script, env)
    assert test["exit_code"] == 0, test["output"]
    assert "vars=g-1,e-2\nfile-3\nhello from the checkout\n" in test["output"]
    assert not (repo / "built").exists()  # the checkout is the sandbox's own, not the registered repository
    _no_sandbox_left(settings, backend)


async def test_the_stream_runs_in_the_sandbox_too_and_leaves_nothing(app, settings, backend, victim, attacker):
    data = os.path.realpath(settings.data_dir)
    response = await attacker.client.post(START_STREAM.format(environmentId="global"),
                                          json={"content": f"cat {data}/planted.txt; echo streamed\n"})
    assert response.status_code == 200
    assert "streamed" in response.text and victim["token"] not in response.text
    _no_sandbox_left(settings, backend)


async def test_without_a_sandbox_a_hook_is_refused_and_never_runs_on_the_host(app, settings, backend, attacker,
                                                                                tmp_path):
    if backend != "local":
        pytest.skip("the local runtime's sandbox is the one that can be missing")
    marker = tmp_path / f"ran-{uuid.uuid4().hex}"
    app.state.replicas.manager.runtime = LocalRuntime(settings, sandbox="off")
    for template in (WARM_TEST, START_TEST):
        response = await attacker.client.post(template.format(environmentId="global"),
                                              json={"content": f"touch {marker}"})
        assert response.status_code == 500, response.text
        body = assert_contract(response, template)
        assert body["error"] == "Sandbox unavailable" and "sandbox" in body["details"]
    stream = await attacker.client.post(START_STREAM.format(environmentId="global"),
                                        json={"content": f"touch {marker}"})
    assert stream.status_code == 500 and stream.json()["error"] == "Sandbox unavailable"
    assert not marker.exists()
    _no_sandbox_left(settings, backend)


async def test_a_run_past_its_timeout_is_killed_with_its_sandbox(settings, backend,
                                                                 short_timeout_client):  # noqa: F811
    seconds = _unique_sleep()
    test = await _run(short_timeout_client, f"echo started\nsleep {seconds} &\nwait\necho never\n")
    assert test["timed_out"] is True and test["exit_code"] == -1 and "never" not in test["output"]
    await _until_gone(seconds, settings)
    stream = await short_timeout_client.post(START_STREAM.format(environmentId="global"),
                                      json={"content": f"echo started; sleep {seconds}"})
    assert '"exit_code":-1,"timed_out":true' in stream.text
    await _until_gone(seconds, settings)
    _no_sandbox_left(settings, backend)


async def test_a_client_that_goes_away_mid_stream_leaves_nothing(live_url, settings, backend, attacker):  # noqa: F811
    seconds = _unique_sleep()
    async with httpx.AsyncClient(base_url=live_url, timeout=60,
                                 headers={"Authorization": f"Bearer {attacker.key}"}) as http:
        async with http.stream("POST", START_STREAM.format(environmentId="global"),
                               json={"content": f"echo started\nsleep {seconds}\n"}) as response:
            async for text in response.aiter_text():
                if "started" in text:
                    assert await _started(seconds)
                    break
    await _until_gone(seconds, settings)
    _no_sandbox_left(settings, backend)


async def _started(marker: str) -> bool:
    for _ in range(100):
        if _processes_with(marker):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_sandboxes_abandoned_by_a_killed_control_plane_are_removed_at_start(settings, backend):
    """A control plane killed mid-run (kill -9) leaves its sandbox behind; the next start removes it, but not a
    sandbox young enough to belong to a run of another process in flight."""
    runtime = create_runtime(settings)
    old = await runtime.provision(f"{WORKSPACE_PREFIX}abandoned0001", WorkspaceSpec())
    young = await runtime.provision(f"{WORKSPACE_PREFIX}inflight00001", WorkspaceSpec())
    long_ago = time.time() - settings.hook_test_timeout_seconds - ABANDONED_MARGIN_SECONDS - 60
    os.utime(old.workspace_dir, (long_ago, long_ago))
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        for _ in range(200):
            if not os.path.exists(old.workspace_dir):
                break
            await asyncio.sleep(0.05)
        assert not os.path.exists(old.workspace_dir) and os.path.isdir(young.workspace_dir)
        if backend == "docker":
            assert not [item for item in docker_leftovers(settings.data_dir) if "abandoned" in item]
        await runtime.destroy(young)
    _no_sandbox_left(settings, backend)
