"""The `kubernetes` backend: each workspace is a claim, a Secret, a NetworkPolicy and a pod, all in one
namespace (`settings.k8s_namespace`) of a cluster that shares no disk with the control plane.

    provision   NetworkPolicy (before anything can run), then the PersistentVolumeClaim (home/ and run/);
                the home is staged in the workspace directory here, as for a remote Docker engine (again if
                the claim never got the one staged before: see "A lost staged home" below), without its
                checkouts: the workspace clones its repositories from their origins itself, in its pod
                (`clones_in_workspace`; provisioning.clone_script, run through `exec` like the warm hooks)
    start       the Secret (start's environment: the engine secret, provider keys), then the pod; the first
                pod of a workspace waits in an init container until the staged home is in its claim
    stop        deletes the pod and its Secret; the claim stays (sleep)
    start again a new pod on the same claim (wake), with its environment in a new Secret
    destroy     deletes everything of the workspace, pods without a grace period
    exec        pods/exec in the engine's pod; while asleep, in a throwaway pod of the same image, disk,
                limits and isolation (k8s_objects.make_pod(exec_name=...)), deleted after

Objects are built by pure functions (k8s_objects.py) and sent through a thin JSON client (k8s_api.py).

Copying the staged home in: through pods/exec, a tar stream into the waiting init container (k8s_exec.py).
Not an init container that fetches it from the control plane (that would need an endpoint serving homes to
pods, and an ingress rule for it), not a ConfigMap (1 MiB); exec is what `exec` needs anyway, so the
backend talks to the cluster in one way only. The engine starts once the home is complete.

A lost staged home: the staging area is on the control plane's disk (an emptyDir in a cluster), which goes
with its pod. The claim says where its home is (`ANNOTATION_HOME`: staged until the first upload, in the claim
after), so a start or exec that finds the claim waiting for a home this control plane does not hold raises
`HomeNotProvisioned` rather than run on an empty disk, and `provision` stages the home again for the caller to
lay out anew (the workspace service does, once, at the first start).

The engine is the image's own (its CMD, or `k8s_engine_command`): the command `start` is given is this
machine's Python and means nothing in a pod, as `ro_binds` do not. It listens on the pod's IP, at
`k8s_engine_port`, and every request needs the workspace's secret, as with a remote Docker engine. The
control plane reaches it, and the workspace's preview ports, at the pod's IP (`engine_endpoint`,
`port_endpoint`); the workspace's NetworkPolicy admits only the control plane's pods. The workspace reaches the
control plane's API at `k8s_api_url` (the in-cluster Service) where it is set.

State: the handle holds the objects' name (one name for all, from the workspace id) and the pod's IP.
A restarted control plane loads it, or finds its workspaces by label (`discover`). `poll` reads the pod:
a pod that will not run raises `WorkspacePodFailed` naming the reason (ImagePullBackOff, CrashLoopBackOff,
Pending too long, Evicted); `start` raises the same as soon as it sees one.

Pids: Kubernetes has no per-pod pids limit in the pod spec; the kubelet's `podPidsLimit` sets one per
node. Run workspaces on nodes where it is set (`k8s_node_selector`); README, "Kubernetes".
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import tarfile
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replicas.errors import Conflict, NotFound
from replicas.runtime import k8s_exec
from replicas.runtime.base import (
    EngineEndpoint,
    ExecResult,
    HomeNotProvisioned,
    OutputCallback,
    PortEndpoint,
    Runtime,
    RuntimeFailure,
    RuntimeStatus,
    SandboxUnavailable,
    WorkspaceHandle,
    WorkspaceSpec,
    WorkspaceWillNotRun,
    validate_workspace_id,
)
from replicas.runtime.k8s_api import ApiError, KubernetesApi
from replicas.runtime.k8s_objects import (
    ANNOTATION_HOME,
    ANNOTATION_WORKSPACE_ID,
    DEFAULT_EGRESS_EXCEPT,
    ENGINE_CONTAINER,
    HOME_IN_CLAIM,
    HOME_STAGED,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_WORKSPACE,
    MANAGED_BY,
    ROLE_ENGINE,
    UPLOAD_CONTAINER,
    WorkspaceObjects,
    make_network_policy,
    make_pod,
    make_pvc,
    make_secret,
    now_utc,
    pod_condition,
    workspace_name,
)
from replicas.runtime.local import EXEC_OUTPUT_LIMIT, HostDirHandle, _remove_tree, make_workspace_dirs
from replicas.settings import Settings

log = logging.getLogger("replicas.runtime")

# Present in the staging directory while it holds a home not yet copied into the claim.
STAGED_MARKER = ".staged"
# What the image decides, not the control plane: its PATH and its agent tools.
_IMAGE_OWNED = ("PATH", "REPLICAS_TOOLS_DIR")
# Where the workspace reaches the control plane's API (agent mode); `k8s_api_url` when set.
ENV_API_URL = "REPLICAS_API_URL"


class WorkspacePodFailed(WorkspaceWillNotRun):
    """The workspace's pod will not run, and why (what the service records as `provisioning_error`)."""

    default_message = "Workspace pod failed"


@dataclass
class KubernetesHandle(HostDirHandle):
    """A workspace on Kubernetes: `name` names its claim, Secret, NetworkPolicy and engine pod;
    `workspace_dir` is the staging area here and the claim's mount path in the pod; `pod_ip` is where
    the last started engine pod listens."""

    namespace: str = ""
    name: str = ""
    pod_ip: str | None = None
    pod_uid: str | None = None


class KubernetesRuntime(Runtime):
    """Workspaces as pods on the cluster the kubeconfig (or the control plane's own pod) points at."""

    name = "kubernetes"
    clones_in_workspace = True  # the pod clones from the origin (provisioning.clone_script), never the control plane

    def __init__(self, settings: Settings, *, api: KubernetesApi | None = None, stop_grace_seconds: int = 10):
        self.settings = settings
        self.data_dir = Path(os.path.realpath(settings.data_dir))
        self.workspaces_root = self.data_dir / "workspaces"
        self.namespace = settings.k8s_namespace
        self.api = api or KubernetesApi(settings.k8s_kubeconfig, settings.k8s_context)
        self.stop_grace_seconds = stop_grace_seconds
        self.pending_timeout = settings.k8s_pending_timeout_seconds

    # -- objects and handles -------------------------------------------------------------------

    def objects(self, h: KubernetesHandle, secret_keys: Sequence[str] = ()) -> WorkspaceObjects:
        s = self.settings
        env = {key: value for key, value in h.spec.env.items() if key not in _IMAGE_OWNED}
        return WorkspaceObjects(
            workspace_id=h.workspace_id, namespace=self.namespace, image=s.k8s_image, size=h.spec.size,
            mount_path=h.workspace_dir, storage=s.k8s_storage_sizes.get(h.spec.size, "20Gi"),
            storage_class=s.k8s_storage_class, engine_port=s.k8s_engine_port,
            image_pull_policy=s.k8s_image_pull_policy, engine_command=tuple(s.k8s_engine_command or ()),
            env=env, secret_keys=tuple(secret_keys), node_selector=dict(s.k8s_node_selector))

    def _path(self, kind: str, name: str | None = None) -> str:
        group = "/apis/networking.k8s.io/v1" if kind == "networkpolicies" else "/api/v1"
        return f"{group}/namespaces/{self.namespace}/{kind}" + (f"/{name}" if name else "")

    def _handle(self, workspace_id: str, spec: WorkspaceSpec) -> KubernetesHandle:
        return KubernetesHandle(workspace_id=workspace_id, spec=spec, namespace=self.namespace,
                                name=workspace_name(workspace_id),
                                workspace_dir=str(self.workspaces_root / workspace_id))

    def _kube(self, handle: WorkspaceHandle) -> KubernetesHandle:
        if not isinstance(handle, KubernetesHandle):
            raise TypeError(f"not a kubernetes workspace handle: {handle!r}")
        # The handle comes from the store: never act on objects or directories that are not this workspace's.
        if (handle.name != workspace_name(handle.workspace_id) or handle.namespace != self.namespace
                or Path(handle.workspace_dir) != self.workspaces_root / handle.workspace_id):
            raise RuntimeFailure("Invalid workspace handle", f"{handle.workspace_id} is not in {self.namespace}")
        return handle

    def get_state(self, handle: WorkspaceHandle) -> dict[str, Any]:
        h = self._kube(handle)
        return {"backend": self.name, "version": 1, "workspace_id": h.workspace_id, "spec": h.spec.to_state(),
                "workspace_dir": h.workspace_dir, "namespace": h.namespace, "name": h.name, "pod_ip": h.pod_ip,
                "pod_uid": h.pod_uid, "image": self.settings.k8s_image}

    def load_state(self, state: Mapping[str, Any]) -> KubernetesHandle:
        if state.get("backend") != self.name:
            raise RuntimeFailure("Invalid workspace handle", f"backend {state.get('backend')!r} is not kubernetes")
        handle = KubernetesHandle(
            workspace_id=validate_workspace_id(state["workspace_id"]),
            spec=WorkspaceSpec.from_state(state.get("spec") or {}), workspace_dir=state.get("workspace_dir", ""),
            namespace=state.get("namespace", ""), name=state.get("name", ""), pod_ip=state.get("pod_ip"),
            pod_uid=state.get("pod_uid"))
        return self._kube(handle)

    # -- reading the cluster -------------------------------------------------------------------

    async def _get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.api.request("GET", self._path(kind, name))
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def _check_owner(self, h: KubernetesHandle, obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
        if obj is not None and annotations.get(ANNOTATION_WORKSPACE_ID) != h.workspace_id:
            raise RuntimeFailure("Invalid workspace handle", f"{h.name} in {self.namespace} is not this workspace's")
        return obj

    async def _claim(self, h: KubernetesHandle) -> Mapping[str, Any] | None:
        claim = self._check_owner(h, await self._get("persistentvolumeclaims", h.name))
        return None if claim is None or claim["metadata"].get("deletionTimestamp") else claim

    async def _pod(self, h: KubernetesHandle, name: str | None = None) -> Mapping[str, Any] | None:
        return self._check_owner(h, await self._get("pods", name or h.name))

    async def poll(self, handle: WorkspaceHandle) -> RuntimeStatus:
        """MISSING without a claim (or one being deleted); STOPPED without a live pod; RUNNING while the pod
        runs or starts. A pod that will not run raises `WorkspacePodFailed` with the reason."""
        h = self._kube(handle)
        if await self._claim(h) is None:
            return RuntimeStatus.MISSING
        condition = pod_condition(await self._pod(h), now_utc(), self.pending_timeout)
        if condition.failure:
            raise WorkspacePodFailed(f"Workspace pod {h.name} will not run", condition.failure)
        return condition.status

    async def discover(self) -> dict[str, RuntimeStatus]:
        """Every workspace of this namespace by id, found by label (after a control-plane restart, or to
        find what the store lost): STOPPED with a claim and no engine pod, RUNNING with one."""
        managed = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
        claims = await self.api.request("GET", self._path("persistentvolumeclaims"), query={"labelSelector": managed})
        pods = await self.api.request("GET", self._path("pods"),
                                      query={"labelSelector": f"{managed},{LABEL_ROLE}={ROLE_ENGINE}"})
        running = {pod["metadata"]["labels"].get(LABEL_WORKSPACE) for pod in pods.get("items") or []
                   if not pod["metadata"].get("deletionTimestamp")}
        found: dict[str, RuntimeStatus] = {}
        for claim in claims.get("items") or []:
            metadata = claim["metadata"]
            workspace_id = (metadata.get("annotations") or {}).get(ANNOTATION_WORKSPACE_ID)
            if workspace_id and not metadata.get("deletionTimestamp"):
                found[workspace_id] = (RuntimeStatus.RUNNING if metadata["labels"].get(LABEL_WORKSPACE) in running
                                       else RuntimeStatus.STOPPED)
        return found

    def handle_for(self, workspace_id: str, spec: WorkspaceSpec | None = None) -> KubernetesHandle:
        """The handle of a workspace found by `discover` (names derive from the id; the pod's IP is read
        again at the next `start`)."""
        return self._handle(validate_workspace_id(workspace_id), spec or WorkspaceSpec())

    async def _wait_pod(self, name: str, ready: Callable[[Mapping[str, Any] | None], bool], timeout: float,
                        what: str) -> Mapping[str, Any] | None:
        """Watch pod `name` until `ready(pod)` (None: deleted) holds; its last state. Raises on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            listing = await self.api.request("GET", self._path("pods"),
                                             query={"fieldSelector": f"metadata.name={name}"})
            items = listing.get("items") or []
            pod = items[0] if items else None
            if ready(pod):
                return pod
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeFailure("Kubernetes took too long", f"{what}: pod {name} after {timeout:.0f}s")
            try:
                async for kind, obj in self.api.watch(self._path("pods"), {"fieldSelector": f"metadata.name={name}"},
                                                      listing["metadata"]["resourceVersion"], max(1, int(left))):
                    if kind == "ERROR":
                        break  # resourceVersion too old (410): list again
                    pod = None if kind == "DELETED" else obj
                    if ready(pod):
                        return pod
            except ApiError as exc:
                if exc.code != 410:
                    raise

    # -- lifecycle -----------------------------------------------------------------------------

    async def provision(self, workspace_id: str, spec: WorkspaceSpec) -> KubernetesHandle:
        validate_workspace_id(workspace_id)
        h = self._handle(workspace_id, spec)
        claim = await self._claim(h)
        if claim is not None:  # provisioned before: the home is the claim's, or staged here, or lost
            if _home_of(claim) == HOME_STAGED and not self._staged(h):
                await asyncio.to_thread(self._stage, h)  # staged by a control plane that is gone: stage again
                log.warning("workspace home staged again workspace_id=%s claim=%s (the staged one was lost)",
                            workspace_id, h.name)
            return h
        await asyncio.to_thread(self._stage, h)
        s = self.settings
        policy = make_network_policy(self.objects(h), control_plane_namespace=s.k8s_control_plane_namespace,
                                     control_plane_labels=s.k8s_control_plane_labels, control_plane_port=s.port,
                                     egress_except=s.k8s_egress_except or DEFAULT_EGRESS_EXCEPT)
        await self._create("networkpolicies", policy)
        await self._create("persistentvolumeclaims", make_pvc(self.objects(h)))
        log.info("workspace provisioned workspace_id=%s claim=%s namespace=%s", workspace_id, h.name, self.namespace)
        return h

    def _stage(self, h: KubernetesHandle) -> None:
        make_workspace_dirs(h)
        Path(h.workspace_dir, STAGED_MARKER).touch()

    async def _create(self, kind: str, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create; None when it exists already (409 AlreadyExists: a retried provision)."""
        try:
            return await self.api.request("POST", self._path(kind), body=manifest)
        except ApiError as exc:
            if exc.code == 409:
                return None
            raise

    async def _delete(self, kind: str, name: str, grace: int | None = None) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        try:
            await self.api.request("DELETE", self._path(kind, name), body=body)
        except ApiError as exc:
            if exc.code != 404:
                raise

    async def base_snapshot_refusal(self) -> str | None:
        return "a Kubernetes cluster shares no disk with the control plane"

    async def start(self, handle: WorkspaceHandle, command: Sequence[str], env: Mapping[str, str]) -> None:
        h = self._kube(handle)
        claim = await self._claim(h)
        if claim is None:
            raise NotFound("Workspace not found", h.workspace_id)
        pod = await self._pod(h)
        condition = pod_condition(pod, now_utc(), self.pending_timeout)
        if pod is not None and condition.status is RuntimeStatus.RUNNING and not condition.failure:
            raise Conflict("Workspace is already running", h.workspace_id)
        staged = self._home_to_upload(h, claim)
        if pod is not None:  # a failed, evicted or terminating one: it goes before the new one comes
            await self._delete("pods", h.name, grace=0)
            await self._wait_pod(h.name, lambda p: p is None, 120, "deleting the failed pod")
        secret_env = {key: value for key, value in env.items() if key not in _IMAGE_OWNED}
        if self.settings.k8s_api_url:  # the control plane as pods reach it, not as this process listens
            secret_env[ENV_API_URL] = self.settings.k8s_api_url
        objects = self.objects(h, secret_keys=list(secret_env))
        await self._delete("secrets", h.name)
        await self.api.request("POST", self._path("secrets"), body=make_secret(objects, secret_env))
        started = time.monotonic()
        created = await self.api.request("POST", self._path("pods"), body=make_pod(objects, upload=staged))
        h.pod_uid, h.pod_ip = created["metadata"].get("uid"), None
        if staged:
            await self._upload(h, h.name)
        pod = await self._wait_running(h, h.name, ENGINE_CONTAINER)
        h.pod_ip = (pod.get("status") or {}).get("podIP")
        log.info("workspace started workspace_id=%s pod=%s ip=%s in %.2fs", h.workspace_id, h.name, h.pod_ip,
                 time.monotonic() - started)

    def _staged(self, h: KubernetesHandle) -> bool:
        return os.path.exists(os.path.join(h.workspace_dir, STAGED_MARKER))

    def _home_to_upload(self, h: KubernetesHandle, claim: Mapping[str, Any]) -> bool:
        """Whether the next pod must take the staged home in first; `HomeNotProvisioned` when the claim still
        waits for a home that is not staged here (the control plane that staged it is gone)."""
        if self._staged(h):
            return True
        if _home_of(claim) == HOME_STAGED:
            raise HomeNotProvisioned("Workspace home was never provisioned",
                                     f"{h.workspace_id}: claim {h.name} is empty and its staged home is gone "
                                     "(the control plane that staged it was lost); provision it again")
        return False

    async def _mark_home_in_claim(self, h: KubernetesHandle) -> None:
        """Say on the claim that its home is in it (a PUT of the claim as read: 409 when it changed meanwhile)."""
        for _ in range(5):
            claim = await self._get("persistentvolumeclaims", h.name)
            if claim is None or _home_of(claim) == HOME_IN_CLAIM:
                return
            claim["metadata"].setdefault("annotations", {})[ANNOTATION_HOME] = HOME_IN_CLAIM
            try:
                await self.api.request("PUT", self._path("persistentvolumeclaims", h.name), body=claim)
                return
            except ApiError as exc:
                if exc.code != 409:
                    raise
        raise RuntimeFailure("Kubernetes API conflict", f"claim {h.name} kept changing while it was annotated")

    async def _wait_running(self, h: KubernetesHandle, name: str, container: str) -> Mapping[str, Any]:
        """Until `container` of pod `name` runs and the pod has an IP; `WorkspacePodFailed` as soon as the pod
        shows it will not (the pending timeout included)."""
        failure: list[str] = []

        def ready(pod: Mapping[str, Any] | None) -> bool:
            if pod is None:
                failure.append("the pod was deleted while starting")
                return True
            condition = pod_condition(pod, now_utc(), self.pending_timeout)
            if condition.failure or condition.status is RuntimeStatus.STOPPED:
                failure.append(condition.failure or "the pod is being deleted")
                return True
            status = pod.get("status") or {}
            statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
            return bool(status.get("podIP")) and any(
                c.get("name") == container and (c.get("state") or {}).get("running") for c in statuses)

        pod = await self._wait_pod(name, ready, self.pending_timeout + 30, f"starting {container}")
        if failure:
            raise WorkspacePodFailed(f"Workspace pod {name} will not run", f"{failure[0]}; log: "
                                     f"{await self._read_pod_log(name, container, 1000)}")
        return pod

    async def _upload(self, h: KubernetesHandle, pod_name: str) -> None:
        """Copy the staged home into the claim through the pod's waiting init container, then drop it here."""
        await self._wait_running(h, pod_name, UPLOAD_CONTAINER)
        started = time.monotonic()
        spool = await asyncio.to_thread(self._archive, h)
        try:
            size = spool.seek(0, io.SEEK_END)
            spool.seek(0)
            socket = await self.api.exec_socket(self.namespace, pod_name, UPLOAD_CONTAINER,
                                                k8s_exec.upload_command(size, h.workspace_dir))
            outcome = await k8s_exec.run(socket, _read_chunks(spool), None, 64 * 1024)
        finally:
            spool.close()
        if outcome.exit_code != 0:
            raise RuntimeFailure("Workspace upload failed", f"{h.workspace_id}: tar exited {outcome.exit_code}: "
                                 f"{outcome.output[-1000:].decode(errors='replace')}")
        await self._mark_home_in_claim(h)  # before the staging goes: a crash between the two uploads it again
        await asyncio.to_thread(_empty, Path(h.workspace_dir))
        log.info("workspace uploaded workspace_id=%s bytes=%d in %.2fs", h.workspace_id, size,
                 time.monotonic() - started)

    def _archive(self, h: KubernetesHandle):
        """The staged home/ and run/ as a tar in a temporary file (owners left to the unpacking agent)."""
        spool = tempfile.TemporaryFile()
        with tarfile.open(fileobj=spool, mode="w") as tar:
            for top in ("home", "run"):
                path = Path(h.workspace_dir, top)
                if path.exists():
                    tar.add(path, arcname=top, filter=_unowned)
        return spool

    async def stop(self, handle: WorkspaceHandle) -> None:
        h = self._kube(handle)
        await self._delete("pods", h.name, grace=self.stop_grace_seconds)
        await self._wait_pod(h.name, lambda pod: pod is None, self.stop_grace_seconds + 60, "stopping")
        await self._delete("secrets", h.name)
        h.pod_ip = None
        log.info("workspace stopped workspace_id=%s pod=%s", h.workspace_id, h.name)

    async def destroy(self, handle: WorkspaceHandle) -> None:
        h = self._kube(handle)
        pods = await self.api.request("GET", self._path("pods"),
                                      query={"labelSelector": f"{LABEL_MANAGED_BY}={MANAGED_BY},"
                                                              f"{LABEL_WORKSPACE}={h.name}"})
        for pod in pods.get("items") or []:  # the engine's, and exec pods a killed control plane left
            await self._delete("pods", pod["metadata"]["name"], grace=0)
        for kind in ("secrets", "persistentvolumeclaims", "networkpolicies"):
            await self._delete(kind, h.name)
        h.pod_ip = None
        await asyncio.to_thread(_remove_tree, Path(h.workspace_dir))
        log.info("workspace destroyed workspace_id=%s", h.workspace_id)

    # -- reaching it ---------------------------------------------------------------------------

    def engine_endpoint(self, handle: WorkspaceHandle) -> EngineEndpoint:
        h = self._kube(handle)
        return EngineEndpoint(base_url=f"http://{_url_host(h.pod_ip)}:{self.settings.k8s_engine_port}")

    def port_endpoint(self, handle: WorkspaceHandle, port: int) -> PortEndpoint:
        h = self._kube(handle)
        return PortEndpoint(host=_url_host(h.pod_ip), port=port)

    async def read_log(self, handle: WorkspaceHandle, limit: int = 2000) -> str:
        h = self._kube(handle)
        return await self._read_pod_log(h.name, ENGINE_CONTAINER, limit)

    async def _read_pod_log(self, name: str, container: str, limit: int) -> str:
        """The end of a container's log (pods/log); a crashed one's previous run when the current has none."""
        api, _ = await self.api.clients()
        for previous in ("false", "true"):
            try:
                text = await api.call_api(f"/api/v1/namespaces/{self.namespace}/pods/{name}/log", "GET",
                                          query_params=[("container", container), ("previous", previous),
                                                        ("limitBytes", str(64 * 1024))],
                                          auth_settings=["BearerToken"], response_types_map={200: "str"},
                                          _return_http_data_only=True)
            except Exception:  # noqa: BLE001 - only for an error message: say what we could not read
                continue
            if text:
                return text[-limit:]
        return "(none)"

    async def exec(
        self,
        handle: WorkspaceHandle,
        argv: Sequence[str],
        timeout: float,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        """pods/exec in the engine's pod; while asleep, in a throwaway pod (same image, claim, limits and
        isolation; it takes the staged home in first, as the engine's would). `timeout` (coreutils) kills the
        command's tree when time is up; cancelling closes the stream and deletes a throwaway pod."""
        h = self._kube(handle)
        claim = await self._claim(h)
        if claim is None:
            raise NotFound("Workspace not found", h.workspace_id)
        if not argv:
            raise ValueError("empty command")
        seconds = max(1, int(timeout + 0.999))
        pod = await self._pod(h)
        condition = pod_condition(pod, now_utc(), self.pending_timeout)
        started = time.monotonic()
        if pod is not None and condition.status is RuntimeStatus.RUNNING and not condition.failure:
            outcome = await self._exec_in(h, h.name, argv, seconds, env or {}, cwd or h.home, on_output)
        else:
            outcome = await self._exec_aside(h, self._home_to_upload(h, claim), argv, seconds, env or {},
                                             cwd or h.home, on_output)
        timed_out = outcome.exit_code in (124, 137) and time.monotonic() - started >= timeout
        return ExecResult(exit_code=outcome.exit_code,
                          output=outcome.output[-EXEC_OUTPUT_LIMIT:].decode(errors="replace"), timed_out=timed_out)

    async def _exec_in(self, h: KubernetesHandle, pod_name: str, argv: Sequence[str], seconds: int,
                       env: Mapping[str, str], cwd: str, on_output: OutputCallback | None) -> k8s_exec.ExecOutcome:
        env = {key: value for key, value in env.items() if key not in _IMAGE_OWNED}
        socket = await self.api.exec_socket(self.namespace, pod_name, ENGINE_CONTAINER,
                                            k8s_exec.exec_command(argv, cwd, seconds))
        return await asyncio.wait_for(
            k8s_exec.run(socket, _once(k8s_exec.environment_line(env)), on_output, EXEC_OUTPUT_LIMIT), seconds + 30)

    async def _exec_aside(self, h: KubernetesHandle, staged: bool, argv: Sequence[str], seconds: int,
                          env: Mapping[str, str], cwd: str, on_output: OutputCallback | None) -> k8s_exec.ExecOutcome:
        name = f"{h.name}-exec-{uuid.uuid4().hex[:8]}"
        lifetime = int(self.pending_timeout) + seconds + 60  # it ends by itself should we never delete it
        await self.api.request("POST", self._path("pods"),
                               body=make_pod(self.objects(h), upload=staged, exec_name=name, exec_seconds=lifetime))
        try:
            if staged:
                await self._upload(h, name)
            await self._wait_running(h, name, ENGINE_CONTAINER)
            return await self._exec_in(h, name, argv, seconds, env, cwd, on_output)
        finally:
            await asyncio.shield(self._delete("pods", name, grace=0))

    async def check_isolation(self) -> None:
        """Workspaces run in pods of the cluster, never on this host: refuse only when the cluster cannot be
        reached, or will not let us manage pods in the workspace namespace."""
        try:
            await self.api.request("GET", self._path("pods"), query={"limit": "1"})
        except RuntimeFailure as exc:
            raise SandboxUnavailable("Sandbox unavailable", f"{exc.error}: {exc.details}") from None


def _empty(staging: Path) -> None:
    """Drop what was staged (the marker first: a crash half-way never uploads a half again). The directory
    itself stays until destroy: to this host it is only a name, which a local stand-in for a cluster may
    have mounted a claim on."""
    Path(staging, STAGED_MARKER).unlink(missing_ok=True)
    for entry in staging.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            _remove_tree(entry)
        else:
            entry.unlink()


def _home_of(claim: Mapping[str, Any]) -> str:
    """Where the claim's home is (`ANNOTATION_HOME`); a claim from before the annotation has its home."""
    return ((claim.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_HOME, HOME_IN_CLAIM)


def _unowned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid, info.gid, info.uname, info.gname = 0, 0, "", ""
    return info


def _url_host(ip: str | None) -> str:
    """The pod's IP for a URL; before any start, a name that never resolves (RFC 2606), so nothing answers."""
    if not ip:
        return "pod-not-started.invalid"
    return f"[{ip}]" if ":" in ip else ip


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read_chunks(spool) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(spool.read, k8s_exec.CHUNK):
        yield chunk
