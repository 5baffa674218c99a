"""The Kubernetes objects of a workspace, built by pure functions (as kubespawner's `objects.py`).

    make_pvc              its disk: home/ (checkouts in home/workspaces) and run/, sized by workspace size
    make_secret           what `start` is given and must never be persisted or put in a pod spec
    make_pod              the engine's pod (or a throwaway one that runs `exec` while the workspace sleeps)
    make_network_policy   ingress only from the control plane; egress to the internet, DNS and the control
                          plane's API, never to private, link-local or listed addresses
    pod_condition         a pod's status read as a `RuntimeStatus`, or the reason it failed

Nothing here talks to a cluster: the backend (runtime/kubernetes.py) sends what these return, and
tests/kubernetes/test_objects.py checks them against the Kubernetes schema with no cluster at all.

Names: a workspace id may hold upper case and `_` and be 128 characters long, which no Kubernetes name
or label value may; every object of a workspace is named `ws-<id, made a DNS label>-<hash>` (at most 40
characters, so that derived names stay DNS labels too), labelled with that name and annotated with the
id itself. Labels are what a restarted control plane finds its workspaces by.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from replicas.runtime.base import ENV_RUN_DIR, ENV_WORKSPACE_ID, RuntimeStatus
from replicas.runtime.cgroups import SIZE_LIMITS

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_WORKSPACE = "replicas.dev/workspace"
LABEL_ROLE = "replicas.dev/role"
ANNOTATION_WORKSPACE_ID = "replicas.dev/workspace-id"
# Where the claim's home is: still staged on the control plane that provisioned it (HOME_STAGED, from the claim's
# creation) or copied into the claim (HOME_IN_CLAIM, from the first upload on). A claim without it predates it.
ANNOTATION_HOME = "replicas.dev/home"
HOME_STAGED = "staged"
HOME_IN_CLAIM = "in-claim"
MANAGED_BY = "replicas"
ROLE_ENGINE = "engine"
ROLE_EXEC = "exec"
ENGINE_CONTAINER = "engine"
UPLOAD_CONTAINER = "upload"
# Written by the upload (pods/exec into the init container) when the staged home is in the claim.
UPLOAD_DONE = ".replicas-upload-done"
VOLUME = "workspace"
AGENT_UID = 1000
# Addresses a workspace never reaches, whatever the cluster: private ranges (the control plane's database,
# other pods and services, nodes, an API server on a private address), carrier-grade NAT, link-local
# (cloud metadata at 169.254.169.254) and their IPv6 counterparts.
DEFAULT_EGRESS_EXCEPT = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
                         "127.0.0.0/8")
DEFAULT_EGRESS_EXCEPT_V6 = ("fc00::/7", "fe80::/10", "::1/128")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def workspace_name(workspace_id: str) -> str:
    """The DNS-label name of every object of `workspace_id` (claim, secret, policy, pod): stable, unique."""
    digest = hashlib.sha256(workspace_id.encode()).hexdigest()[:8]
    readable = _NOT_DNS.sub("-", workspace_id.lower()).strip("-")[:28].strip("-")
    return f"ws-{readable}-{digest}" if readable else f"ws-{digest}"


@dataclass(frozen=True)
class WorkspaceObjects:
    """What the builders need to know of one workspace and of the deployment it belongs to.

    `mount_path` is where the claim is mounted in the pod: the control plane's own path for the workspace
    directory (home/ and run/ below it), so that paths it computes while provisioning (hook files, the
    system prompt) mean the same thing inside. `env` is the spec's plain environment; `secret_keys` the
    names `start` was given, read from the workspace's Secret."""

    workspace_id: str
    namespace: str
    image: str
    size: str
    mount_path: str
    storage: str
    engine_port: int
    storage_class: str | None = None
    image_pull_policy: str = "IfNotPresent"
    engine_command: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    secret_keys: Sequence[str] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return workspace_name(self.workspace_id)

    @property
    def home(self) -> str:
        return f"{self.mount_path.rstrip('/')}/home"

    @property
    def run_dir(self) -> str:
        return f"{self.mount_path.rstrip('/')}/run"


def labels(workspace: WorkspaceObjects, role: str | None = None) -> dict[str, str]:
    values = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_COMPONENT: "workspace", LABEL_WORKSPACE: workspace.name}
    if role:
        values[LABEL_ROLE] = role
    return values


def _metadata(workspace: WorkspaceObjects, name: str, role: str | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": workspace.namespace, "labels": labels(workspace, role),
            "annotations": {ANNOTATION_WORKSPACE_ID: workspace.workspace_id}}


def make_pvc(workspace: WorkspaceObjects) -> dict[str, Any]:
    """The workspace's disk. ReadWriteOnce: one node at a time, which is all a workspace's pods need (the
    engine's pod, or while it sleeps one throwaway pod for a command, never both). Created empty while its home
    is staged on the control plane: annotated so (`ANNOTATION_HOME`) until the home is copied in."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": workspace.storage}}}
    if workspace.storage_class:
        spec["storageClassName"] = workspace.storage_class
    metadata = _metadata(workspace, workspace.name)
    metadata["annotations"][ANNOTATION_HOME] = HOME_STAGED
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}


def make_secret(workspace: WorkspaceObjects, env: Mapping[str, str]) -> dict[str, Any]:
    """The environment `start` is given (the engine secret, provider keys): read by the pod through
    `secretKeyRef`, so the pod spec never holds a value."""
    data = {key: base64.b64encode(value.encode()).decode() for key, value in sorted(env.items())}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _metadata(workspace, workspace.name), "data": data}


def resources(size: str) -> dict[str, dict[str, str]]:
    """Limits as the other backends' (cgroups.SIZE_LIMITS); requests a quarter of them, so that a node
    packs idle agents densely while a busy one may burst to its limit."""
    limits = SIZE_LIMITS[size]
    return {"limits": {"cpu": str(limits.cpus), "memory": str(limits.memory_bytes)},
            "requests": {"cpu": f"{limits.cpus * 250}m", "memory": str(limits.memory_bytes // 4)}}


def container_security() -> dict[str, Any]:
    """Every container of a workspace pod: no privilege, no capability, no way to gain one."""
    return {"runAsNonRoot": True, "runAsUser": AGENT_UID, "runAsGroup": AGENT_UID,
            "allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def _engine_env(workspace: WorkspaceObjects) -> list[dict[str, Any]]:
    """Plain settings as values, `start`'s environment as references to the Secret, then what the engine
    needs to know where it is. POD_IP comes first: REPLICAS_ENGINE_TCP expands it (`$(POD_IP)`)."""
    secret = set(workspace.secret_keys)
    env: list[dict[str, Any]] = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    env += [{"name": key, "value": value} for key, value in sorted(workspace.env.items()) if key not in secret]
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": workspace.name, "key": key}}}
            for key in sorted(secret)]
    env += [{"name": "HOME", "value": workspace.home}, {"name": "USER", "value": "replicas"},
            {"name": "LOGNAME", "value": "replicas"}, {"name": ENV_WORKSPACE_ID, "value": workspace.workspace_id},
            {"name": ENV_RUN_DIR, "value": workspace.run_dir},
            {"name": "REPLICAS_ENGINE_TCP", "value": f"$(POD_IP):{workspace.engine_port}"}]
    return env


def _upload_container(workspace: WorkspaceObjects) -> dict[str, Any]:
    """Waits, as an init container, until the control plane has copied the staged home into the claim
    (pods/exec, a tar stream) and said so with UPLOAD_DONE: the engine then starts on a full disk."""
    script = f'until [ -e "$0/{UPLOAD_DONE}" ]; do sleep 0.2; done; rm -f "$0/{UPLOAD_DONE}"'
    return {"name": UPLOAD_CONTAINER, "image": workspace.image, "imagePullPolicy": workspace.image_pull_policy,
            "command": ["sh", "-c", script, workspace.mount_path],
            "volumeMounts": [{"name": VOLUME, "mountPath": workspace.mount_path}],
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                          "requests": {"cpu": "50m", "memory": "64Mi"}},
            "securityContext": container_security()}


def make_pod(workspace: WorkspaceObjects, *, upload: bool = False, exec_name: str | None = None,
             exec_seconds: int = 0) -> dict[str, Any]:
    """The workspace's engine pod; or, with `exec_name`, a throwaway pod of the same image, disk, limits
    and isolation that only sleeps `exec_seconds`, for commands run while the workspace sleeps (pods/exec).
    `upload` adds the init container that waits for the staged home (the first pod of a workspace).

    The engine is the image's own (its CMD) unless `engine_command` says otherwise; it listens on the pod's
    IP and needs the workspace's secret on every request. Unprivileged throughout: it passes the
    `restricted` Pod Security Standard (the workspace namespace enforces it, deploy/kubernetes/)."""
    container: dict[str, Any] = {
        "name": ENGINE_CONTAINER, "image": workspace.image, "imagePullPolicy": workspace.image_pull_policy,
        "env": _engine_env(workspace), "workingDir": workspace.home,
        "volumeMounts": [{"name": VOLUME, "mountPath": workspace.mount_path}],
        "resources": resources(workspace.size), "securityContext": container_security(),
    }
    if exec_name:
        container["command"] = ["sleep", str(exec_seconds)]
    else:
        if workspace.engine_command:
            container["command"] = list(workspace.engine_command)
        container["ports"] = [{"name": "engine", "containerPort": workspace.engine_port, "protocol": "TCP"}]
        container["readinessProbe"] = {"tcpSocket": {"port": "engine"}, "periodSeconds": 2, "failureThreshold": 3}
    spec: dict[str, Any] = {
        "restartPolicy": "Never" if exec_name else "Always",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no service addresses (the database's) in the environment
        "hostNetwork": False, "hostPID": False, "hostIPC": False,
        "terminationGracePeriodSeconds": 10,
        "securityContext": {"runAsNonRoot": True, "runAsUser": AGENT_UID, "runAsGroup": AGENT_UID,
                            "fsGroup": AGENT_UID, "fsGroupChangePolicy": "OnRootMismatch",
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": VOLUME, "persistentVolumeClaim": {"claimName": workspace.name}}],
    }
    if upload:
        spec["initContainers"] = [_upload_container(workspace)]
    if workspace.node_selector:
        spec["nodeSelector"] = dict(workspace.node_selector)
    if not exec_name:
        spec["hostname"] = workspace.name
    metadata = _metadata(workspace, exec_name or workspace.name, ROLE_EXEC if exec_name else ROLE_ENGINE)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def make_network_policy(workspace: WorkspaceObjects, *, control_plane_namespace: str,
                        control_plane_labels: Mapping[str, str], control_plane_port: int,
                        egress_except: Sequence[str] = DEFAULT_EGRESS_EXCEPT,
                        egress_except_v6: Sequence[str] = DEFAULT_EGRESS_EXCEPT_V6) -> dict[str, Any]:
    """What the workspace's pods may reach and be reached by. Network policies add up: the namespace's
    default-deny (deploy/kubernetes/) stays, this one opens only:

    - ingress from the control plane's pods (engine, previews, terminals), on any port;
    - egress to DNS (kube-dns), to the control plane's API port (agent mode), and to any address outside
      `egress_except`: the internet, but not the control plane's database, other workspaces or nodes, the
      cluster's metadata or API addresses (private or link-local; add a public API endpoint there)."""
    control_plane = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": control_plane_namespace}},
                     "podSelector": {"matchLabels": dict(control_plane_labels)}}
    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
           "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    egress = [
        {"to": [dns], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
        {"to": [control_plane], "ports": [{"protocol": "TCP", "port": control_plane_port}]},
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(egress_except)}},
                {"ipBlock": {"cidr": "::/0", "except": list(egress_except_v6)}}]},
    ]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _metadata(workspace, workspace.name),
            "spec": {"podSelector": {"matchLabels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_WORKSPACE: workspace.name}},
                     "policyTypes": ["Ingress", "Egress"], "ingress": [{"from": [control_plane]}],
                     "egress": egress}}


@dataclass(frozen=True)
class PodCondition:
    """A pod read as the runtime's status; `failure` says why it will not run (None: it is fine)."""

    status: RuntimeStatus
    failure: str | None = None
    ip: str | None = None


# Waiting reasons that do not pass by themselves.
_STUCK = {"ImagePullBackOff": "the image cannot be pulled", "ErrImagePull": "the image cannot be pulled",
          "InvalidImageName": "the image name is invalid",
          "CreateContainerConfigError": "the container's configuration is invalid",
          "CreateContainerError": "the container cannot be created",
          "CrashLoopBackOff": "the engine keeps crashing"}


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def pod_condition(pod: Mapping[str, Any] | None, now: datetime, pending_timeout: float) -> PodCondition:
    """Read a pod (as the API returns it; None: there is none) as a `RuntimeStatus`.

    No pod, or one being deleted: STOPPED. Running, or Pending for less than `pending_timeout`: RUNNING.
    A failure names its reason: evicted (the node ran short), ImagePullBackOff, CrashLoopBackOff (with the
    last exit code), Pending too long (unschedulable: no node fits, the claim is not bound), Failed."""
    if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return PodCondition(RuntimeStatus.STOPPED)
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    ip = status.get("podIP")
    if phase in ("Failed", "Succeeded"):
        if status.get("reason") == "Evicted":
            return PodCondition(RuntimeStatus.STOPPED, f"evicted: {status.get('message') or 'the node ran short'}")
        if phase == "Succeeded":
            return PodCondition(RuntimeStatus.STOPPED, "the engine exited")
        return PodCondition(RuntimeStatus.STOPPED, f"the pod failed: {status.get('message') or status.get('reason')}")
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in _STUCK:
            detail = waiting.get("message") or ""
            last = ((container.get("lastState") or {}).get("terminated") or {})
            if reason == "CrashLoopBackOff" and last:
                detail = f"exit code {last.get('exitCode')} after {container.get('restartCount', 0)} restarts"
            return PodCondition(RuntimeStatus.RUNNING, f"{reason}: {_STUCK[reason]}" + (f" ({detail})" if detail
                                                                                      else ""), ip)
    if phase == "Pending":
        created = _when((pod.get("metadata") or {}).get("creationTimestamp"))
        if created is not None and (now - created).total_seconds() > pending_timeout:
            why = next((f"{c.get('reason')}: {c.get('message')}" for c in status.get("conditions") or []
                        if c.get("status") == "False" and c.get("message")), "no reason given")
            return PodCondition(RuntimeStatus.RUNNING, f"Pending for more than {pending_timeout:.0f}s ({why})", ip)
    return PodCondition(RuntimeStatus.RUNNING, None, ip)


def now_utc() -> datetime:
    return datetime.now(UTC)
