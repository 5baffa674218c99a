"""A workspace end to end: register a repo and an environment through the API, start a workspace on each
runtime (local with bubblewrap; docker with the default settings and the image `replicas images build`
makes; docker with the control plane's own engine in the test base image; docker on a remote engine), and
watch the real Claude Code CLI change the checkout through the scripted model. Then: isolation from
inside, a control-plane restart (a new manager reattaches), sleep and wake. The docker runs are skipped,
with the reason, where dockerd or the base image cannot be had."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from replicas.runtime import RuntimeStatus
from replicas.services.principal import Principal
from replicas.services.workspaces import WorkspaceManager
from replicas.store.models import Organization
from replicas.testing.script import Fail, Text, WriteFile
from tests.docker_support import BASE_IMAGE_TAG, ensure_base_image, ensure_remote_image, ensure_workspace_image
from tests.engine.conftest import read_events
from tests.runtime.test_docker_remote import docker_proxy  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@pytest.fixture(params=["local", "docker", "docker-host-python", "docker-remote", "kubernetes"])
def backend(request, agent_tools) -> dict:
    """Settings overrides that put the workspace on one runtime backend. `docker` is the docker backend as a
    user sets it up (README, "Docker"): the default settings and the image `replicas images build` makes,
    which runs its own engine and Claude Code (`ensure_workspace_image`). `docker-host-python` runs the
    control plane's Python in the test base image instead (the development mode). `docker-remote` is the
    docker backend on a Docker engine it reaches over `tcp://` (a proxy to the local one): a plain volume,
    the engine over TCP, and the engine and Claude Code from the image. `kubernetes` runs only against a live
    cluster (REPLICAS_K8S_LIVE_KUBECONFIG, as tests/kubernetes: its namespace and image from
    REPLICAS_K8S_LIVE_NAMESPACE and REPLICAS_K8S_LIVE_IMAGE, whose pods must reach this machine's scripted model),
    and is skipped with that reason otherwise: no cluster can run here."""
    if request.param == "local":
        return {"runtime": "local"}
    if request.param == "kubernetes":
        kubeconfig = os.environ.get("REPLICAS_K8S_LIVE_KUBECONFIG")
        if not kubeconfig:
            pytest.skip("kubernetes backend: no live cluster; set REPLICAS_K8S_LIVE_KUBECONFIG to run it against one")
        return {"runtime": "kubernetes", "k8s_kubeconfig": kubeconfig,
                "k8s_namespace": os.environ.get("REPLICAS_K8S_LIVE_NAMESPACE", "replicas-test"),
                "k8s_image": os.environ.get("REPLICAS_K8S_LIVE_IMAGE", "replicas-workspace:latest")}
    reason = ensure_base_image()
    if reason:
        print(f"\nSKIP {request.param} backend: {reason}")
        pytest.skip(f"{request.param} backend: {reason}")
    if request.param == "docker":
        image, reason = ensure_workspace_image(str(agent_tools))
        assert image, reason  # a broken image build is a failure, not a skip
        return {"runtime": "docker", "docker_image": image}
    if request.param == "docker-host-python":
        return {"runtime": "docker", "docker_image": BASE_IMAGE_TAG, "docker_network": "host",
                "docker_engine": "host-python"}
    image, reason = ensure_remote_image(str(agent_tools))
    if reason:
        print(f"\nSKIP {request.param} backend: {reason}")
        pytest.skip(f"{request.param} backend: {reason}")
    return {"runtime": "docker", "docker_image": image, "docker_network": "host", "docker_engine_bind": "127.0.0.1",
            "docker_host": request.getfixturevalue("docker_proxy").url}


async def read(manager: WorkspaceManager, workspace, path: Path) -> str | None:
    """A file of the workspace as seen from inside (None when it is not there), on any backend."""
    result = await manager.runtime.exec(manager.runtime.load_state(workspace.runtime_state),
                                        ["sh", "-c", 'cat -- "$1" 2>/dev/null || echo "<missing>"', "sh", str(path)],
                                        timeout=30)
    return None if result.output == "<missing>\n" else result.output


async def _principal(app, org_name: str) -> Principal:
    async with app.state.sessions() as session:
        org = await session.scalar(select(Organization).where(Organization.name == org_name))
    return Principal.system(org.id)


async def test_a_message_makes_the_real_agent_edit_the_checkout(app, org, client, make_git_repo, model,
                                                              agent_tools, settings, backend):
    origin = make_git_repo("shop", {"README.md": "# shop\n", "app.py": "print('hi')\n"})
    repo = (await client.post("/v1/replica/repositories", json={"name": "acme/shop", "url": str(origin)})).json()
    env = (await client.post("/v1/environments", json={
        "name": "e2e", "repository_id": repo["repository"]["id"], "system_prompt": "Be brief."})).json()
    env_id = env["environment"]["id"]
    for key, value in {**model.anthropic_env(), **model.openai_env(), "REPLICAS_AGENT_MAX_RETRIES": "1"}.items():
        await client.post(f"/v1/environments/{env_id}/variables", json={"key": key, "value": value})
    await client.post("/v1/environments/global/files", json={"name": "notes", "path": "~/NOTES.md",
                                                             "content": "remember\n"})

    manager = WorkspaceManager(settings.model_copy(update={"tools_dir": agent_tools, **backend}),
                               app.state.sessions, app.state.box)
    principal = await _principal(app, org.name)
    started = time.monotonic()
    workspace = await manager.create(principal, env_id, name="e2e", provider="claude")
    engine_ready = time.monotonic() - started
    try:
        assert workspace.status == "active" and workspace.default_chat_id
        home = Path(manager.runtime.load_state(workspace.runtime_state).home)
        checkout = home / "workspaces" / "shop"
        assert await read(manager, workspace, checkout / "app.py") == "print('hi')\n"
        assert await read(manager, workspace, home / "NOTES.md") == "remember\n"

        model.add_turn(WriteFile(str(checkout / "hello.py"), "print('hello')\n"), Text("Created it."))
        sent = time.time()
        accepted = await manager.send_message(workspace, "Create hello.py")
        assert accepted["queued"] is False
        async with manager.engine(workspace, timeout=None) as engine:
            events = await read_events(engine, 0, lambda e: e["type"] == "chat.turn.completed", timeout=90)
        first_delta = next(e for e in events if e["type"] == "chat.turn.delta")
        assert events[-1]["payload"]["isComplete"] is True
        assert await read(manager, workspace, checkout / "hello.py") == "print('hello')\n"
        [state] = await manager.repos(workspace)
        assert state["gitDiff"]["added"] >= 1 and "hello.py" in state["gitDiff"]["fullDiff"]
        first_event_after = datetime.fromisoformat(first_delta["ts"].replace("Z", "+00:00")).timestamp() - sent
        print(f"\n[{manager.runtime.name}] start workspace -> engine ready: {engine_ready:.2f}s; "
              f"message sent -> first agent event: {first_event_after:.2f}s")

        # Isolation: from inside, the database, the key file, the data dir and other workspaces are out of sight.
        handle = manager.runtime.load_state(workspace.runtime_state)
        neighbour = settings.data_dir / "workspaces" / "neighbour" / "home" / "private.txt"
        neighbour.parent.mkdir(parents=True)
        neighbour.write_text("another workspace's file\n")
        for secret_path in (settings.data_dir / "secret.key", Path(settings.database_url.split("///", 1)[1]),
                            neighbour):
            result = await manager.runtime.exec(handle, ["cat", str(secret_path)], timeout=10)
            assert result.exit_code != 0, f"{secret_path} is readable from inside the workspace"

        # A control-plane restart: a new manager (and runtime object) reattaches to the running engine.
        restarted = WorkspaceManager(manager.settings, app.state.sessions, app.state.box)
        again = await restarted.get(principal, str(workspace.id))
        assert await restarted.poll(again) == RuntimeStatus.RUNNING
        async with restarted.engine(again, timeout=None) as engine:
            replay = await read_events(engine, events[-2]["seq"], lambda e: e["seq"] == events[-1]["seq"])
        assert [e["seq"] for e in replay] == [events[-1]["seq"]]

        # Sleep stops every process and keeps the disk; wake brings the engine and its chats back.
        slept = await restarted.sleep(again)
        assert await restarted.poll(slept) == RuntimeStatus.STOPPED
        assert await read(manager, slept, checkout / "hello.py") == "print('hello')\n"
        woken = await restarted.wake(slept)
        chats = await restarted.call_engine(woken, "GET", "/chats")
        assert workspace.default_chat_id in [c["id"] for c in chats["chats"]]

        async def turn(message: str, **options) -> list[dict]:
            async with restarted.engine(woken, timeout=None) as engine:
                after = (await engine.get("/health")).json()["lastSeq"]
                await restarted.send_message(woken, message, **options)
                return await read_events(engine, after, lambda e: e["type"] == "chat.turn.completed", timeout=90)

        # A follow-up after the wake resumes the agent's session: the model sees the earlier exchange.
        model.add_turn(Text("Still here."))
        resumed = await turn("Are you still there?")
        assert resumed[-1]["payload"]["isComplete"] is True
        assert "Create hello.py" in model.model_requests()[-1].conversation_text()

        # Plan mode edits nothing, even when the model asks for a write.
        model.add_turn(WriteFile(str(checkout / "planned.py"), "x = 1\n"), Text("That is the plan."))
        await turn("Plan a planned.py", planMode=True)
        assert await read(manager, woken, checkout / "planned.py") is None

        # A crashed agent (the model endpoint fails every request) ends its turn with an error.
        model.add_turn(Fail(status=400, message="scripted crash"))
        crashed = await turn("This one fails")
        assert crashed[-1]["payload"]["isComplete"] is False
        assert any(e["type"] == "error" for e in crashed)
    finally:
        await manager.destroy(workspace)
    assert not home.exists()
