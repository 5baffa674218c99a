"""The cluster the `kubernetes` backend's tests run against: the API server stand-in here (apiserver.py), or a
live cluster when REPLICAS_K8S_LIVE_KUBECONFIG names its kubeconfig (then REPLICAS_K8S_LIVE_NAMESPACE, default
`replicas-test`, must exist, and REPLICAS_K8S_LIVE_IMAGE, default `replicas-workspace:latest`, be pullable
there). Every test runs once per cluster; the live one skips, saying so, when none is configured."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from replicas.runtime.bwrap import find_bwrap
from replicas.runtime.kubernetes import KubernetesRuntime
from replicas.settings import Settings
from tests.kubernetes.apiserver import Image, StandInApiServer

STANDIN_IMAGE = "replicas-workspace:standin"
LIVE_KUBECONFIG = os.environ.get("REPLICAS_K8S_LIVE_KUBECONFIG")


@dataclass
class Cluster:
    kubeconfig: str
    namespace: str
    image: str
    standin: StandInApiServer | None  # None: a live cluster


def standin_engine_image(**env: str) -> Image:
    """The stand-in's workspace image: this machine's engine as its CMD, with `env` (what a real image sets,
    e.g. REPLICAS_TOOLS_DIR where its agent CLIs are)."""
    return Image([sys.executable, "-m", "replicas.engine.main"],
                 env={"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', os.defpath)}",
                      "LANG": "C.UTF-8", **env})


@pytest.fixture(scope="module", params=["standin", "live"])
def cluster(request, tmp_path_factory):
    if request.param == "live":
        if not LIVE_KUBECONFIG:
            pytest.skip("no live cluster: set REPLICAS_K8S_LIVE_KUBECONFIG to run these tests against one")
        yield Cluster(LIVE_KUBECONFIG, os.environ.get("REPLICAS_K8S_LIVE_NAMESPACE", "replicas-test"),
                      os.environ.get("REPLICAS_K8S_LIVE_IMAGE", "replicas-workspace:latest"), None)
        return
    if find_bwrap() is None:
        pytest.skip("the API server stand-in runs containers under bubblewrap, which is missing here")
    root = tmp_path_factory.mktemp("standin")
    # The tests' temporary files (the control plane's data dirs among them) are not on the stand-in's "nodes".
    server = StandInApiServer(root, {STANDIN_IMAGE: standin_engine_image()},
                              hidden=(tmp_path_factory.getbasetemp(),)).start()
    namespace = "replicas-workspaces"
    yield Cluster(str(server.write_kubeconfig(root / "kubeconfig", namespace)), namespace, STANDIN_IMAGE, server)
    server.close()


@pytest.fixture
async def make_runtime(cluster, tmp_path):
    """Runtimes on `cluster` with `tmp_path/data` as data dir; every workspace they provisioned is destroyed
    after the test."""
    made: list[tuple[KubernetesRuntime, object]] = []
    runtimes: list[KubernetesRuntime] = []

    def factory(**overrides) -> KubernetesRuntime:
        values = {"k8s_kubeconfig": cluster.kubeconfig, "k8s_namespace": cluster.namespace,
                  "k8s_image": cluster.image, "k8s_pending_timeout_seconds": 60, **overrides}
        runtime = KubernetesRuntime(Settings(data_dir=tmp_path / "data", database_url=None, runtime="kubernetes",
                                             **values), stop_grace_seconds=3)
        original = runtime.provision

        async def provision(workspace_id, spec):
            handle = await original(workspace_id, spec)
            made.append((runtime, handle))
            return handle

        runtime.provision = provision
        runtimes.append(runtime)
        return runtime

    yield factory
    try:
        for runtime, handle in made:
            await runtime.destroy(handle)
    finally:
        for runtime in runtimes:
            await runtime.api.close()
