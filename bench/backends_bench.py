"""The local and docker runtime backends side by side: start times, wake time, and what a workspace costs.

    .venv/bin/python -m bench.backends_bench [--backends local,docker,docker-remote] [--files 10000] [--runs 3]
        [--settle 3] [--dir DIR]

One scratch data dir (under `--dir`, default $TMPDIR or /tmp), one SQLite database, one control plane
(the real app, for the repository and environment records) and a `WorkspaceManager` per backend, so both
backends share the repository mirror. The repository is `checkout_bench`'s generated origin of N files
(cached under `<dir>/replicas-checkout-bench/`). The docker backend uses the test base image
(tests/docker_support.py, built with mmdebstrap when missing) with host networking and the engine run
from this machine's Python environment, bind-mounted read-only, as the docker tests do. `docker-remote` is
the docker backend taking its remote way (`tcp://` to a proxy of the local dockerd): a plain volume filled
through the Docker API, the engine over TCP, and the engine and Claude Code from an image that carries them
(`ensure_remote_image`); its disk is measured at the volume's mountpoint.

Per backend, untimed: one warm-up workspace of the repository (fills the mirror, the page cache and
Docker's image layers). Then, per run, backends interleaved:

1. create → engine ready: `create_record` + `provision` of a workspace of a repository-less environment;
2. create → active: the same for the N-file repository (mirror refresh, checkout, engine start);
3. idle: `--settle` seconds after (2), the workspace's process tree (local: the leader's descendants and
   its process group; docker: the container's init and its descendants) summed from /proc (RSS and PSS),
   and its memory cgroup (usage minus page cache, as `docker stats` shows on cgroup v1);
4. sleeping: `manager.sleep`, then the processes of (3) still alive, their memory, and the disk the
   workspace keeps (`du` of its directory, which is also the docker volume; plus the stopped
   container's writable layer);
5. wake → active: `manager.wake` (start, then `/health` answers, then the row is `active`).

Every workspace is destroyed as it is done and again at the end (also on failure or Ctrl-C), and any
container or volume labelled with the scratch data dir is removed. Prints a table and one JSON line.
Nothing here asserts a time; bench/README.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.checkout_bench import make_origin
from replicas.api.app import create_app
from replicas.services import auth
from replicas.services.principal import Principal
from replicas.services.workspaces import WorkspaceManager
from replicas.settings import Settings

TOOLS = Path.home() / ".cache" / "replicas-test-tools"
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# -- /proc and cgroups -----------------------------------------------------------------------------

def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, start_time) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19])


def process_tree(roots: list[int], pgid: int | None = None) -> dict[int, int]:
    """{pid: start_time} of the live (non-zombie) descendants of `roots` and members of process group `pgid`."""
    procs = {int(e): s for e in os.listdir("/proc") if e.isdigit() and (s := _stat(int(e))) is not None}
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    members: set[int] = set()
    stack = [pid for pid in roots if pid in procs]
    while stack:
        pid = stack.pop()
        if pid not in members:
            members.add(pid)
            stack.extend(children.get(pid, ()))
    if pgid:
        members.update(pid for pid, proc in procs.items() if proc[2] == pgid)
    return {pid: procs[pid][3] for pid in members if procs[pid][0] != "Z"}


def still_alive(tree: dict[int, int]) -> list[int]:
    """The pids of `tree` that still run (same start time, not a zombie)."""
    return [pid for pid, start in tree.items() if (s := _stat(pid)) is not None and s[0] != "Z" and s[3] == start]


def tree_memory_kib(pids) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in KiB over `pids`; PSS splits shared pages between their users."""
    rss = pss = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                    break
    return rss, pss


def cgroup_memory_kib(pid: int, must_contain: str) -> int | None:
    """Memory usage minus page cache of `pid`'s memory cgroup (v1 or v2), in KiB; None when that cgroup is
    not the workspace's own (its path lacks `must_contain`) or cannot be read."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    v1 = [line.split(":", 2)[2] for line in lines if ":memory:" in line or line.split(":")[1:2] == ["memory"]]
    try:
        if v1:
            if must_contain not in v1[0]:
                return None
            base = Path("/sys/fs/cgroup/memory" + v1[0])
            usage = int((base / "memory.usage_in_bytes").read_text())
            stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines())
            return (usage - int(stat.get("total_cache", stat.get("cache", 0)))) // 1024
        v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
        if not v2 or must_contain not in v2[0]:
            return None
        root = Path("/sys/fs/cgroup/unified") if Path("/sys/fs/cgroup/unified").is_dir() else Path("/sys/fs/cgroup")
        base = root / v2[0].lstrip("/")
        stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines())
        return (int((base / "memory.current").read_text()) - int(stat.get("inactive_file", 0))) // 1024
    except (OSError, ValueError):
        return None


def container_shim(pid: int) -> int | None:
    """The containerd shim that holds the container whose init is `pid` (its parent), if that is one."""
    stat = _stat(pid)
    if stat is None:
        return None
    with contextlib.suppress(OSError):
        if Path(f"/proc/{stat[1]}/comm").read_text().startswith("containerd-shim"):
            return stat[1]
    return None


def du_kib(path: str) -> int:
    done = subprocess.run(["du", "-sk", path], capture_output=True, text=True, check=False)
    return int(done.stdout.split()[0]) if done.returncode == 0 and done.stdout else 0


# -- the two backends ------------------------------------------------------------------------------

class Backend:
    """One runtime backend under a `WorkspaceManager`, with how to find its workspace's processes."""

    def __init__(self, name: str, manager: WorkspaceManager):
        self.name, self.manager = name, manager
        self.results: dict[str, list] = {}

    def record(self, key: str, value) -> None:
        self.results.setdefault(key, []).append(value)

    def roots(self, workspace) -> tuple[list[int], int | None, str]:
        """(root pids, process group, what the memory cgroup's path must contain) of a running workspace."""
        handle = self.manager.runtime.load_state(workspace.runtime_state)
        if self.name == "local":
            return [handle.pid] if handle.pid else [], handle.pgid, handle.workspace_id
        attrs = self.manager.runtime.client().containers.get(handle.container_name).attrs
        pid = attrs["State"]["Pid"]
        return ([pid] if pid else []), None, attrs["Id"]

    def container_facts(self, workspace) -> dict:
        """The stopped (or running) container: status, init pid, writable layer size (docker only)."""
        if not self.name.startswith("docker"):
            return {}
        handle = self.manager.runtime.load_state(workspace.runtime_state)
        done = subprocess.run(["docker", "container", "inspect", "--size", handle.container_name],
                              capture_output=True, text=True, check=True)
        attrs = json.loads(done.stdout)[0]
        return {"container_status": attrs["State"]["Status"], "container_pid": attrs["State"]["Pid"],
                "container_rw_kib": (attrs.get("SizeRw") or 0) // 1024}


def docker_settings(base: Settings) -> Settings | str:
    """Settings for the docker backend on the test base image, or why it cannot run here."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.docker_support import ensure_base_image_tag

    tag, reason = ensure_base_image_tag()
    if tag is None:
        return reason or "no base image"
    return base.model_copy(update={"runtime": "docker", "docker_image": tag, "docker_network": "host"})


def remote_docker_settings(base: Settings, proxy_holder: list) -> Settings | str:
    """The docker backend taking its remote way (tcp:// to a proxy of the local dockerd, as the tests do):
    plain volumes filled through the API, the engine over TCP, engine and Claude Code from the image."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.docker_support import DockerTcpProxy, ensure_remote_image

    tag, reason = ensure_remote_image(str(base.resolved_tools_dir))
    if tag is None:
        return reason or "no remote image"
    proxy_holder.append(DockerTcpProxy())
    return base.model_copy(update={"runtime": "docker", "docker_image": tag, "docker_network": "host",
                                   "docker_host": proxy_holder[-1].url, "docker_engine_bind": "127.0.0.1"})


def volume_dir(backend: Backend, handle) -> str:
    """Where the workspace's disk is on this machine: its directory, or (remote) its volume's mountpoint."""
    if not getattr(handle, "remote", False):
        return handle.workspace_dir
    return backend.manager.runtime.client().volumes.get(handle.volume).attrs["Mountpoint"]


def sweep_docker(data_dir: Path) -> None:
    """Remove every container and volume labelled with the scratch data dir (whatever a failure left)."""
    label = f"label=replicas.data_dir={os.path.realpath(data_dir)}"
    for kind, listing in (("container", ["docker", "ps", "-aq"]), ("volume", ["docker", "volume", "ls", "-q"])):
        done = subprocess.run([*listing, "--filter", label], capture_output=True, text=True, check=False)
        ids = done.stdout.split()
        if ids:
            subprocess.run(["docker", kind, "rm", "-f", *ids], capture_output=True, check=False)


# -- the bench -------------------------------------------------------------------------------------

class ContainerStarts(logging.Handler):
    """Catches the docker backend's "workspace started ... in N s" (container create + start) log lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("workspace started") and " in " in record.getMessage():
            with contextlib.suppress(ValueError):
                self.seconds.append(float(record.getMessage().rsplit(" in ", 1)[1].rstrip("s")))


CONTAINER_STARTS = ContainerStarts()


async def timed_create(backend: Backend, principal: Principal, env_id: str, created: list,
                       steps: dict | None = None) -> tuple[float, object]:
    """Seconds from `create_record` to the row being `active` (the engine answered), and the workspace.
    `steps` gets the provisioning steps' seconds (`clone` is the mirror refresh and the checkout)."""

    def on_step(name: str, detail: dict) -> None:
        if steps is not None:
            steps[name] = detail["seconds"]

    started = time.monotonic()
    row = await backend.manager.create_record(principal, env_id, name=f"bench-{backend.name}")
    created.append((backend, row.id))
    workspace = await backend.manager.provision(row, principal, on_step=on_step)
    return time.monotonic() - started, workspace


async def destroy(backend: Backend, principal: Principal, workspace_id, created: list) -> None:
    try:
        row = await backend.manager.get(principal, str(workspace_id))
        await backend.manager.destroy(row)
    except Exception as exc:  # noqa: BLE001 - cleanup goes on; the docker sweep catches what is left
        print(f"[{backend.name}] destroying workspace {workspace_id} failed: {exc!r}", file=sys.stderr)
    with contextlib.suppress(ValueError):
        created.remove((backend, workspace_id))


async def measure_run(backend: Backend, principal: Principal, bare_env: str, repo_env: str, settle: float,
                      created: list) -> None:
    seconds, workspace = await timed_create(backend, principal, bare_env, created)
    backend.record("create_engine_ready_s", seconds)
    await destroy(backend, principal, workspace.id, created)

    steps: dict[str, float] = {}
    CONTAINER_STARTS.seconds.clear()
    seconds, workspace = await timed_create(backend, principal, repo_env, created, steps)
    backend.record("create_active_s", seconds)
    backend.record("create_active_clone_s", steps.get("clone"))
    if backend.name.startswith("docker"):
        backend.record("create_active_container_start_s", next(iter(CONTAINER_STARTS.seconds), None))
    try:
        await asyncio.sleep(settle)
        roots, pgid, cgroup_key = backend.roots(workspace)
        tree = process_tree(roots, pgid)
        rss, pss = tree_memory_kib(tree)
        backend.record("idle_processes", len(tree))
        backend.record("idle_rss_kib", rss)
        backend.record("idle_pss_kib", pss)
        backend.record("idle_cgroup_kib", cgroup_memory_kib(roots[0], cgroup_key) if roots else None)
        if backend.name.startswith("docker") and roots and (shim := container_shim(roots[0])):
            backend.record("idle_shim_rss_kib", tree_memory_kib([shim])[0])  # host-side, outside the cgroup
            tree = {**tree, **process_tree([shim])}

        workspace = await backend.manager.sleep(workspace)
        left = still_alive(tree)  # the shim too, for docker
        backend.record("sleeping_processes", len(left))
        backend.record("sleeping_rss_kib", tree_memory_kib(left)[0])
        handle = backend.manager.runtime.load_state(workspace.runtime_state)
        backend.record("sleeping_disk_kib", du_kib(volume_dir(backend, handle)))
        for key, value in backend.container_facts(workspace).items():
            backend.record(f"sleeping_{key}", value)

        CONTAINER_STARTS.seconds.clear()
        started = time.monotonic()
        workspace = await backend.manager.wake(workspace)  # returns once the engine answered /health
        backend.record("wake_active_s", time.monotonic() - started)
        await backend.manager.call_engine(workspace, "GET", "/health")
        if backend.name.startswith("docker"):
            backend.record("wake_container_start_s", next(iter(CONTAINER_STARTS.seconds), None))
        assert workspace.status == "active", workspace.status
    finally:
        await destroy(backend, principal, workspace.id, created)


async def bench(names: list[str], files: int, runs: int, settle: float, directory: Path) -> dict:
    origin = await make_origin(directory / "replicas-checkout-bench", files)
    with tempfile.TemporaryDirectory(prefix="replicas-backends-", dir=directory) as scratch:
        root = Path(scratch)
        tools = TOOLS if TOOLS.is_dir() else root / "tools"
        tools.mkdir(exist_ok=True)
        settings = Settings(data_dir=root / "data", tools_dir=tools, runtime="local")
        app = create_app(settings)
        created: list = []
        proxies: list = []
        skipped: dict[str, str] = {}
        principal = None
        try:
            async with app.router.lifespan_context(app):
                async with app.state.sessions() as session:
                    org = await auth.get_or_create_organization(session, "bench")
                    key = await auth.create_org_key(session, org)
                    await session.commit()
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b",
                                             headers={"Authorization": f"Bearer {key}"}) as client:
                    repo = (await client.post("/v1/replica/repositories", json={
                        "name": "bench/big", "url": str(origin)})).json()["repository"]
                    repo_env = (await client.post("/v1/environments", json={
                        "name": "bench-repo", "repository_id": repo["id"]})).json()["environment"]["id"]
                    bare_env = (await client.post("/v1/environments", json={"name": "bench-bare"})
                                ).json()["environment"]["id"]
                principal = Principal.system(org.id)
                backends: list[Backend] = []
                for name in names:
                    chosen = (settings if name == "local" else docker_settings(settings) if name == "docker"
                              else remote_docker_settings(settings, proxies))
                    if isinstance(chosen, str):
                        skipped[name] = chosen
                        print(f"SKIP {name}: {chosen}", flush=True)
                        continue
                    backends.append(Backend(name, WorkspaceManager(chosen, app.state.sessions, app.state.box)))
                for backend in backends:
                    seconds, workspace = await timed_create(backend, principal, repo_env, created)
                    backend.results["warmup_create_active_s"] = [seconds]
                    await destroy(backend, principal, workspace.id, created)
                    print(f"[{backend.name}] warm-up workspace of {files} files active in {seconds:.2f} s", flush=True)
                for run in range(runs):
                    for backend in backends:
                        await measure_run(backend, principal, bare_env, repo_env, settle, created)
                        last = {k: v[-1] for k, v in backend.results.items() if not k.startswith("warmup")}
                        print(f"[{backend.name}] run {run + 1}: {json.dumps(last)}", flush=True)
                mirrors = settings.data_dir / "mirrors"
                mirror = du_kib(str(mirrors)) if mirrors.exists() else None
        finally:
            with contextlib.suppress(Exception):
                for backend, workspace_id in list(created):
                    await destroy(backend, principal, workspace_id, created)
            if any(name.startswith("docker") for name in names):
                await asyncio.to_thread(sweep_docker, settings.data_dir)
            for proxy in proxies:
                proxy.close()
    return {"files": files, "runs": runs, "settle_s": settle, "dir": str(directory),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "mirror_kib": mirror,
            "skipped": skipped, "backends": {b.name: b.results for b in backends}}


# -- output ----------------------------------------------------------------------------------------

def _median_min(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f} ({min(values):.2f})"


def _median(values: list, unit: float = 1.0, fmt: str = "{:.0f}") -> str:
    values = [v for v in values if v is not None]
    return fmt.format(statistics.median(values) / unit) if values else "n/a"


def table(result: dict) -> str:
    backends = result["backends"]
    names = list(backends)
    mib = 1024.0
    rows = [
        ("warm-up create -> active (first), s", lambda r: _median_min(r.get("warmup_create_active_s", []))),
        ("create -> engine ready (no repo), s", lambda r: _median_min(r["create_engine_ready_s"])),
        (f"create -> active ({result['files']} files), s", lambda r: _median_min(r["create_active_s"])),
        ("  of which mirror refresh + checkout, s", lambda r: _median_min(r["create_active_clone_s"])),
        ("  of which container create + start, s",
         lambda r: _median_min(r["create_active_container_start_s"]) if "create_active_container_start_s" in r
         else "-"),
        ("wake -> active, s", lambda r: _median_min(r["wake_active_s"])),
        ("  of which container create + start, s",
         lambda r: _median_min(r["wake_container_start_s"]) if "wake_container_start_s" in r else "-"),
        ("idle: processes", lambda r: _median(r["idle_processes"])),
        ("idle: RSS sum, MiB", lambda r: _median(r["idle_rss_kib"], mib, "{:.1f}")),
        ("idle: PSS sum, MiB", lambda r: _median(r["idle_pss_kib"], mib, "{:.1f}")),
        ("idle: cgroup memory - cache, MiB", lambda r: _median(r["idle_cgroup_kib"], mib, "{:.1f}")),
        ("idle: + containerd shim RSS, MiB",
         lambda r: _median(r["idle_shim_rss_kib"], mib, "{:.1f}") if "idle_shim_rss_kib" in r else "-"),
        ("sleeping: processes", lambda r: _median(r["sleeping_processes"])),
        ("sleeping: RSS, MiB", lambda r: _median(r["sleeping_rss_kib"], mib, "{:.1f}")),
        ("sleeping: disk (du of workspace dir), MiB", lambda r: _median(r["sleeping_disk_kib"], mib, "{:.1f}")),
        ("sleeping: container writable layer, MiB",
         lambda r: _median(r["sleeping_container_rw_kib"], mib, "{:.1f}") if "sleeping_container_rw_kib" in r
         else "-"),
    ]
    width = 44
    lines = [f"backends bench: {result['files']} files, {result['runs']} runs, dir {result['dir']}; "
             f"times are median (min)",
             f"{'':<{width}}" + "".join(f"{name:>16}" for name in names), "-" * (width + 16 * len(names))]
    for label, cell in rows:
        lines.append(f"{label:<{width}}" + "".join(f"{cell(backends[name]):>16}" for name in names))
    if result["mirror_kib"] is not None:
        lines.append(f"shared mirror of the repository (not per workspace): {result['mirror_kib'] / mib:.1f} MiB")
    for name, reason in result["skipped"].items():
        lines.append(f"{name}: SKIPPED ({reason})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="local,docker")
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds idle before memory is read")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    options = parser.parse_args()
    names = [n.strip() for n in options.backends.split(",") if n.strip()]
    unknown = set(names) - {"local", "docker", "docker-remote"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    runtime_log = logging.getLogger("replicas.runtime")
    runtime_log.addHandler(CONTAINER_STARTS)
    runtime_log.setLevel(min(runtime_log.getEffectiveLevel(), logging.INFO))


    async def run() -> dict:
        # SIGTERM cancels the bench like Ctrl-C does, so the cleanup in `bench` runs.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        return await bench(names, options.files, options.runs, options.settle, options.dir.resolve())

    result = asyncio.run(run())
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
