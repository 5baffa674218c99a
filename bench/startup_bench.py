"""How long until a workspace is active: the issue's start-up targets, on both backends, against `git clone`.

    .venv/bin/python -m bench.startup_bench [--backends local,docker] [--files 10000] [--runs 20] [--dir DIR]

One scratch data dir (under `--dir`, default $TMPDIR or /tmp), one SQLite database, the real app (for the
repository and environment records) and a `WorkspaceManager` per backend, as `backends_bench` has them.
The repository is `checkout_bench`'s generated origin of N files (cached under
`<dir>/replicas-checkout-bench/`). The docker backend runs the test base image (tests/docker_support.py)
with host networking and `docker_engine="host-python"`: the engine is this machine's Python environment,
bind-mounted read-only, not the image's own (the default), because the image that carries the engine is
tagged by the content of `src/` and rebuilt whenever it changes; the engine's code is the same either way.

Untimed: one warm-up workspace per backend (fills the mirror, the page cache, Docker's layers), and one
workspace per backend kept for the wakes. Then, per run, measurements and backends interleaved:

- baseline: a plain local `git clone ORIGIN` (what the issue compares with);
- cold create -> active: `create_record` + `provision` of a workspace of the N-file repository (mirror
  refresh, checkout, warm hooks, engine start, `/health`, the row `active`), then destroyed (untimed);
  of which `engine start -> /health`: from the engine's start (`WorkspaceManager._launch_engine`) to its
  first answer at `/health` (`_await_engine`). On a backend that starts the engine while the home is laid out
  (`Runtime.starts_before_home`: local, docker on the same host) this overlaps the checkout; then also
  `after the home is ready`: the part after the checkout and the warm hooks, the create's only wait for it;
- create from a snapshot -> active: the same, on an environment whose pool (enabled, target 0) has a base
  snapshot of the repository (built once per backend, untimed): the home is layered on it (overlay where the
  control plane may mount, else a copy), no checkout, no warm hook; engine start, `/health`, `active`;
- claim from a pool -> active (local: the app's own runtime): a warm pool of size 1 on an environment of the
  same repository, refilled by the app's filler between runs (untimed); `POST /v1/replica` through the API
  until the replica reads `active` (claimed, start hooks run, first message sent), then deleted;
- wake -> active: `manager.sleep` (untimed), then `manager.wake` (start, `/health`, `active`).

Each is reported as p50/p90/p99 (nearest rank) over the runs, with its ratio to the baseline's p50 and the
issue's target. Memory of a ready pool workspace: no pool exists yet, so its stand-in is what it would
hold, an `active` idle workspace of the repository: after `--settle` seconds, its process tree's PSS and
RSS and its memory cgroup (usage minus page cache), read as `backends_bench` reads them. Every workspace is
destroyed at the end (also on failure or Ctrl-C). Prints a table and one JSON line. Nothing here asserts a
time; bench/README.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import select

from bench.backends_bench import (
    TOOLS,
    Backend,
    cgroup_memory_kib,
    destroy,
    docker_settings,
    process_tree,
    sweep_docker,
    timed_create,
    tree_memory_kib,
)
from bench.checkout_bench import make_origin
from replicas.api.app import create_app
from replicas.runtime import layers
from replicas.services import auth, base_snapshots, git
from replicas.services.principal import Principal
from replicas.services.workspaces import WorkspaceManager
from replicas.settings import Settings
from replicas.store.models import WarmPoolConfig

NOT_BUILT = "not built yet"
# (row key, label, target as a function of the baseline's p50 -> (limit in s, how it reads))
TARGETS = {
    "claim_active_s": (lambda base: 0.2, "p50 <= 0.2 s"),
    "snapshot_active_s": (lambda base: 0.5 * base, "p50 <= 0.5x git clone"),
    "create_active_s": (lambda base: 1.0 * base, "p50 <= 1.0x git clone"),
    "wake_active_s": (lambda base: 0.5, "p50 <= 0.5 s"),
}


class TimedManager(WorkspaceManager):
    """The real manager; it only writes down how long each engine start took (runtime start + health wait), and
    how long the health wait was once the home was ready, where the engine was started before it."""

    engine_starts: list[float]
    engine_waits: list[float]

    async def _launch_engine(self, workspace, env):
        self._launched = time.monotonic()
        return await super()._launch_engine(workspace, env)

    async def _await_engine(self, workspace):
        started = time.monotonic()
        try:
            return await super()._await_engine(workspace)
        finally:
            self.engine_waits.append(time.monotonic() - started)
            self.engine_starts.append(time.monotonic() - self._launched)


# -- snapshots and pools ---------------------------------------------------------------------------

async def build_snapshot(backend: Backend, env_id: str) -> None:
    """Build (untimed) the base snapshot of the environment's pool (enabled, target 0) on `backend`."""
    async with backend.manager.sessions() as session:
        config = await session.scalar(select(WarmPoolConfig).where(WarmPoolConfig.environment_id == uuid.UUID(env_id)))
        existing = await base_snapshots.current(session, config, backend.manager.runtime.name)
    if existing is None:
        await base_snapshots.build(backend.manager, config)


async def snapshot_create(backend: Backend, principal: Principal, env_id: str, created: list) -> float:
    """Seconds from a create of the environment whose pool has a base snapshot of the repository to `active`
    (layered home, engine start, `/health`); the workspace is destroyed afterwards (untimed)."""
    seconds, workspace = await timed_create(backend, principal, env_id, created)
    assert (workspace.runtime_state.get("spec") or {}).get("base_home"), "the create did not use the snapshot"
    await destroy(backend, principal, workspace.id, created)
    return seconds


class PoolClaims:
    """Claims from a warm pool through the API, as a user's `POST /v1/replica` makes them: the pool of the app's
    own runtime (`local`), of size 1, refilled by the app's filler between runs (untimed)."""

    def __init__(self, client: httpx.AsyncClient, env_id: str):
        self.client, self.env_id = client, env_id

    async def enable(self) -> None:
        response = await self.client.put(f"/v1/environments/{self.env_id}/warm-pools",
                                         json={"enabled": True, "target_size": 1})
        assert response.status_code == 200, response.text

    async def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pool = (await self.client.get(f"/v1/environments/{self.env_id}/warm-hooks")).json()["warm_pool"]
            if pool and pool["ready_count"] >= 1:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("the warm pool did not fill")

    async def disable(self, timeout: float = 60) -> None:
        """Turn the pool off and wait until the filler has destroyed what it held (no engine outlives the bench)."""
        await self.client.put(f"/v1/environments/{self.env_id}/warm-pools", json={"enabled": False, "target_size": 1})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pool = (await self.client.get(f"/v1/environments/{self.env_id}/warm-hooks")).json()["warm_pool"]
            if not pool or (pool["ready_count"] + pool["stale_count"] + pool["warming_count"]) == 0:
                return
            await asyncio.sleep(0.2)

    async def claim(self) -> float:
        """Seconds from `POST /v1/replica` to the replica `active` (start hooks run, first message sent); the
        replica is deleted afterwards (untimed)."""
        await self.wait_ready()
        started = time.monotonic()
        response = await self.client.post("/v1/replica", json={"name": "bench-claim", "environment_id": self.env_id,
                                                               "message": "hello", "coding_agent": "claude"})
        assert response.status_code == 201, response.text
        replica_id = response.json()["replica"]["id"]
        while (await self.client.get(f"/v1/replica/{replica_id}")).json()["replica"]["status"] != "active":
            await asyncio.sleep(0.002)
        seconds = time.monotonic() - started
        await self.client.delete(f"/v1/replica/{replica_id}")
        return seconds


async def pool_claim(backend: Backend, claims: PoolClaims | None) -> float | None:
    """Seconds from claiming a ready workspace of a warm pool to `active`: the app's own backend (local) only."""
    if claims is None or backend.name != "local":
        return None
    return await claims.claim()


# -- the runs --------------------------------------------------------------------------------------

async def git_clone(origin: Path, work: Path, run: int) -> float:
    dest = work / f"clone-{run}"
    await asyncio.to_thread(os.sync)  # the previous steps' dirty pages are not this clone's cost
    started = time.monotonic()
    await git.run_git("clone", "--quiet", str(origin), str(dest), timeout=600)
    seconds = time.monotonic() - started
    await asyncio.to_thread(shutil.rmtree, dest, True)
    return seconds


async def idle_memory(backend: Backend, workspace, settle: float) -> None:
    """What an idle `active` workspace holds: the stand-in for one ready pool workspace."""
    await asyncio.sleep(settle)
    roots, pgid, cgroup_key = backend.roots(workspace)
    tree = process_tree(roots, pgid)
    rss, pss = tree_memory_kib(tree)
    backend.record("ready_processes", len(tree))
    backend.record("ready_rss_kib", rss)
    backend.record("ready_pss_kib", pss)
    backend.record("ready_cgroup_kib", cgroup_memory_kib(roots[0], cgroup_key) if roots else None)


async def measure_run(backend: Backend, principal: Principal, repo_env: str, kept, created: list,
                      settle: float, with_memory: bool, claims: PoolClaims | None, snap_envs: dict[str, str]):
    starts, waits = backend.manager.engine_starts, backend.manager.engine_waits
    starts.clear()
    waits.clear()
    await asyncio.to_thread(os.sync)
    seconds, workspace = await timed_create(backend, principal, repo_env, created)
    backend.record("create_active_s", seconds)
    backend.record("create_engine_start_s", starts[-1] if starts else None)
    backend.record("create_engine_wait_s", waits[-1] if waits else None)
    if with_memory:
        await idle_memory(backend, workspace, settle)
    await destroy(backend, principal, workspace.id, created)

    backend.record("snapshot_active_s", await snapshot_create(backend, principal, snap_envs[backend.name],
                                                              created))
    backend.record("claim_active_s", await pool_claim(backend, claims))

    kept = await backend.manager.sleep(kept)
    starts.clear()
    started = time.monotonic()
    kept = await backend.manager.wake(kept)  # returns once the engine answered /health, the row active
    backend.record("wake_active_s", time.monotonic() - started)
    backend.record("wake_engine_start_s", starts[-1] if starts else None)
    assert kept.status == "active", kept.status
    return kept


async def bench(names: list[str], files: int, runs: int, settle: float, memory_runs: int,
                directory: Path) -> dict:
    origin = await make_origin(directory / "replicas-checkout-bench", files)
    with tempfile.TemporaryDirectory(prefix="replicas-startup-", dir=directory) as scratch:
        root = Path(scratch)
        tools = TOOLS if TOOLS.is_dir() else root / "tools"
        tools.mkdir(exist_ok=True)
        (root / "clones").mkdir()
        settings = Settings(data_dir=root / "data", tools_dir=tools, runtime="local", pool_interval_seconds=0.2)
        app = create_app(settings)
        created: list = []
        skipped: dict[str, str] = {}
        baseline: list[float] = []
        backends: list[Backend] = []
        principal = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(app.router.lifespan_context(app))
                async with app.state.sessions() as session:
                    org = await auth.get_or_create_organization(session, "bench")
                    key = await auth.create_org_key(session, org)
                    await session.commit()
                client = await stack.enter_async_context(httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://b", timeout=600,
                    headers={"Authorization": f"Bearer {key}"}))
                repo = (await client.post("/v1/replica/repositories", json={
                    "name": "bench/big", "url": str(origin)})).json()["repository"]
                repo_env = (await client.post("/v1/environments", json={
                    "name": "bench-repo", "repository_id": repo["id"]})).json()["environment"]["id"]
                # The pool's environment: the same repository, its own environment so that the cold creates
                # and wakes above never take a pool workspace.
                pool_env = (await client.post("/v1/environments", json={
                    "name": "bench-pool", "repository_id": repo["id"]})).json()["environment"]["id"]
                claims = PoolClaims(client, pool_env) if "local" in names else None
                if claims is not None:
                    await claims.enable()
                    stack.push_async_callback(claims.disable)  # before the client and the app close
                principal = Principal.system(org.id)
                for name in names:
                    chosen = settings
                    if name == "docker":
                        chosen = docker_settings(settings)
                        if not isinstance(chosen, str):
                            chosen = chosen.model_copy(update={"docker_engine": "host-python"})
                    if isinstance(chosen, str):
                        skipped[name] = chosen
                        print(f"SKIP {name}: {chosen}", flush=True)
                        continue
                    manager = TimedManager(chosen, app.state.sessions, app.state.box)
                    manager.engine_starts, manager.engine_waits = [], []
                    backends.append(Backend(name, manager))
                snap_envs: dict[str, str] = {}
                for backend in backends:  # one environment per backend, its pool only for the snapshot
                    made = await client.post("/v1/environments", json={"name": f"bench-snapshot-{backend.name}",
                                                                         "repository_id": repo["id"]})
                    snap_envs[backend.name] = made.json()["environment"]["id"]
                    response = await client.put(f"/v1/environments/{snap_envs[backend.name]}/warm-pools",
                                                json={"enabled": True, "target_size": 0})
                    assert response.status_code == 200, response.text
                    await build_snapshot(backend, snap_envs[backend.name])
                    print(f"[{backend.name}] base snapshot built", flush=True)
                await git_clone(origin, root / "clones", -1)  # warm-up
                kept: dict[str, object] = {}
                for backend in backends:
                    seconds, workspace = await timed_create(backend, principal, repo_env, created)
                    await destroy(backend, principal, workspace.id, created)
                    print(f"[{backend.name}] warm-up workspace of {files} files active in {seconds:.2f} s", flush=True)
                    _, kept[backend.name] = await timed_create(backend, principal, repo_env, created)
                for run in range(runs):
                    baseline.append(await git_clone(origin, root / "clones", run))
                    line = {"git_clone_s": round(baseline[-1], 3)}
                    for backend in backends:
                        kept[backend.name] = await measure_run(backend, principal, repo_env, kept[backend.name],
                                                               created, settle, run < memory_runs, claims, snap_envs)
                        line[backend.name] = {k: (round(v[-1], 3) if isinstance(v[-1], float) else v[-1])
                                              for k, v in backend.results.items()}
                    print(f"run {run + 1}: {json.dumps(line)}", flush=True)
        finally:
            with contextlib.suppress(Exception):
                for backend, workspace_id in list(created):
                    await destroy(backend, principal, workspace_id, created)
            if "docker" in names:
                await asyncio.to_thread(sweep_docker, settings.data_dir)
            # A pool workspace the filler was still laying out when the pool was disabled may keep its overlay
            # home mounted: unmount what is left, or the scratch directory cannot be removed.
            for workspace in (settings.data_dir / "workspaces").glob("*"):
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(layers.release, str(workspace))
    return {"files": files, "runs": runs, "settle_s": settle, "dir": str(directory),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "skipped": skipped,
            "git_clone_s": baseline, "backends": {b.name: b.results for b in backends}}


# -- output ----------------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest rank: with 20 runs p99 is the slowest run, p90 the second slowest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def spread(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return NOT_BUILT
    return " / ".join(f"{percentile(values, p):.2f}" for p in (50, 90, 99))


def verdict(key: str, values: list, base_p50: float) -> str:
    values = [v for v in values if v is not None]
    limit, text = TARGETS[key][0](base_p50), TARGETS[key][1]
    if not values:
        return f"{text}: -"
    p50 = percentile(values, 50)
    ratio = f" ({p50 / base_p50:.2f}x)" if "git clone" in text else ""
    return f"{text}: {'met' if p50 <= limit else 'MISSED'}{ratio}"


def table(result: dict) -> str:
    base = result["git_clone_s"]
    base_p50 = percentile(base, 50)
    rows = [
        ("cold create -> active", "create_active_s"),
        ("  of which engine start -> /health", "create_engine_start_s"),
        ("  of which after the home is ready", "create_engine_wait_s"),
        ("create from a snapshot -> active", "snapshot_active_s"),
        ("claim from a pool -> active", "claim_active_s"),
        ("wake -> active", "wake_active_s"),
        ("  of which engine start -> /health", "wake_engine_start_s"),
    ]
    width = 37
    lines = [f"startup bench: {result['files']} files, {result['runs']} runs, dir {result['dir']}, "
             f"{result['machine']['cpus']} CPUs; seconds p50 / p90 / p99",
             f"{'baseline: git clone ORIGIN':<{width}}{spread(base):>20}"]
    for name, results in result["backends"].items():
        lines.append(f"[{name}]")
        for label, key in rows:
            target = f"   {verdict(key, results[key], base_p50)}" if key in TARGETS else ""
            lines.append(f"{label:<{width}}{spread(results[key]):>20}{target}")
        mib = 1024.0
        pss, rss, cgroup = (results.get(k, []) for k in ("ready_pss_kib", "ready_rss_kib", "ready_cgroup_kib"))
        cgroup = [v for v in cgroup if v is not None]
        if pss:
            in_cgroup = f", cgroup - cache {statistics.median(cgroup) / mib:.1f} MiB" if cgroup else ""
            lines.append(f"{'memory of one ready workspace':<{width}}PSS {statistics.median(pss) / mib:.1f} MiB, "
                         f"RSS {statistics.median(rss) / mib:.1f} MiB{in_cgroup} (an idle active one)")
    for name, reason in result["skipped"].items():
        lines.append(f"{name}: SKIPPED ({reason})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="local,docker")
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before memory is read")
    parser.add_argument("--memory-runs", type=int, default=3, help="runs that also read the idle memory")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    options = parser.parse_args()
    names = [n.strip() for n in options.backends.split(",") if n.strip()]
    unknown = set(names) - {"local", "docker"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")

    async def run() -> dict:
        # SIGTERM cancels the bench like Ctrl-C does, so the cleanup in `bench` runs.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        return await bench(names, options.files, options.runs, options.settle, options.memory_runs,
                           options.dir.resolve())

    result = asyncio.run(run())
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
