"""The `docker` backend: each workspace is a container from `settings.docker_image` (ARCHITECTURE.md, principle 4).

Disk layout: the same per-workspace directory as the local backend, under the data dir::

    workspaces/<workspace_id>/
        home/    the workspace's HOME (checkouts in `home/workspaces/<repo>`)
        run/     the engine's unix socket (`engine.sock`) and `engine.log`

That directory is the workspace's named volume (`replicas-<hash>-<id>`, local driver, bound to the
directory), mounted in the container at the *same absolute path*. So `handle.home` means the same
thing on both sides: the control plane provisions the home by writing files there before `start`,
paths it passes in the environment (system prompt, start hook, tools dir) resolve inside, and it
reaches the engine through `run/engine.sock` as with the local backend. `docker volume ls` shows the
workspace's disk; delete removes the container, the volume and the directory.

Where the engine comes from (`settings.docker_engine`):

- `image` (the default, same host and remote alike): the image's own engine, its ENTRYPOINT and CMD
  (unless `docker_engine_command` says otherwise), with the image's PATH and REPLICAS_TOOLS_DIR, so the
  agent CLIs are the image's too. Nothing of this machine is mounted: the container sees only its volume.
  `replicas images build` makes such an image. The control plane checks the protocol the engine reports
  at `/health` after each start and wake (engine_protocol.py): an image whose engine speaks another one
  is refused with a clear error, not half-used.
- `host-python` (development, same host only): the control plane's own Python runs the engine (the
  `command` passed to `start`), and `WorkspaceSpec.ro_binds` (that Python environment and the agent
  tools dir) are mounted read-only at their host paths. The container's user must be able to reach
  them: a Python under a home it cannot enter (pyenv in /root) does not start.

Either way the container does not see the data dir, the database or other workspaces.

Users: a control plane running as root runs containers as `settings.docker_user` (uid 1000) and
hands the workspace directory to that uid before each start (only entries not already owned are
changed), so files it wrote while provisioning are the agent's. A non-root control plane runs them
as its own uid, which already owns the directory.

Sleep stops the container (SIGTERM, grace, SIGKILL: with `init`, the whole pid namespace goes);
wake recreates it from the image, since its environment (secrets) changes and is never stored.
Everything is found again by the container's name, so a restarted control plane reattaches.

A remote Docker engine (`tcp://`, `ssh://`, or `settings.docker_remote`) shares no disk with the control
plane, so two things change, and a third is fixed:

- The volume is a plain named volume, mounted at the same path. Provisioning still writes the home into
  the workspace directory here, which is then only a staging area: the first `start` (or `exec`) copies it
  into the volume through the Docker API (`put_archive` on the created container, files owned by the
  agent's uid) and removes it. From then on the disk is the volume's alone. A git checkout goes as its
  `.git` and the files that differ from its index (modified, untracked); `git checkout-index`, run in a
  throwaway container of the image, writes the rest there (the bench's 10,000-file checkout: a 9.5 MB
  archive instead of 41 MB). Either way every file is then created on the Docker host's disk, which is
  where the time goes (bench/README.md).
- The engine listens on TCP and every request carries the workspace's secret. On a user network it
  listens on `docker_engine_port`, published on a free port of the Docker host; with host networking it
  binds port 0 and writes the port it got to a file in `run/`, which `start` reads through the API. The
  control plane connects to `docker_engine_address` (default: the host named in `docker_host`).
- The engine always comes from the image (`host-python` is refused: there is no Python of this machine
  to mount there).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import pwd
import struct
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from replicas.errors import Conflict, NotFound
from replicas.runtime import layers
from replicas.runtime.base import (
    ENGINE_SOCKET_NAME,
    ENV_ENGINE_SOCKET,
    ENV_RUN_DIR,
    ENV_WORKSPACE_ID,
    EngineEndpoint,
    ExecResult,
    OutputCallback,
    PortEndpoint,
    Runtime,
    RuntimeFailure,
    RuntimeStatus,
    SandboxUnavailable,
    WorkspaceHandle,
    WorkspaceSpec,
    validate_workspace_id,
)
from replicas.runtime.cgroups import SIZE_LIMITS
from replicas.runtime.local import (
    EXEC_OUTPUT_LIMIT,
    LOG_NAME,
    HostDirHandle,
    _remove_tree,
    make_workspace_dirs,
    short_socket_path,
)
from replicas.settings import Settings

log = logging.getLogger("replicas.runtime")

LABEL_WORKSPACE = "replicas.workspace_id"
LABEL_DATA_DIR = "replicas.data_dir"
_STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Runs the engine with its output appended to run/engine.log, as the local backend does.
_LOG_WRAPPER = 'exec "$@" >>"$REPLICAS_RUN_DIR/' + LOG_NAME + '" 2>&1'
_RUNNING_STATES = {"running", "restarting", "paused"}
_REMOTE_SCHEMES = {"tcp", "ssh", "http", "https"}
ENGINE_PORT_FILE = "engine.port"
# What a workspace running the image's engine takes from the image rather than from the control plane.
_IMAGE_ENV = ("PATH", "REPLICAS_TOOLS_DIR")


@dataclass
class DockerHandle(HostDirHandle):
    """Where a docker workspace lives: its directory (the volume's source), container and volume names.

    `container_id` is the last container started; `address` its IP on a user network (None with
    host networking, where its ports are the host's)."""

    container_name: str = ""
    volume: str = ""
    container_id: str | None = None
    address: str | None = None
    # Remote engines: the volume is a plain one and the engine is at engine_host:engine_port over TCP.
    remote: bool = False
    engine_host: str | None = None
    engine_port: int | None = None


class DockerRuntime(Runtime):
    """Workspaces as containers on a Docker engine (local socket, or `settings.docker_host` / DOCKER_HOST)."""

    name = "docker"

    def __init__(self, settings: Settings, *, image: str | None = None, network: str | None = None,
                 stop_grace_seconds: float = 10.0):
        self.data_dir = Path(os.path.realpath(settings.data_dir))
        self.workspaces_root = self.data_dir / "workspaces"
        self.image = image or settings.docker_image
        self.network = network or settings.docker_network
        self.docker_host = settings.docker_host
        self.engine_command = list(settings.docker_engine_command or [])
        self.engine_source = settings.docker_engine
        self.stop_grace_seconds = stop_grace_seconds
        self.start_timeout = settings.engine_start_timeout_seconds
        self.api_url = settings.docker_api_url
        docker_url = self.docker_host or os.environ.get("DOCKER_HOST") or ""
        scheme = urlparse(docker_url).scheme
        self.remote = settings.docker_remote if settings.docker_remote is not None else scheme in _REMOTE_SCHEMES
        if self.remote and self.engine_source == "host-python":
            raise RuntimeFailure("Invalid docker settings", "REPLICAS_DOCKER_ENGINE=host-python needs the Docker "
                                 "engine on this machine; a remote one runs the image's engine (`image`)")
        self.engine_address = settings.docker_engine_address or urlparse(docker_url).hostname or "127.0.0.1"
        self.engine_port = settings.docker_engine_port
        self.publish_address = settings.docker_publish_address
        self.engine_bind = settings.docker_engine_bind
        self._image_config: dict[str, Any] | None = None
        if os.geteuid() == 0 or self.remote:
            uid, _, gid = settings.docker_user.partition(":")
            self.uid, self.gid = int(uid), int(gid or uid)
        else:
            self.uid, self.gid = os.geteuid(), os.getegid()
        # Containers of control planes with different data dirs never share names on one engine.
        self.prefix = "replicas-" + hashlib.sha256(os.fsencode(str(self.data_dir))).hexdigest()[:8]
        self._client = None
        self._engine_cpus: int | None = None

    # -- the Docker client (blocking; every call goes through a worker thread) ------------------

    def client(self):
        if self._client is None:
            import docker

            try:
                # ssh:// goes through paramiko: one SSH connection, a channel per HTTP connection, with the
                # user's ~/.ssh/config (host, port, user, identity file, proxy command) and known_hosts.
                self._client = (docker.DockerClient(base_url=self.docker_host) if self.docker_host
                                else docker.from_env())
            except docker.errors.DockerException as exc:
                raise RuntimeFailure("Docker engine unreachable", str(exc)) from None
        return self._client

    def engine_cpus(self) -> int:
        """CPUs of the Docker engine's machine: a CPU limit above it is refused, so sizes are capped to it."""
        if self._engine_cpus is None:
            self._engine_cpus = int(self.client().info().get("NCPU") or 1)
        return self._engine_cpus

    def image_config(self) -> dict[str, Any]:
        """The workspace image's config (Entrypoint, Cmd, Env), read once (blocking)."""
        import docker

        if self._image_config is None:
            try:
                self._image_config = self.client().images.get(self.image).attrs.get("Config") or {}
            except docker.errors.ImageNotFound:
                raise RuntimeFailure("Workspace image not found",
                                     f"{self.image}: build it with `replicas images build`") from None
        return self._image_config

    def _image_env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.image_config().get("Env") or [] if "=" in item)

    def _image_engine(self, h: DockerHandle) -> bool:
        """Whether `h`'s engine, agent CLIs and PATH come from the image (else from this machine, mounted)."""
        return h.remote or self.engine_source == "image"

    async def _call(self, function, *args, **kwargs):
        import docker

        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except docker.errors.NotFound:
            raise
        except docker.errors.DockerException as exc:
            raise RuntimeFailure("Docker engine failure", str(exc)[:1000]) from None

    def _container(self, h: DockerHandle):
        """The workspace's container, or None (blocking)."""
        import docker

        try:
            container = self.client().containers.get(h.container_name)
        except docker.errors.NotFound:
            return None
        if container.labels.get(LABEL_WORKSPACE) != h.workspace_id:
            raise RuntimeFailure("Invalid workspace handle", f"container {h.container_name} is not this workspace's")
        return container

    # -- handles -------------------------------------------------------------------------------

    def _docker(self, handle: WorkspaceHandle) -> DockerHandle:
        if not isinstance(handle, DockerHandle):
            raise TypeError(f"not a docker workspace handle: {handle!r}")
        workspace_dir = Path(handle.workspace_dir)
        expected = f"{self.prefix}-{handle.workspace_id}"
        # The handle comes from the store: never act on anything outside our own root and names.
        if (workspace_dir.parent != self.workspaces_root or workspace_dir.name != handle.workspace_id
                or handle.container_name != expected or handle.volume != expected):
            raise RuntimeFailure("Invalid workspace handle", f"{handle.workspace_id} is not under {self.data_dir}")
        return handle

    def get_state(self, handle: WorkspaceHandle) -> dict[str, Any]:
        h = self._docker(handle)
        return {
            "backend": self.name, "version": 1, "workspace_id": h.workspace_id, "spec": h.spec.to_state(),
            "workspace_dir": h.workspace_dir, "container_name": h.container_name, "volume": h.volume,
            "container_id": h.container_id, "address": h.address, "image": self.image, "remote": h.remote,
            "engine_host": h.engine_host, "engine_port": h.engine_port,
        }

    def load_state(self, state: Mapping[str, Any]) -> DockerHandle:
        if state.get("backend") != self.name:
            raise RuntimeFailure("Invalid workspace handle", f"backend {state.get('backend')!r} is not docker")
        handle = DockerHandle(
            workspace_id=validate_workspace_id(state["workspace_id"]),
            spec=WorkspaceSpec.from_state(state.get("spec") or {}), workspace_dir=state["workspace_dir"],
            container_name=state.get("container_name", ""), volume=state.get("volume", ""),
            container_id=state.get("container_id"), address=state.get("address"),
            remote=bool(state.get("remote")), engine_host=state.get("engine_host"),
            engine_port=state.get("engine_port"),
        )
        return self._docker(handle)

    # -- lifecycle -----------------------------------------------------------------------------

    async def provision(self, workspace_id: str, spec: WorkspaceSpec) -> DockerHandle:
        validate_workspace_id(workspace_id)
        name = f"{self.prefix}-{workspace_id}"
        handle = DockerHandle(workspace_id=workspace_id, spec=spec, container_name=name, volume=name,
                              workspace_dir=str(self.workspaces_root / workspace_id), remote=self.remote)
        if self.remote and await self.poll(handle) is not RuntimeStatus.MISSING:
            return handle  # provisioned before: the disk is the volume's, no staging area again

        def make_dirs() -> None:
            if spec.base_home and not self.remote and not os.path.isdir(handle.home):
                layers.layer_home(self._base_of(spec), Path(handle.workspace_dir))
            make_workspace_dirs(handle)  # remote: the staging area, copied into the volume at first start
            self._hand_over(handle)

        await asyncio.to_thread(make_dirs)
        await self._call(self._ensure_volume, handle)
        return handle

    async def base_snapshot_refusal(self) -> str | None:
        return "a remote Docker engine shares no disk with the control plane" if self.remote else None

    def starts_before_home(self, handle: WorkspaceHandle) -> bool:
        # Same host: the volume is a bind of the workspace directory. Remote: the home is staged here and
        # copied into the volume at the first start, so it must be complete by then.
        return not self._docker(handle).remote

    async def home_ready(self, handle: WorkspaceHandle) -> None:
        # Written by the control plane after the start handed the (then empty) home over: the checkouts, the
        # files, the credentials the engine reads.
        await asyncio.to_thread(self._hand_over, self._docker(handle))

    async def seal_base(self, handle: WorkspaceHandle) -> None:
        # Owned by the container's user now, so that a workspace's start (`_hand_over`) copies nothing up.
        await asyncio.to_thread(self._hand_over, self._docker(handle))

    def _base_of(self, spec: WorkspaceSpec) -> Path:
        return layers.base_home_under(spec.base_home, self.workspaces_root)

    async def start(self, handle: WorkspaceHandle, command: Sequence[str], env: Mapping[str, str]) -> None:
        h = self._docker(handle)
        status = await self.poll(h)
        if status is RuntimeStatus.MISSING:
            raise NotFound("Workspace not found", h.workspace_id)
        if status is RuntimeStatus.RUNNING:
            raise Conflict("Workspace is already running", h.workspace_id)
        if not command and not self._image_engine(h):  # else the image's engine runs, not `command`
            raise ValueError("empty command")
        await self._call(self._remove_container, h)  # the slept one: its environment is stale
        await asyncio.to_thread(layers.ensure_layered, None if h.remote else h.spec.base_home, h.workspace_dir)
        await self._call(self._ensure_volume, h)
        await asyncio.to_thread(self._hand_over, h)
        environment = self._environment(h, env)
        if self._image_engine(h):
            config = await self._call(self.image_config)
            command = self.engine_command or [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
            if not command:
                raise RuntimeFailure("Workspace image has no engine command",
                                     f"{self.image} has no CMD; set REPLICAS_DOCKER_ENGINE_COMMAND")
        if h.remote:
            port_file = os.path.join(h.run_dir, f"{ENGINE_PORT_FILE}.{uuid.uuid4().hex[:12]}")
            host_network = self.network == "host"
            environment.update({
                "REPLICAS_ENGINE_TCP": f"{self.engine_bind}:0" if host_network else f"0.0.0.0:{self.engine_port}",
                "REPLICAS_ENGINE_PORT_FILE": port_file})
        argv = ["/bin/sh", "-c", _LOG_WRAPPER, "sh", *(self.engine_command or command)]
        started = time.monotonic()
        container = await self._call(self._run_container, h, argv, environment, h.container_name)
        h.container_id = container.id
        h.address = None if self.network == "host" else _address(container.attrs, self.network)
        if h.remote:
            h.engine_host = self.engine_address
            h.engine_port = (await self._read_port_file(h, container, port_file) if self.network == "host"
                             else _published_port(container.attrs, self.engine_port))
        log.info("workspace started workspace_id=%s container=%s in %.2fs", h.workspace_id, container.short_id,
                 time.monotonic() - started)

    async def stop(self, handle: WorkspaceHandle) -> None:
        h = self._docker(handle)

        def stop() -> None:
            container = self._container(h)
            if container is not None and container.status in _RUNNING_STATES:
                container.stop(timeout=int(self.stop_grace_seconds))
                container.wait(timeout=60)

        await self._call(stop)
        log.info("workspace stopped workspace_id=%s", h.workspace_id)

    async def destroy(self, handle: WorkspaceHandle) -> None:
        h = self._docker(handle)

        def destroy() -> None:
            import docker

            self._remove_container(h)
            for container in self.client().containers.list(all=True, filters={"label": [
                    f"{LABEL_WORKSPACE}={h.workspace_id}", f"{LABEL_DATA_DIR}={self.data_dir}"]}):
                container.remove(force=True)  # exec helpers left by a killed control plane
            try:
                self.client().volumes.get(h.volume).remove(force=True)
            except docker.errors.NotFound:
                pass

        await self._call(destroy)
        await asyncio.to_thread(layers.release, h.workspace_dir)
        await asyncio.to_thread(_remove_tree, Path(h.workspace_dir))  # remote: a staging area never used
        log.info("workspace destroyed workspace_id=%s", h.workspace_id)

    async def poll(self, handle: WorkspaceHandle) -> RuntimeStatus:
        h = self._docker(handle)
        if not await self._exists(h):
            return RuntimeStatus.MISSING
        container = await self._call(self._container, h)
        running = container is not None and container.status in _RUNNING_STATES
        return RuntimeStatus.RUNNING if running else RuntimeStatus.STOPPED

    def engine_endpoint(self, handle: WorkspaceHandle) -> EngineEndpoint:
        h = self._docker(handle)
        if h.remote:
            host = h.engine_host or self.engine_address
            return EngineEndpoint(base_url=f"http://{_url_host(host)}:{h.engine_port or self.engine_port}")
        return EngineEndpoint(base_url="http://engine", uds=short_socket_path(h.run_dir, ENGINE_SOCKET_NAME))

    def port_endpoint(self, handle: WorkspaceHandle, port: int) -> PortEndpoint:
        # Host networking: the container's ports are the Docker host's. A user network: the container's
        # address (reachable from a control plane on that network, as in compose.yaml).
        h = self._docker(handle)
        if h.address:
            return PortEndpoint(host=h.address, port=port)
        return PortEndpoint(host=(h.engine_host or self.engine_address) if h.remote else "127.0.0.1", port=port)

    async def read_log(self, handle: WorkspaceHandle, limit: int = 2000) -> str:
        h = self._docker(handle)
        if not h.remote:
            return await super().read_log(h, limit)

        def read() -> str:
            container = self._container(h)
            if container is None:
                return "(none)"
            data = self._read_file(container, os.path.join(h.run_dir, LOG_NAME))
            return "(none)" if data is None else data[-limit:].decode(errors="replace")

        return await self._call(read)

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
        """In the running container (`docker exec`), else in a throwaway container with the same mounts
        and limits. `timeout` (coreutils) kills the command's process group when time is up."""
        h = self._docker(handle)
        if not await self._exists(h):
            raise NotFound("Workspace not found", h.workspace_id)
        if not argv:
            raise ValueError("empty command")
        seconds = max(1, int(timeout + 0.999))
        command = ["timeout", "--kill-after=2", str(seconds), *argv]
        environment = self._environment(h, env or {})
        cwd = cwd or h.home
        started = time.monotonic()
        # The blocking reads run in a worker thread; each chunk is handed back to the event loop.
        loop = asyncio.get_running_loop()
        on_chunk = None if on_output is None else (lambda chunk: loop.call_soon_threadsafe(on_output, chunk))
        container = await self._call(self._container, h)
        if container is not None and container.status == "running":
            # What the control plane wrote since the start (a warm hook's script, the checkouts of an engine
            # started before its home: `starts_before_home`) is handed over first, as for a throwaway container.
            await asyncio.to_thread(self._hand_over, h)
            code, output = await self._call(self._exec_in, container, command, environment, cwd, on_chunk)
        else:
            await asyncio.to_thread(layers.ensure_layered, None if h.remote else h.spec.base_home, h.workspace_dir)
            await asyncio.to_thread(self._hand_over, h)
            code, output = await self._call(self._exec_aside, h, command, environment, cwd, seconds + 30, on_chunk)
        timed_out = code in (124, 137) and time.monotonic() - started >= timeout
        if code is None:
            code, timed_out = -9, True
        return ExecResult(exit_code=code, output=output[-EXEC_OUTPUT_LIMIT:].decode(errors="replace"),
                          timed_out=timed_out)

    async def check_isolation(self) -> None:
        def ping() -> None:
            self.client().ping()
            self.image_config()

        try:
            await self._call(ping)
        except RuntimeFailure as exc:
            raise SandboxUnavailable("Sandbox unavailable", f"{exc.error}: {exc.details}") from None

    async def _exists(self, h: DockerHandle) -> bool:
        """Provisioned and not destroyed: its volume (remote) or its directory here."""
        return await self._call(self._volume_exists, h) if h.remote else os.path.isdir(h.workspace_dir)

    # -- internals (blocking) ------------------------------------------------------------------

    def _volume_exists(self, h: DockerHandle) -> bool:
        import docker

        try:
            self.client().volumes.get(h.volume)
            return True
        except docker.errors.NotFound:
            return False

    def _ensure_volume(self, h: DockerHandle) -> None:
        if self._volume_exists(h):
            return
        # Same host: the volume is the workspace directory of the data dir. Remote: a plain volume.
        options = {} if h.remote else {"driver_opts": {"type": "none", "o": "bind", "device": h.workspace_dir}}
        self.client().volumes.create(name=h.volume, driver="local", **options,
                                     labels={LABEL_WORKSPACE: h.workspace_id, LABEL_DATA_DIR: str(self.data_dir)})

    def _upload_staging(self, h: DockerHandle, container) -> None:
        """Remote: copy what provisioning staged in the workspace directory into the volume (through
        `container`, created and not started, which mounts it), owned by the agent; then drop the staging."""
        staging = Path(h.workspace_dir)
        if not h.remote or not staging.is_dir():
            return

        # Checkouts go as their .git plus what differs from it; git writes the rest inside (far fewer
        # files through the API: a 10,000-file checkout is a pack, an index and a list).
        started = time.monotonic()
        restores = _checkout_restores(staging, os.path.join("home", "workspaces"))
        left_out = {name for listing in restores.values() for name in listing}

        def owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            if info.name in left_out:
                return None
            info.uid, info.gid, info.uname, info.gname = self.uid, self.gid, "", ""
            return info

        lists: list[tuple[str, str]] = []  # (checkout, list of its files to write), in the container
        with tempfile.TemporaryFile() as spool:
            with tarfile.open(fileobj=spool, mode="w") as tar:
                for entry in sorted(staging.iterdir()):
                    tar.add(entry, arcname=entry.name, filter=owned)
                for index, (checkout, names) in enumerate(sorted(restores.items())):
                    prefix = checkout + "/"
                    data = b"".join(os.fsencode(name[len(prefix):]) + b"\0" for name in names)
                    listing = os.path.join("run", f".checkout-{index}.list")
                    info = owned(tarfile.TarInfo(listing))
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                    lists.append((os.path.join(h.workspace_dir, checkout), os.path.join(h.workspace_dir, listing)))
            spool.seek(0)
            if not container.put_archive(h.workspace_dir, spool):
                raise RuntimeFailure("Workspace upload failed", f"{h.workspace_id}: put_archive refused")
        uploaded = time.monotonic()
        _remove_tree(staging)
        if lists:
            script = ('while [ $# -gt 0 ]; do git -C "$1" checkout-index -f -z --stdin < "$2" && rm -f "$2" '
                      '&& { git -C "$1" update-index -q --refresh >/dev/null; true; } || exit 1; shift 2; done')
            command = ["sh", "-c", script, "sh", *(path for pair in lists for path in pair)]
            code, output = self._exec_aside(h, command, self._environment(h, {}), h.home, 600)
            if code != 0:
                raise RuntimeFailure("Workspace checkout failed", f"{h.workspace_id}: git checkout-index: "
                                     f"{output[-1000:].decode(errors='replace')}")
        log.info("workspace uploaded workspace_id=%s files_left_to_git=%d upload=%.2fs checkouts=%.2fs",
                 h.workspace_id, len(left_out), uploaded - started, time.monotonic() - uploaded)

    def _read_file(self, container, path: str) -> bytes | None:
        """A file of the container (its volume included, running or not) through the API; None if absent."""
        import docker

        try:
            chunks, _ = container.get_archive(path)
        except docker.errors.NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.next()
            extracted = tar.extractfile(member) if member is not None else None
            return extracted.read() if extracted is not None else None

    async def _read_port_file(self, h: DockerHandle, container, path: str) -> int:
        """The port a remote engine with host networking bound (port 0), once it has written it."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            data = await self._call(self._read_file, container, path)
            if data and data.strip().isdigit():
                return int(data)
            await self._call(container.reload)
            if container.status not in _RUNNING_STATES or time.monotonic() > deadline:
                raise RuntimeFailure("Workspace engine did not start",
                                     f"no port from the engine ({container.status}); engine log: "
                                     f"{await self.read_log(h)}")
            await asyncio.sleep(0.05)

    def _remove_container(self, h: DockerHandle) -> None:
        import docker

        container = self._container(h)
        if container is not None:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass

    def _hand_over(self, h: DockerHandle) -> None:
        """Give `home/` and `run/` to the container's user (root control plane only). The workspace directory
        itself stays root's, traversable only (0711), so inside the container the agent can write its home and
        the engine its run dir, and nothing beside them, as in the local sandbox. Remote: the upload sets the
        owners instead."""
        if os.geteuid() != 0 or h.remote:
            return
        os.chown(h.workspace_dir, 0, 0)  # also taking back one handed over whole by an earlier version
        os.chmod(h.workspace_dir, 0o711)
        for top in (h.home, h.run_dir):
            for root, dirs, files in os.walk(top):
                for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
                    st = os.lstat(name)
                    if (st.st_uid, st.st_gid) != (self.uid, self.gid):
                        os.lchown(name, self.uid, self.gid)

    def _container_options(self, h: DockerHandle, environment: Mapping[str, str], cwd: str) -> dict[str, Any]:
        from docker.types import Mount

        limits = SIZE_LIMITS[h.spec.size]
        mounts = [Mount(target=h.workspace_dir, source=h.volume, type="volume", no_copy=True)]
        seen = {h.workspace_dir}
        if h.spec.base_home and not h.remote:
            # The home is an overlay mounted on this host, which the volume's plain bind does not carry: bind it
            # in itself, and again at the base's path, where warmed files point (runtime/layers.py).
            for target in (h.home, str(self._base_of(h.spec))):
                mounts.append(Mount(target=target, source=h.home, type="bind"))
                seen.add(target)
        for path in () if self._image_engine(h) else h.spec.ro_binds:  # else the image has what the engine runs
            real = os.path.realpath(path)
            if os.path.exists(real) and real not in seen:
                seen.add(real)
                mounts.append(Mount(target=real, source=real, type="bind", read_only=True))
        return {
            "environment": dict(environment), "user": f"{self.uid}:{self.gid}", "working_dir": cwd,
            "mounts": mounts, "network_mode": self.network, "init": True, "privileged": False,
            "cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"], "pids_limit": limits.pids,
            "nano_cpus": min(limits.cpus, self.engine_cpus()) * 1_000_000_000, "mem_limit": limits.memory_bytes,
            "memswap_limit": limits.memory_bytes, "labels": {LABEL_WORKSPACE: h.workspace_id,
                                                             LABEL_DATA_DIR: str(self.data_dir)},
            "stop_signal": "SIGTERM", "hostname": h.workspace_id[:63] if self.network != "host" else None,
        }

    def _run_container(self, h: DockerHandle, argv: list[str], environment: Mapping[str, str], name: str):
        import docker

        options = self._container_options(h, environment, h.home)
        if options["hostname"] is None:
            del options["hostname"]
        if h.remote and self.network != "host":
            options["ports"] = {f"{self.engine_port}/tcp": (self.publish_address, None)}
        # Our argv goes in as the entrypoint: an image's ENTRYPOINT wraps neither it nor a hook's command
        # (with the image's engine, `start` puts that ENTRYPOINT in front of its CMD itself).
        try:
            container = self.client().containers.create(self.image, entrypoint=argv, name=name, detach=True,
                                                        **options)
        except docker.errors.ImageNotFound:
            raise RuntimeFailure("Workspace image not found",
                                 f"{self.image}: build it with `replicas images build`") from None
        try:
            self._upload_staging(h, container)
            container.start()
            container.reload()
        except BaseException:
            container.remove(force=True)
            raise
        return container

    def _exec_in(self, container, command: list[str], environment: Mapping[str, str],
                 cwd: str, on_chunk: OutputCallback | None = None) -> tuple[int | None, bytes]:
        api = self.client().api
        exec_id = api.exec_create(container.id, command, stdout=True, stderr=True, environment=dict(environment),
                                  workdir=cwd, user=f"{self.uid}:{self.gid}")["Id"]
        output = _exec_output(api, exec_id, on_chunk)
        return api.exec_inspect(exec_id).get("ExitCode"), output

    def _exec_aside(self, h: DockerHandle, command: list[str], environment: Mapping[str, str], cwd: str,
                    wait_seconds: float, on_chunk: OutputCallback | None = None) -> tuple[int | None, bytes]:
        import requests

        name = f"{h.container_name}-exec-{uuid.uuid4().hex[:8]}"
        options = self._container_options(h, environment, cwd)
        options.pop("hostname")
        container = self.client().containers.create(self.image, entrypoint=command, name=name, detach=True,
                                                    **options)
        try:
            self._upload_staging(h, container)
            container.start()
            if on_chunk is not None:  # follow the output as it comes; it ends when the container does
                for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=True):
                    on_chunk(chunk)
            try:
                code = container.wait(timeout=wait_seconds).get("StatusCode")
            except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
                container.kill()
                code = None
            return code, container.logs(stdout=True, stderr=True)
        finally:
            container.remove(force=True)

    def _environment(self, h: DockerHandle, extra: Mapping[str, str]) -> dict[str, str]:
        """The container's whole environment: nothing of the control plane's own but PATH and the locale."""
        path = os.environ.get("PATH", os.defpath)
        image_engine = self._image_engine(h)
        if self.engine_command or image_engine:
            path = _STANDARD_PATH
        elif os.path.dirname(sys.executable) not in path.split(os.pathsep):
            path = os.path.dirname(sys.executable) + os.pathsep + path
        env = {"PATH": path + os.pathsep + _STANDARD_PATH, "LANG": os.environ.get("LANG", "C.UTF-8")}
        env.update(h.spec.env)
        env.update(extra)
        if self.api_url:  # the control plane as the container reaches it, not as this process listens
            env["REPLICAS_API_URL"] = self.api_url
        if image_engine:  # this machine's tools dir is not mounted: only the image's can be meant
            image_env = self._image_env()
            env.pop("REPLICAS_TOOLS_DIR", None)
            env.update({name: image_env[name] for name in _IMAGE_ENV if name in image_env})
        user = "replicas" if os.geteuid() == 0 or h.remote else pwd.getpwuid(self.uid).pw_name
        env.update({"HOME": h.home, "USER": user, "LOGNAME": user, ENV_WORKSPACE_ID: h.workspace_id,
                    ENV_RUN_DIR: h.run_dir, ENV_ENGINE_SOCKET: os.path.join(h.run_dir, ENGINE_SOCKET_NAME)})
        return env


def _address(attrs: Mapping[str, Any], network: str) -> str | None:
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    entry = networks.get(network) or next(iter(networks.values()), None) or {}
    return entry.get("IPAddress") or None


def _published_port(attrs: Mapping[str, Any], port: int) -> int:
    bindings = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []
    if not bindings:
        raise RuntimeFailure("Workspace engine port not published", f"{port}/tcp has no binding on the Docker host")
    return int(bindings[0]["HostPort"])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _exec_output(api, exec_id: str, on_chunk: OutputCallback | None = None) -> bytes:
    """Start exec `exec_id` attached and read its multiplexed output to the end.

    Not `api.exec_start`: that reads the frames from the raw socket under the HTTP response, which loses
    whatever the response's buffered reader took in with the upgrade's headers. Over TCP (a remote engine)
    the first frames often arrive in that same read, and the output then comes back empty. The frames are
    read here through that buffered reader instead."""
    response = api._post_json(api._url("/exec/{0}/start", exec_id), data={"Tty": False, "Detach": False},
                              headers={"Connection": "Upgrade", "Upgrade": "tcp"}, stream=True)
    try:
        api._raise_for_status(response)
        reader = response.raw._fp.fp
        output = bytearray()
        while len(header := _read_exactly(reader, 8)) == 8:
            frame = _read_exactly(reader, struct.unpack(">BxxxL", header)[1])
            if on_chunk is not None:
                on_chunk(frame)
            output += frame
        return bytes(output)
    finally:
        response.close()


def _read_exactly(reader, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = reader.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _checkout_restores(staging: Path, checkouts: str) -> dict[str, list[str]]:
    """Per git checkout under `staging/checkouts` (by its path relative to `staging`): its tracked files that
    match the index, which `git checkout-index` can write again from `.git` (paths relative to `staging`).
    Modified and untracked files are not among them: those travel as they are."""
    import subprocess

    restores: dict[str, list[str]] = {}
    root = staging / checkouts
    for checkout in sorted(root.iterdir()) if root.is_dir() else ():
        if not (checkout / ".git").is_dir() or checkout.is_symlink():
            continue

        def files(*args: str, where: Path = checkout) -> set[str] | None:
            done = subprocess.run(["git", "-C", str(where), "ls-files", "-z", *args], capture_output=True,
                                  timeout=120, check=False)
            return set(os.fsdecode(done.stdout).split("\0")) - {""} if done.returncode == 0 else None

        tracked, changed = files("--cached"), files("--modified", "--deleted")
        if tracked is None or changed is None:
            continue
        relative = str(checkout.relative_to(staging))
        restores[relative] = sorted(f"{relative}/{name}" for name in tracked - changed
                                    if (checkout / name).is_file() or (checkout / name).is_symlink())
    return {checkout: names for checkout, names in restores.items() if names}
