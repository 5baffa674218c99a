"""The `kubernetes` backend driven through a workspace's whole life against a cluster (conftest.py: the API
server stand-in here, a live cluster when configured): provision -> start -> poll -> sleep -> wake ->
destroy, commands before the first start and while running, a restarted control plane, and the failure
phases (ImagePullBackOff, CrashLoopBackOff, Pending too long, Evicted) with their reasons."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

import httpx
import pytest

from replicas.errors import Conflict, NotFound
from replicas.runtime.base import HomeNotProvisioned, RuntimeStatus, WorkspaceSpec
from replicas.runtime.k8s_api import ApiError
from replicas.runtime.kubernetes import WorkspacePodFailed
from replicas.services.workspaces import ENGINE_SECRET_HEADER

pytestmark = pytest.mark.slow

SECRET = "k8s-engine-secret"


def new_id() -> str:
    return str(uuid.uuid4())


async def health(runtime, handle, secret: str | None = SECRET, timeout: float = 30) -> httpx.Response:
    """The engine's /health once it answers (with `secret`, or none)."""
    endpoint = runtime.engine_endpoint(handle)
    headers = {ENGINE_SECRET_HEADER: secret} if secret else {}
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(base_url=endpoint.base_url, trust_env=False, timeout=5) as client:
        while True:
            try:
                return await client.get("/health", headers=headers)
            except httpx.TransportError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def get(runtime, kind: str, name: str) -> dict | None:
    try:
        return await runtime.api.request("GET", runtime._path(kind, name))
    except ApiError as exc:
        if exc.code == 404:
            return None
        raise


async def until_failure(runtime, handle, timeout: float = 60) -> str:
    """The reason `poll` gives once the pod shows it will not run."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            await runtime.poll(handle)
        except WorkspacePodFailed as exc:
            return exc.details
        await asyncio.sleep(0.2)
    raise AssertionError("the pod never failed")


async def test_a_workspace_lives_provision_start_poll_sleep_wake_destroy(make_runtime):
    runtime = make_runtime()
    handle = await runtime.provision(new_id(), WorkspaceSpec(size="small", env={"LANG": "C.UTF-8"}))
    assert await runtime.poll(handle) is RuntimeStatus.STOPPED
    # Provisioning writes the home here; the first start copies it into the claim.
    (Path(handle.home) / "workspaces" / "repo").mkdir(parents=True)
    (Path(handle.home) / "workspaces" / "repo" / "README.md").write_text("staged at provisioning\n")
    with pytest.raises(NotFound):
        await runtime.start(runtime.handle_for(new_id()), [], {})

    await runtime.start(handle, ["ignored: the image's engine runs"], {"REPLICAS_ENGINE_SECRET": SECRET,
                                                                         "PROVIDER_KEY": "sk-provider"})
    assert await runtime.poll(handle) is RuntimeStatus.RUNNING
    assert handle.pod_ip and not any(Path(handle.workspace_dir).iterdir())  # the staging area is emptied
    response = await health(runtime, handle)
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert (await health(runtime, handle, secret=None)).status_code == 401
    assert (await health(runtime, handle, secret="wrong")).status_code == 401
    with pytest.raises(Conflict):
        await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})

    # The secret is in the Secret, never in the pod spec; the workspace's policy and claim exist.
    pod = await get(runtime, "pods", handle.name)
    assert SECRET not in json.dumps(pod) and "sk-provider" not in json.dumps(pod)
    assert await get(runtime, "secrets", handle.name) is not None
    assert await get(runtime, "networkpolicies", handle.name) is not None

    result = await runtime.exec(handle, ["sh", "-c", 'cat workspaces/repo/README.md; echo "key=$PROVIDER_KEY x=$X"; '
                                         'pwd; echo written-while-running > later.txt'], 30, env={"X": "it's"})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["staged at provisioning", "key=sk-provider x=it's", handle.home]

    await runtime.stop(handle)  # sleep: the pod and its Secret go, the claim stays
    assert await runtime.poll(handle) is RuntimeStatus.STOPPED
    assert await get(runtime, "pods", handle.name) is None
    assert await get(runtime, "secrets", handle.name) is None
    assert await get(runtime, "persistentvolumeclaims", handle.name) is not None
    await runtime.stop(handle)  # idempotent

    await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})  # wake, on the same claim
    assert (await health(runtime, handle)).status_code == 200
    result = await runtime.exec(handle, ["cat", "later.txt", "workspaces/repo/README.md"], 30)
    assert result.output == "written-while-running\nstaged at provisioning\n"

    await runtime.destroy(handle)
    assert await runtime.poll(handle) is RuntimeStatus.MISSING
    for kind in ("secrets", "networkpolicies"):
        assert await get(runtime, kind, handle.name) is None
    await runtime.destroy(handle)  # idempotent


async def test_commands_before_the_first_start_run_in_a_throwaway_pod_on_the_claim(make_runtime):
    runtime = make_runtime()
    handle = await runtime.provision(new_id(), WorkspaceSpec())
    (Path(handle.home) / "hook.sh").write_text("echo hook ran; echo warmed > warmed.txt\n")
    outputs: list[bytes] = []
    result = await runtime.exec(handle, ["bash", "hook.sh"], 60, on_output=outputs.append)
    assert result.exit_code == 0 and result.output == "hook ran\n" and b"".join(outputs) == b"hook ran\n"
    assert not any(Path(handle.workspace_dir).iterdir())  # copied into the claim by the first pod, once
    failing = await runtime.exec(handle, ["sh", "-c", "echo to stderr >&2; exit 3"], 60)
    assert (failing.exit_code, failing.output, failing.timed_out) == (3, "to stderr\n", False)
    slow = await runtime.exec(handle, ["sleep", "30"], 1)
    assert slow.timed_out and slow.exit_code == 124
    pods = await runtime.api.request("GET", runtime._path("pods"),
                                     query={"labelSelector": f"replicas.dev/workspace={handle.name}"})
    assert [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")] == []  # all deleted
    await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    assert (await runtime.exec(handle, ["cat", "warmed.txt"], 30)).output == "warmed\n"


async def test_a_staged_home_lost_before_the_first_start_is_refused_and_staged_again(make_runtime):
    """The control plane that staged the home went (its emptyDir with it): no start or command runs on the empty
    claim, and a new control plane's `provision` stages the home again; once copied in, the claim says so."""
    runtime = make_runtime()
    handle = await runtime.provision(new_id(), WorkspaceSpec())
    (Path(handle.home) / "first.txt").write_text("staged by the lost control plane\n")
    shutil.rmtree(handle.workspace_dir)

    restarted = make_runtime()
    again = restarted.load_state(json.loads(json.dumps(runtime.get_state(handle))))
    with pytest.raises(HomeNotProvisioned, match="provision it again"):
        await restarted.start(again, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    with pytest.raises(HomeNotProvisioned):
        await restarted.exec(again, ["true"], 30)
    assert await get(restarted, "pods", again.name) is None

    again = await restarted.provision(handle.workspace_id, WorkspaceSpec())
    (Path(again.home) / "second.txt").write_text("staged again\n")
    await restarted.start(again, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    result = await restarted.exec(again, ["sh", "-c", "cat second.txt; test -e first.txt || echo no first.txt"], 30)
    assert result.output == "staged again\nno first.txt\n", result.output
    claim = await get(restarted, "persistentvolumeclaims", again.name)
    assert claim["metadata"]["annotations"]["replicas.dev/home"] == "in-claim"
    await restarted.stop(again)
    await restarted.start(again, [], {"REPLICAS_ENGINE_SECRET": SECRET})  # a wake has no staged home to ask for
    assert (await health(restarted, again)).status_code == 200


async def test_a_restarted_control_plane_finds_its_workspaces_by_handle_and_by_label(make_runtime):
    runtime = make_runtime()
    awake = await runtime.provision(new_id(), WorkspaceSpec())
    asleep = await runtime.provision(new_id(), WorkspaceSpec(size="large"))
    await runtime.start(awake, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    state = runtime.get_state(awake)

    restarted = make_runtime()  # a new process: nothing in memory but what the store kept
    again = restarted.load_state(json.loads(json.dumps(state)))
    assert await restarted.poll(again) is RuntimeStatus.RUNNING
    assert (await health(restarted, again)).status_code == 200
    found = await restarted.discover()
    assert found[awake.workspace_id] is RuntimeStatus.RUNNING
    assert found[asleep.workspace_id] is RuntimeStatus.STOPPED
    assert await restarted.poll(restarted.handle_for(asleep.workspace_id)) is RuntimeStatus.STOPPED
    forged = {**state, "name": "ws-someone-else"}
    with pytest.raises(Exception, match="Invalid workspace handle"):
        restarted.load_state(forged)


async def test_the_api_answers_conflicts_and_missing_objects_as_kubernetes_does(make_runtime):
    runtime = make_runtime()
    handle = await runtime.provision(new_id(), WorkspaceSpec())
    claim = await get(runtime, "persistentvolumeclaims", handle.name)
    with pytest.raises(ApiError) as conflict:
        await runtime.api.request("POST", runtime._path("persistentvolumeclaims"),
                                  body={k: claim[k] for k in ("apiVersion", "kind", "spec")} |
                                  {"metadata": {"name": handle.name}})
    assert conflict.value.code == 409 and "already exists" in conflict.value.details
    assert await runtime.provision(handle.workspace_id, WorkspaceSpec()) == handle  # idempotent
    assert await get(runtime, "pods", "no-such-pod") is None


async def test_an_image_that_cannot_be_pulled_fails_with_the_reason(make_runtime):
    runtime = make_runtime(k8s_image="registry.invalid/replicas-missing:0")
    handle = await runtime.provision(new_id(), WorkspaceSpec())
    with pytest.raises(WorkspacePodFailed, match="ImagePullBackOff|ErrImagePull"):
        await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    assert "the image cannot be pulled" in await until_failure(runtime, handle)
    await runtime.stop(handle)
    assert await runtime.poll(handle) is RuntimeStatus.STOPPED


async def test_an_engine_that_keeps_crashing_is_crashloopbackoff_with_its_exit_code_and_log(make_runtime):
    runtime = make_runtime(k8s_engine_command=["sh", "-c", "echo engine boom >&2; exit 3"])
    handle = await runtime.provision(new_id(), WorkspaceSpec())
    try:
        await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    except WorkspacePodFailed as exc:
        assert "CrashLoopBackOff" in exc.details
    reason = await until_failure(runtime, handle)
    assert reason.startswith("CrashLoopBackOff: the engine keeps crashing (exit code 3 after"), reason
    assert "engine boom" in await runtime.read_log(handle)


async def test_a_pod_pending_too_long_fails_with_the_scheduler_reason(make_runtime):
    runtime = make_runtime(k8s_storage_class="no-such-storage-class", k8s_pending_timeout_seconds=2)
    handle = await runtime.provision(new_id(), WorkspaceSpec())
    with pytest.raises(WorkspacePodFailed, match=r"Pending for more than 2s \(Unschedulable"):
        await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    assert "Pending for more than 2s" in await until_failure(runtime, handle)


async def test_an_evicted_workspace_says_so_and_wakes_again(make_runtime, cluster):
    if cluster.standin is None:
        pytest.skip("eviction needs node pressure, which only the stand-in can play on demand")
    runtime = make_runtime()
    handle = await runtime.provision(new_id(), WorkspaceSpec())
    await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    cluster.standin.evict(runtime.namespace, handle.name)
    assert (await until_failure(runtime, handle)).startswith("evicted: The node was low on resource: memory.")
    await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})  # the evicted pod goes, a new one comes
    assert (await health(runtime, handle)).status_code == 200


async def test_a_claim_changed_meanwhile_and_an_expired_watch_are_retried(make_runtime, cluster):
    """Two answers of a busy API server the backend must ride out: a replace of an object another client changed
    since it was read (409 Conflict: read again, change again), and a watch from a resourceVersion the server no
    longer keeps (an ERROR event with 410 Expired: list again, watch from there)."""
    if cluster.standin is None:
        pytest.skip("changing a claim or compacting the history at a given moment needs the stand-in")
    standin, runtime = cluster.standin, make_runtime()
    handle = await runtime.provision(new_id(), WorkspaceSpec())
    (Path(handle.home) / "note.txt").write_text("staged\n")
    conflicts, compactions = [], []

    def meddle(method: str, kind: str, ns: str, name: str | None) -> None:
        if ns != runtime.namespace:
            return
        if method == "PUT" and kind == "persistentvolumeclaims" and name == handle.name and not conflicts:
            # Someone labels the claim between the backend's read and its replace.
            conflicts.append(name)
            standin.modify_now(kind, ns, name, lambda claim: claim["metadata"].setdefault("labels", {}).update(
                {"team": "checkout"}))
        if method == "GET" and kind == "pods" and name is None and standin.expired_watches == expired_before:
            # Every list and watch of pods sees the history compacted past it (until one watch was expired): a
            # watch from the resourceVersion its list gave is too old.
            compactions.append(kind)
            standin.modify_now("networkpolicies", ns, handle.name, lambda policy: policy["metadata"].setdefault(
                "annotations", {}).update({"compaction": str(len(compactions))}))
            standin.compact()

    expired_before = standin.expired_watches
    standin.before_request.append(meddle)
    try:
        await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})
        assert (await health(runtime, handle)).status_code == 200
        await runtime.stop(handle)  # the engine takes a moment to stop: the backend watches the pod go
        assert await runtime.poll(handle) is RuntimeStatus.STOPPED
    finally:
        standin.before_request.remove(meddle)
    assert conflicts and standin.expired_watches == expired_before + 1
    await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": SECRET})
    claim = await get(runtime, "persistentvolumeclaims", handle.name)
    assert claim["metadata"]["labels"]["team"] == "checkout"  # the other client's change is kept
    assert claim["metadata"]["annotations"]["replicas.dev/home"] == "in-claim"
    result = await runtime.exec(handle, ["cat", "note.txt"], 30)
    assert result.output == "staged\n"

    # The stand-in answers as an API server does: a stale replace is a 409 Conflict, not a silent overwrite.
    stale = {**claim, "metadata": {**claim["metadata"], "resourceVersion": "1"}}
    with pytest.raises(ApiError) as conflict:
        await runtime.api.request("PUT", runtime._path("persistentvolumeclaims", handle.name), body=stale)
    assert conflict.value.code == 409 and "the object has been modified" in conflict.value.details
