"""The `kubernetes` backend through the product: a real `replicas serve` with REPLICAS_RUNTIME=kubernetes, its
cluster the API server stand-in (apiserver.py), driven through the REST API as a user drives it. A replica with a
first message (the real Claude Code behind the scripted model), its answer in the history and the SSE stream, the
diff, a control-plane restart (SIGKILL) that reattaches, a restart that compares the store with what it finds in
the cluster by label, a follow-up, sleep (pod gone, claim kept), wake (a new
pod on the same files) and delete (nothing of the workspace left in the cluster); a preview of a port the agent
serves in its pod and a terminal session in it, both through the control plane; a repository with a network origin
cloned by the pod itself.

Stand-in only: the pods here must reach this machine's control plane and scripted model, which a live cluster's
cannot; tests/workspaces' `kubernetes` parameter drives a live cluster end to end."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from replicas.runtime.bwrap import find_bwrap
from replicas.runtime.k8s_objects import workspace_name
from replicas.testing.script import ShellCall, Text, WriteFile
from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures
from tests.engine.test_engine_terminal import output as terminal_output
from tests.engine.test_engine_terminal import read_stream
from tests.integrations.stand_ins import StandIn
from tests.kubernetes.apiserver import KINDS, StandInApiServer
from tests.kubernetes.conftest import STANDIN_IMAGE, standin_engine_image
from tests.replicas.test_events_restart import (
    VERSION,
    auth,
    is_completed,
    read_sse,
    running_server,
    setup_environment,
    wait_settled,
)

pytestmark = [pytest.mark.slow]
NAMESPACE = "replicas-workspaces"
IN_CLUSTER_API = "http://replicas.replicas.svc.cluster.local"


@pytest.fixture(scope="module")
def standin(tmp_path_factory, agent_tools):  # noqa: F811
    """The stand-in cluster, whose workspace image carries the agent CLIs as a real image does."""
    if find_bwrap() is None:
        pytest.skip("the API server stand-in runs containers under bubblewrap, which is missing here")
    root = tmp_path_factory.mktemp("standin")
    # The test's temporary files (the control plane's data dir among them) are not on the stand-in's "nodes".
    server = StandInApiServer(root, {STANDIN_IMAGE: standin_engine_image(REPLICAS_TOOLS_DIR=str(agent_tools))},
                              hidden=(tmp_path_factory.getbasetemp(),))
    server.start()
    server.kubeconfig = server.write_kubeconfig(root / "kubeconfig", NAMESPACE)
    yield server
    server.close()


def kubernetes_env(standin: StandInApiServer, **extra: str) -> dict[str, str]:
    """`replicas serve`'s settings for the stand-in cluster, as an operator sets them (README, "Kubernetes")."""
    return {"REPLICAS_RUNTIME": "kubernetes", "REPLICAS_K8S_KUBECONFIG": str(standin.kubeconfig),
            "REPLICAS_K8S_NAMESPACE": NAMESPACE, "REPLICAS_K8S_IMAGE": STANDIN_IMAGE,
            "REPLICAS_K8S_PENDING_TIMEOUT_SECONDS": "60", "REPLICAS_K8S_API_URL": IN_CLUSTER_API, **extra}


def cluster_objects(standin: StandInApiServer, replica_id: str) -> dict[str, list[str]]:
    """Every object of the replica's workspace in the stand-in, by kind: names (pods: `name@uid`)."""
    name = workspace_name(replica_id)
    found: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for (kind, namespace, _), obj in list(standin.objects.items()):
        labels = obj["metadata"].get("labels") or {}
        if namespace == NAMESPACE and labels.get("replicas.dev/workspace") == name:
            found[kind].append(f"{obj['metadata']['name']}@{obj['metadata']['uid']}" if kind == "pods"
                               else obj["metadata"]["name"])
    return found


async def until(predicate, timeout: float = 90, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := await predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.2)
    return value


async def replica(client: httpx.AsyncClient, replica_id: str, **params) -> dict:
    response = await client.get(f"/v1/replica/{replica_id}", params=params)
    assert response.status_code == 200, response.text
    return response.json()["replica"]


async def turn_frames(client: httpx.AsyncClient, replica_id: str, after: int) -> list[dict]:
    """The SSE frames of the replica's stream after event `after`, until a turn completes."""
    frames: list[dict] = []
    async with client.stream("GET", f"/v1/replica/{replica_id}/events", params={"after": after},
                             timeout=httpx.Timeout(120, read=120)) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        await asyncio.wait_for(read_sse(response, frames, is_completed), 120)
    return [f for f in frames if "id" in f]


async def test_a_replica_lives_on_kubernetes_through_the_api(tmp_path, agent_tools, model, make_git_repo,  # noqa: F811
                                                             standin):
    async with running_server(tmp_path, agent_tools, **kubernetes_env(standin)) as server:
        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
            env_id = await setup_environment(client, make_git_repo, model)
            model.add_turn(WriteFile("hello.py", "print('hello')\n"), Text("Created hello.py."))
            created = await client.post("/v1/replica", headers=VERSION, json={
                "name": "on-k8s", "environment_id": env_id, "message": "Create hello.py"})
            assert created.status_code == 201, created.text
            replica_id = created.json()["replica"]["id"]

            # The answer, on the stream and in the history.
            first = await turn_frames(client, replica_id, 0)
            assert first[-1]["data"]["payload"]["isComplete"] is True
            assert any("Created hello.py." in str(f["data"]) for f in first if f["event"] == "chat.turn.delta")
            await wait_settled(client, replica_id, timeout=90)
            history = (await client.get(f"/v1/replica/{replica_id}/history")).json()
            assert history["events"][-1]["type"] == "claude-result"
            assert "Created hello.py." in str(history["events"])
            details = await replica(client, replica_id, include="diffs")
            assert details["status"] == "active"
            [repo] = details["repository_statuses"]
            assert repo["git_diff"]["added"] == 1 and "+print('hello')" in repo["git_diff"]["full_diff"]

            # In the cluster: the engine's pod, its claim, Secret and NetworkPolicy, nothing else.
            objects = cluster_objects(standin, replica_id)
            name = workspace_name(replica_id)
            assert {kind: [n.split("@")[0] for n in names] for kind, names in objects.items()} == \
                {"pods": [name], "persistentvolumeclaims": [name], "secrets": [name], "networkpolicies": [name]}
            [first_pod] = objects["pods"]

            # A control plane killed mid-life: the new process finds the pod again and does not replace it.
            server.kill()
            await server.start()
        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
            assert (await replica(client, replica_id))["status"] == "active"
            # The pod shares no disk with the control plane: its data dir (keys, database, mirrors) is not there.
            # It reaches the control plane's API at the in-cluster address it was given.
            model.add_turn(ShellCall(f"cat hello.py; echo api=$REPLICAS_API_URL; ls {tmp_path / 'data' / 'mirrors'}"),
                           Text("It prints hello."))
            last = first[-1]["id"]
            sent = await client.post(f"/v1/replica/{replica_id}/messages", json={"message": "What does it print?"})
            assert sent.status_code == 200 and sent.json()["status"] == "sent", sent.text
            second = await turn_frames(client, replica_id, int(last))
            assert second[-1]["data"]["payload"]["isComplete"] is True
            assert int(second[0]["id"]) == int(last) + 1
            seen = model.model_requests()[-1].conversation_text()
            assert "print('hello')" in seen and "No such file or directory" in seen, seen[-500:]
            assert f"api={IN_CLUSTER_API}" in seen
            assert cluster_objects(standin, replica_id)["pods"] == [first_pod]

            # Sleep: the pod and its Secret go, the claim (the files) stays.
            slept = await client.post(f"/v1/workspaces/{replica_id}/sleep")
            assert slept.status_code == 200 and slept.json() == {"success": True}, slept.text
            asleep = cluster_objects(standin, replica_id)  # before the read below, which starts a wake
            assert (await replica(client, replica_id))["status"] in ("sleeping", "preparing")
            assert asleep == {"pods": [], "persistentvolumeclaims": [name], "secrets": [],
                              "networkpolicies": [name]}

            # Wake (a read wakes it): a new pod on the same claim, the same files and chat.
            async def awake():
                body = await replica(client, replica_id, include="diffs")
                return body if body["status"] == "active" and not body["waking"] else None

            woken = await until(awake, what="the wake")
            [new_pod] = cluster_objects(standin, replica_id)["pods"]
            assert new_pod != first_pod
            assert woken["repository_statuses"][0]["git_diff"]["added"] == 1
            model.add_turn(ShellCall("cat hello.py"), Text("Still hello."))
            sent = await client.post(f"/v1/replica/{replica_id}/messages", json={"message": "Still there?"})
            assert sent.status_code == 200, sent.text
            third = await turn_frames(client, replica_id, int(second[-1]["id"]))
            assert third[-1]["data"]["payload"]["isComplete"] is True
            assert "print('hello')" in model.model_requests()[-1].conversation_text()
            assert "What does it print?" in model.model_requests()[-1].conversation_text()  # same session

            # The node evicts the pod: the next message brings the workspace up again on a new pod, same files.
            # (Once the turn is settled: the engine saves that its turn ended after it journals the end.)
            await wait_settled(client, replica_id, timeout=60)
            standin.evict(NAMESPACE, name)
            model.add_turn(ShellCall("cat hello.py"), Text("Back after the eviction."))
            sent = await client.post(f"/v1/replica/{replica_id}/messages", json={"message": "After the eviction?"})
            assert sent.status_code == 200, sent.text
            fourth = await turn_frames(client, replica_id, int(third[-1]["id"]))
            assert fourth[-1]["data"]["payload"]["isComplete"] is True, json.dumps([f["data"] for f in fourth])[-3000:]
            assert "print('hello')" in model.model_requests()[-1].conversation_text()
            [after_eviction] = cluster_objects(standin, replica_id)["pods"]
            assert after_eviction != new_pod
            assert (await replica(client, replica_id))["status"] == "active"

            # Delete: nothing of the workspace is left in the cluster.
            deleted = await client.delete(f"/v1/replica/{replica_id}")
            assert deleted.json() == {"success": True}, deleted.text
            assert (await client.get(f"/v1/replica/{replica_id}")).status_code == 404

            async def gone():
                return cluster_objects(standin, replica_id) == {kind: [] for kind in KINDS}

            await until(gone, timeout=30, what="the workspace's objects to go")


async def test_a_warm_pool_fills_on_kubernetes_and_a_create_claims_from_it(tmp_path, agent_tools, model,  # noqa: F811
                                                                           make_git_repo, standin):
    """No base snapshots on a cluster (it shares no disk with the control plane): every pool workspace is warmed
    cold, its warm hook run in a throwaway pod on its claim before its engine's pod starts."""
    settings = kubernetes_env(standin, REPLICAS_POOL_ENABLED="true", REPLICAS_POOL_INTERVAL_SECONDS="0.2")
    async with running_server(tmp_path, agent_tools, **settings) as server:
        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
            env_id = await setup_environment(client, make_git_repo, model)
            saved = await client.post(f"/v1/environments/{env_id}/warm-hooks/save",
                                      json={"content": "echo warmed-in-the-cluster > ~/warmed.txt\n"})
            assert saved.status_code == 201, saved.text
            enabled = await client.put(f"/v1/environments/{env_id}/warm-pools",
                                       json={"enabled": True, "target_size": 1})
            assert enabled.status_code == 200, enabled.text
            pool = enabled.json()["warm_pool"]

            async def ready():
                rows = (await client.get(f"/v1/warm-pools/{pool['id']}/workspaces")).json()["workspaces"]
                return [w for w in rows if w["status"] == "ready"] or None

            [pooled] = await until(ready, timeout=120, what="a ready pool workspace")
            state = (await client.get(f"/v1/environments/{env_id}/warm-hooks")).json()["warm_pool"]
            assert state["ready_count"] == 1 and state["has_base_snapshot"] is False
            assert [n.split("@")[0] for n in cluster_objects(standin, pooled["sandbox_id"])["pods"]] == \
                [workspace_name(pooled["sandbox_id"])]  # its engine's pod; the warm hook's is gone

            model.add_turn(ShellCall("cat ~/warmed.txt"), Text("Claimed."))
            created = await client.post("/v1/replica", headers=VERSION, json={
                "name": "from-the-pool", "environment_id": env_id, "message": "Read the warm hook's file"})
            assert created.status_code == 201, created.text
            assert created.json()["replica"]["id"] == pooled["sandbox_id"]
            await wait_settled(client, pooled["sandbox_id"], timeout=90)
            assert "warmed-in-the-cluster" in model.model_requests()[-1].conversation_text()
            [refill] = await until(ready, timeout=120, what="the pool to refill")

            # A disabled pool's ready workspace is expired: nothing of it stays in the cluster.
            await client.put(f"/v1/environments/{env_id}/warm-pools", json={"enabled": False})

            async def expired():
                return cluster_objects(standin, refill["sandbox_id"]) == {kind: [] for kind in KINDS}

            await until(expired, timeout=60, what="the expired pool workspace's objects to go")


async def test_a_restarted_control_plane_compares_the_store_with_the_cluster_by_label(tmp_path, agent_tools, model,  # noqa: F811
                                                                                    make_git_repo, standin):
    """While the control plane is down, a sleeping replica's objects (its claim: the files) are deleted by hand, and
    a workspace this store never had appears. At start it finds the workspaces by label: the first replica goes to
    `error` saying its volume is gone (not at its next wake), and the stranger is named in the log, left alone."""
    from replicas.runtime.base import WorkspaceSpec
    from replicas.runtime.kubernetes import KubernetesRuntime
    from replicas.settings import Settings

    outside = KubernetesRuntime(Settings(data_dir=tmp_path / "elsewhere", database_url=None, runtime="kubernetes",
                                         k8s_kubeconfig=str(standin.kubeconfig), k8s_namespace=NAMESPACE,
                                         k8s_image=STANDIN_IMAGE), stop_grace_seconds=3)
    stranger = "5e7a9c1e-0000-4000-8000-00000000beef"
    async with running_server(tmp_path, agent_tools, **kubernetes_env(standin)) as server:
        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
            env_id = await setup_environment(client, make_git_repo, model)
            model.add_turn(Text("Ready."))
            created = await client.post("/v1/replica", headers=VERSION, json={
                "name": "lost", "environment_id": env_id, "message": "Hello"})
            assert created.status_code == 201, created.text
            replica_id = created.json()["replica"]["id"]
            await wait_settled(client, replica_id, timeout=90)
            assert (await client.post(f"/v1/workspaces/{replica_id}/sleep")).status_code == 200
        server.kill()
        await outside.destroy(outside.handle_for(replica_id))  # an operator's `kubectl delete` of its objects
        await outside.provision(stranger, WorkspaceSpec())
        try:
            await server.start()
            async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
                async def errored():
                    body = await replica(client, replica_id, wake="false")
                    return body if body["status"] == "error" else None

                details = await until(errored, timeout=30, what="the replica whose volume is gone in error")
                assert "gone from the cluster" in details["config"]["provisioning_error"]["message"]
                await until(lambda: _logged(server, stranger), timeout=10, what="the stranger named in the log")
                assert cluster_objects(standin, stranger)["persistentvolumeclaims"], "the stranger was touched"
        finally:
            await outside.destroy(outside.handle_for(stranger))
            await outside.api.close()


async def _logged(server, text: str) -> bool:
    return text in server.log_path.read_text()


def lines(terminal_text: str) -> list[str]:
    return terminal_text.replace("\r", "\n").split("\n")


def free_port() -> int:
    """A port nothing listens on (the stand-in's pods share this machine's network, each at its own IP)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_preview_and_a_terminal_reach_the_pod_through_the_control_plane(tmp_path, agent_tools, model,  # noqa: F811
                                                                               make_git_repo, standin):
    """What the agent serves in its pod is reachable at the preview's URL on the control plane (which relays to
    the pod's IP), and a terminal session runs its shell in the pod."""
    port = free_port()
    async with running_server(tmp_path, agent_tools, **kubernetes_env(standin)) as server:
        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
            env_id = await setup_environment(client, make_git_repo, model)
            model.add_turn(ShellCall(f"mkdir -p ~/site && echo served-from-the-pod > ~/site/index.html && "
                                     f"(setsid python3 -m http.server {port} --bind 0.0.0.0 --directory ~/site "
                                     f"> ~/site.log 2>&1 < /dev/null &) && echo started"),
                           Text("Serving the site."))
            created = await client.post("/v1/replica", headers=VERSION, json={
                "name": "serving", "environment_id": env_id, "message": f"Serve a site on port {port}"})
            assert created.status_code == 201, created.text
            replica_id = created.json()["replica"]["id"]
            await wait_settled(client, replica_id, timeout=90)
            pod_ip = standin.objects[("pods", NAMESPACE, workspace_name(replica_id))]["status"]["podIP"]
            assert pod_ip.startswith("127.1.")  # not this machine's 127.0.0.1: the proxy must go to the pod

            # The preview: its URL is on the control plane, which relays to the pod's IP.
            made = await client.post(f"/v1/workspaces/{replica_id}/previews", json={"port": port})
            assert made.status_code == 201, made.text
            path = "/previews/" + made.json()["publicUrl"].split("/previews/", 1)[1]

            async def served():
                response = await client.get(path)
                return response if response.status_code == 200 else None

            page = await until(served, timeout=30, what="the preview to answer")
            assert page.text == "served-from-the-pod\n"

            # A terminal session: a shell in the pod.
            sessions = f"/v1/workspaces/{replica_id}/terminal/sessions"
            opened = await client.post(sessions, json={"cols": 80, "rows": 24})
            assert opened.status_code == 201, opened.text
            url = f"{sessions}/{opened.json()['session']['id']}"
            typed = await client.post(f"{url}/input", json={"data": "echo hi\n", "generation": 0, "sequence": 0})
            assert typed.json() == {"success": True}, typed.text
            events = await read_stream(client, f"{url}/stream", lambda events, text: "hi" in lines(text), timeout=30)
            assert "hi" in lines(terminal_output(events))  # the command's output, not only its echo
            listed = (await client.get(sessions)).json()["sessions"]
            assert [s["id"] for s in listed] == [opened.json()["session"]["id"]]
            closed = await client.delete(url)
            assert closed.json() == {"success": True}, closed.text


async def test_a_staged_home_lost_before_the_first_start_is_provisioned_again(tmp_path, agent_tools, model,  # noqa: F811
                                                                              make_git_repo, standin):
    """The home is staged on the control plane's disk (an emptyDir in a cluster) until the first start copies it
    into the claim. Lost in between (as with the control plane's pod), the first start does not run the engine
    on the empty claim: the home is laid out again (a new clone) and the workspace comes up with its repository."""
    staging_root = Path(os.path.realpath(tmp_path / "data" / "workspaces"))
    lost: list[list[str]] = []

    def lose_the_staged_home(method: str, kind: str, namespace: str, name: str | None) -> None:
        # The first start reads the engine's pod by name first: the staged home goes just before.
        if lost or (method, kind) != ("GET", "pods") or name is None:
            return
        for staging in staging_root.glob("*"):
            if workspace_name(staging.name) == name:
                lost.append(sorted(p.name for p in (staging / "home" / "workspaces").glob("*/*")))
                shutil.rmtree(staging)

    standin.before_request.append(lose_the_staged_home)
    try:
        async with running_server(tmp_path, agent_tools, **kubernetes_env(standin)) as server:
            async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
                env_id = await setup_environment(client, make_git_repo, model)
                model.add_turn(ShellCall("cat README.md"), Text("It is the shop."))
                created = await client.post("/v1/replica", headers=VERSION, json={
                    "name": "restaged", "environment_id": env_id, "message": "What is this repository?"})
                assert created.status_code == 201, created.text
                replica_id = created.json()["replica"]["id"]
                await wait_settled(client, replica_id, timeout=90)
                assert lost == [[".git", "README.md"]]  # the clone was staged, then lost before the first start

                details = await replica(client, replica_id)
                assert details["status"] == "active", details
                assert [r["repository"] for r in details["repository_statuses"]] == ["shop"]
                assert "# shop" in model.model_requests()[-1].conversation_text()
                claim = standin.objects[("persistentvolumeclaims", NAMESPACE, workspace_name(replica_id))]
                assert claim["metadata"]["annotations"]["replicas.dev/home"] == "in-claim"
    finally:
        standin.before_request.remove(lose_the_staged_home)


async def test_the_pod_clones_its_repository_from_the_origin(tmp_path, agent_tools, model, make_git_repo,  # noqa: F811
                                                              standin):
    """A repository with a network origin is cloned by the workspace, in its pod, from the origin and with the
    repository's credential; the control plane reads its configuration (the warm hook) from its own mirror and never
    holds the checkout. The origin is git's smart HTTP on loopback, refusing anyone without the token."""
    token = "ghp_pod_clone_token"
    # The origin's certificate, and its CA where the pods see it (outside the tests' hidden temporary dirs): as a
    # company's workspace image trusts its internal CA, the stand-in's image is given GIT_SSL_CAINFO.
    ca = Path(tempfile.mkdtemp(prefix="replicas-origin-ca-"))
    tls = _loopback_tls(ca)
    image_env = standin.images[STANDIN_IMAGE].env
    image_env["GIT_SSL_CAINFO"] = str(ca / "cert.pem")
    source = make_git_repo("shop", {"README.md": "# shop over https\n", "replicas.json": json.dumps(
        {"warmHook": {"commands": ["git rev-parse HEAD > $HOME/warmed-at"]}})})
    git_root = tmp_path / "origin"
    (git_root / "acme").mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(git_root / "acme" / "shop.git")], check=True)
    origin = StandIn(git_root=git_root, git_token=token, tls=tls).start()
    url = f"{origin.url}/acme/shop.git"
    staged_checkouts: list[list[Path]] = []

    def staged(method: str, kind: str, namespace: str, name: str | None) -> None:
        if method == "POST" and kind == "pods":  # whenever a pod is made: what the control plane holds
            staged_checkouts.append(list((tmp_path / "data").glob("**/workspaces/shop/.git")))

    standin.before_request.append(staged)
    try:
        async with running_server(tmp_path, agent_tools, GIT_SSL_CAINFO=str(ca / "cert.pem"),
                                  **kubernetes_env(standin)) as server:
            async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
                repo = await client.post("/v1/replica/repositories", json={
                    "name": "acme/shop", "url": url, "credential": token})
                assert repo.status_code == 201, repo.text
                env = await client.post("/v1/environments", json={
                    "name": "shop", "repository_id": repo.json()["repository"]["id"]})
                env_id = env.json()["environment"]["id"]
                for key, value in {**model.anthropic_env(), "REPLICAS_AGENT_MAX_RETRIES": "1"}.items():
                    assert (await client.post(f"/v1/environments/{env_id}/variables",
                                              json={"key": key, "value": value})).status_code == 201
                # The environment's warm hook, a script written into the home, runs on the clone too.
                saved = await client.post(f"/v1/environments/{env_id}/warm-hooks/save", json={
                    "content": "#!/bin/sh\nset -e\nhead -1 ~/workspaces/shop/README.md > ~/env-warmed\n"})
                assert saved.status_code in (200, 201), saved.text
                model.add_turn(ShellCall("cat README.md; git remote get-url origin; git log -1 --format=%H; "
                                         "cat ~/warmed-at; git config user.name; echo env-hook: $(cat ~/env-warmed)"),
                               Text("Read it."))
                created = await client.post("/v1/replica", headers=VERSION, json={
                    "name": "cloned", "environment_id": env_id, "message": "What is in the README?"})
                assert created.status_code == 201, created.text
                replica_id = created.json()["replica"]["id"]
                frames = await turn_frames(client, replica_id, 0)
                assert frames[-1]["data"]["payload"]["isComplete"] is True
                seen = model.model_requests()[-1].conversation_text()
                head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                                      text=True, check=True).stdout.strip()
                assert "# shop over https" in seen and url in seen and "Replicas Agent" in seen, seen[-800:]
                assert "env-hook: # shop over https" in seen
                assert seen.count(head) >= 2  # the checkout's commit, and the warm hook's record of it
                assert token not in seen  # not in the origin URL, nor anywhere the agent looked
                details = await replica(client, replica_id)
                assert details["status"] == "active"

                # Testing a warm hook runs it in a sandbox pod of its own, on a clone that pod made.
                tested = await client.post(f"/v1/environments/{env_id}/warm-hooks/test", json={
                    "content": "#!/bin/sh\nhead -1 ~/workspaces/shop/README.md\ngit -C ~/workspaces/shop log -1 "
                               "--format=%H\n"}, timeout=180)
                assert tested.status_code == 200, tested.text
                result = tested.json()["test"]
                assert result["exit_code"] == 0, result
                assert "# shop over https" in result["output"] and head in result["output"], result
    finally:
        standin.before_request.remove(staged)
        image_env.pop("GIT_SSL_CAINFO", None)
        origin.close()
        shutil.rmtree(ca, ignore_errors=True)
    # The origin sent three packs: the control plane's mirror (its refresh for the hook test had nothing new), and
    # a pod's clone for the replica and for the hook test; the control plane never made a checkout.
    packs = [r for r in origin.git_requests if r.path.endswith("/git-upload-pack")]
    assert len(packs) == 3, [r.path for r in origin.git_requests]
    assert staged_checkouts and all(found == [] for found in staged_checkouts)


def _loopback_tls(folder: Path) -> ssl.SSLContext:
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem in `folder`), and a server context with it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                                       serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context
