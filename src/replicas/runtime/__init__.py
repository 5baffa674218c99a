"""Workspace backends behind one interface (ARCHITECTURE.md, principle 4).

    base.py     the `Runtime` ABC, its handle, spec and endpoint types
    local.py    `LocalRuntime`: detached process trees on this machine
    bwrap.py    the bubblewrap argv, built by a pure function
    cgroups.py  size -> CPU/memory/pids limits through cgroups
    docker.py   `DockerRuntime`: a container per workspace on a Docker engine
    kubernetes.py  `KubernetesRuntime`: a claim and a pod per workspace on a cluster
    k8s_objects.py the workspace's Kubernetes manifests, built by pure functions
    k8s_api.py     a thin JSON client of the Kubernetes API (kubernetes-asyncio)
    k8s_exec.py    pods/exec: the channel protocol and the commands sent over it
"""

from __future__ import annotations

from replicas.runtime.base import (
    ENGINE_SOCKET_NAME,
    EngineEndpoint,
    ExecResult,
    PortEndpoint,
    Runtime,
    RuntimeFailure,
    RuntimeStatus,
    SandboxUnavailable,
    WorkspaceHandle,
    WorkspaceSpec,
    WorkspaceWillNotRun,
)
from replicas.settings import Settings

__all__ = [
    "ENGINE_SOCKET_NAME",
    "EngineEndpoint",
    "ExecResult",
    "PortEndpoint",
    "Runtime",
    "RuntimeFailure",
    "RuntimeStatus",
    "SandboxUnavailable",
    "WorkspaceHandle",
    "WorkspaceSpec",
    "WorkspaceWillNotRun",
    "create_runtime",
]


def create_runtime(settings: Settings) -> Runtime:
    """The backend `settings.runtime` names."""
    if settings.runtime == "local":
        from replicas.runtime.local import LocalRuntime

        return LocalRuntime(settings)
    if settings.runtime == "docker":
        from replicas.runtime.docker import DockerRuntime

        return DockerRuntime(settings)
    if settings.runtime == "kubernetes":
        from replicas.runtime.kubernetes import KubernetesRuntime

        return KubernetesRuntime(settings)
    raise RuntimeFailure("Runtime not available", f"the {settings.runtime!r} runtime is not implemented yet")
