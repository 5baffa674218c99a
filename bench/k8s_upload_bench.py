"""The first start of a Kubernetes workspace, on the API server stand-in, three ways: uploading the whole staged
home (`home`: a tar of the checkout and its `.git`, what the backend did before the pods cloned), staging only
the checkout's `.git` and checking it out from the index inside the pod (`index`), and the pod cloning from the
origin itself (`pod`: what the backend does now for a network origin; `provisioning.clone_script` through `exec`
in a throwaway pod, then the engine's pod), the origin being git's smart HTTP on loopback.

    .venv/bin/python -m bench.k8s_upload_bench [--files 4000] [--size 8192] [--runs 3]

A generated repository of N files of about `size` bytes each (hex text, so it compresses as code does), one
bare mirror of it; per run and variant, interleaved: a new workspace is provisioned, the mirror is cloned into
its staged home (`home`: with its checkout; `index`: `--no-checkout`), the engine's pod is started (the staged
home is uploaded into the claim through pods/exec), and for `index` the checkout is made in the pod
(`git checkout -f`, through `exec`); for `pod` nothing is cloned here. Printed: each step's seconds, the bytes
uploaded, and the medians.

The stand-in's kubelet runs containers as local processes and its API is an in-process aiohttp server, so the
upload's throughput here is this machine's, not a cluster's: fewer bytes count for more on a real network.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.integrations.stand_ins import StandIn
from tests.kubernetes.apiserver import StandInApiServer
from tests.kubernetes.conftest import STANDIN_IMAGE, standin_engine_image

from replicas.runtime.base import WorkspaceSpec
from replicas.runtime.kubernetes import KubernetesRuntime
from replicas.services.provisioning import clone_script
from replicas.settings import Settings

GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def make_mirror(root: Path, files: int, size: int) -> Path:
    origin = root / "origin"
    for index in range(files):
        path = origin / f"pkg{index % 50}" / f"mod{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(("# " + os.urandom(size // 4).hex() + "\n") * 2)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "generated"]):
        subprocess.run(["git", *args], cwd=origin, check=True, env={**os.environ, **GIT_ENV})
    subprocess.run(["git", "clone", "-q", "--mirror", str(origin), str(root / "mirror.git")], check=True)
    return root / "mirror.git"


async def first_start(runtime: KubernetesRuntime, mirror: Path, variant: str, origin: str) -> dict[str, float]:
    handle = await runtime.provision(str(uuid.uuid4()), WorkspaceSpec())
    checkout = Path(handle.home) / "workspaces" / "repo"
    times: dict[str, float] = {}
    started = time.monotonic()
    if variant == "pod":
        checkout.parent.mkdir(parents=True, exist_ok=True)
        head = subprocess.run(["git", "rev-parse", "main"], cwd=mirror, capture_output=True, text=True,
                              check=True).stdout.strip()
        plan = [{"path": "workspaces/repo", "url": origin, "branch": "main", "commit": head}]
        result = await runtime.exec(handle, ["sh", "-c", clone_script(plan)], 600,
                                    env={"HOME": handle.home, "GIT_TERMINAL_PROMPT": "0"})
        assert result.exit_code == 0, result.output
        times["clone_in_pod"] = time.monotonic() - started
    else:
        no_checkout = ["--no-checkout"] if variant == "index" else []
        await asyncio.to_thread(subprocess.run, ["git", "clone", "-q", "--no-hardlinks", *no_checkout, str(mirror),
                                                 str(checkout)], check=True)
        times["clone"] = time.monotonic() - started
    started = time.monotonic()
    await runtime.start(handle, [], {"REPLICAS_ENGINE_SECRET": "bench"})
    times["start"] = time.monotonic() - started
    started = time.monotonic()
    if variant == "index":
        result = await runtime.exec(handle, ["git", "-C", str(checkout), "checkout", "-q", "-f", "main"], 600)
        assert result.exit_code == 0, result.output
    times["checkout"] = time.monotonic() - started
    status = await runtime.exec(handle, ["git", "-C", str(checkout), "status", "--porcelain"], 120)
    assert status.exit_code == 0 and status.output == "", status.output  # the same clean checkout either way
    await runtime.destroy(handle)
    times["total"] = sum(times.values())
    return times


async def main(files: int, size: int, runs: int, root: Path) -> None:
    mirror = make_mirror(root, files, size)
    control_plane = root / "control-plane"
    control_plane.mkdir()
    server = StandInApiServer(root / "standin", {STANDIN_IMAGE: standin_engine_image()},
                              hidden=(control_plane,)).start()
    kubeconfig = server.write_kubeconfig(root / "kubeconfig", "bench")
    runtime = KubernetesRuntime(Settings(data_dir=control_plane / "data", database_url=None, runtime="kubernetes",
                                         k8s_kubeconfig=str(kubeconfig), k8s_namespace="bench",
                                         k8s_image=STANDIN_IMAGE), stop_grace_seconds=3)
    megabytes = subprocess.run(["du", "-sm", str(mirror)], capture_output=True, text=True).stdout.split()[0]
    print(f"repository: {files} files of ~{size} bytes, mirror {megabytes} MB")
    (root / "served").mkdir()
    os.symlink(mirror, root / "served" / "repo.git")
    git_server = StandIn(git_root=root / "served", git_token="bench-token").start()
    origin = git_server.url.replace("://", "://bench:bench-token@") + "/repo.git"  # bench only: no credential store
    totals: dict[str, list[float]] = {"home": [], "index": [], "pod": []}
    try:
        for _ in range(runs):
            for variant in totals:
                times = await first_start(runtime, mirror, variant, origin)
                totals[variant].append(times["total"])
                print(f"{variant:5}  " + "  ".join(f"{step} {seconds:6.2f}s" for step, seconds in times.items()))
    finally:
        await runtime.api.close()
        server.close()
        git_server.close()
    for variant, values in totals.items():
        print(f"{variant:5}  median total {statistics.median(values):.2f}s  (min {min(values):.2f}s, "
              f"max {max(values):.2f}s)")


if __name__ == "__main__":
    import logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    # The backend logs each upload's bytes and seconds ("workspace uploaded ... bytes=... in ...s").
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("replicas.runtime").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="k8s-upload-bench-") as scratch:
        asyncio.run(main(arguments.files, arguments.size, arguments.runs, Path(scratch)))
