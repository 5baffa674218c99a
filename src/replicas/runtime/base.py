"""The `Runtime` interface: where and how a workspace's engine runs (ARCHITECTURE.md, principle 4).

A runtime is to us what a `Spawner` is to JupyterHub: one object per control plane, serving every
workspace through a small, JSON-able *handle* that the control plane persists in its store. A
restarted control plane rebuilds the handle with `load_state` and goes on where it left off: the
workspaces it started keep running without it.

Lifecycle of one workspace, and which calls are valid in each state::

    (nothing) --provision--> stopped --start--> running --stop--> stopped --start--> running ...
                                |                  |
                                +----destroy-------+--destroy--> missing

    poll            any time, any state, on any handle (also one built by `load_state` after a restart)
    exec            stopped or running (provisioning runs commands before the first start)
    check_isolation any time; raises when tenant code could not run isolated from this host
    engine_endpoint any time; it answers only while running and the engine has bound it
    port_endpoint   any time; it answers only while something in the workspace listens on the port

Usage::

    runtime = create_runtime(settings)
    handle = await runtime.provision("ws_123", WorkspaceSpec(size="small"))
    await runtime.start(handle, ["replicas", "engine"], env={"ANTHROPIC_API_KEY": "..."})
    store.save(workspace_id, runtime.get_state(handle))       # after every state-changing call
    ...
    handle = runtime.load_state(store.load(workspace_id))     # after a control-plane restart
    if await runtime.poll(handle) == RuntimeStatus.RUNNING:
        endpoint = runtime.engine_endpoint(handle)
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from replicas.errors import BadRequest, ReplicasError

WorkspaceSize = Literal["small", "large"]
WORKSPACE_SIZES: tuple[WorkspaceSize, ...] = ("small", "large")

# The engine listens on this socket name inside the workspace's run dir (local backend).
ENGINE_SOCKET_NAME = "engine.sock"
# Environment variables every backend sets for the engine process.
ENV_WORKSPACE_ID = "REPLICAS_WORKSPACE_ID"
ENV_ENGINE_SOCKET = "REPLICAS_ENGINE_SOCKET"
ENV_RUN_DIR = "REPLICAS_RUN_DIR"

_WORKSPACE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class RuntimeFailure(ReplicasError):
    """The backend could not do what was asked (a sandbox that would not start, a tree that would not die)."""

    status = 500
    default_message = "Workspace runtime failure"


class WorkspaceWillNotRun(RuntimeFailure):
    """`poll` or `start` found the workspace unable to run, and says why (an evicted or crash-looping pod): its
    disk is there, and a new start may succeed where the old one died. Not a failure to reach the backend."""

    default_message = "Workspace will not run"


class HomeNotProvisioned(RuntimeFailure):
    """`start` (or `exec`) found that the workspace's home never reached its disk: a backend that stages the
    home on the control plane before the first start (kubernetes) lost it with the control plane that staged it.
    Nothing was started; `provision` again stages a new one, which the caller lays out (clone, files) anew."""

    default_message = "Workspace home was never provisioned"


class SandboxUnavailable(RuntimeFailure):
    """Tenant code cannot be run isolated here (no working bubblewrap, no Docker engine). Callers that run
    tenant-supplied code refuse with this rather than run it on the control plane's host."""

    default_message = "Sandbox unavailable"


# Called with each chunk of a command's output as it arrives (`Runtime.exec(on_output=...)`).
OutputCallback = Callable[[bytes], None]


class RuntimeStatus(StrEnum):
    """What `Runtime.poll` answers."""

    RUNNING = "running"  # the engine's process tree (or container, or pod) exists
    STOPPED = "stopped"  # provisioned, disk kept, nothing running (never started, slept, or crashed)
    MISSING = "missing"  # never provisioned, or destroyed: there is nothing to start


def validate_workspace_id(workspace_id: str) -> str:
    """Workspace ids become directory, cgroup and container names: no dots, slashes or spaces."""
    if not _WORKSPACE_ID.match(workspace_id):
        raise BadRequest("Invalid workspace id", f"{workspace_id!r} must match {_WORKSPACE_ID.pattern}")
    return workspace_id


@dataclass(frozen=True)
class WorkspaceSpec:
    """What a workspace is given when it is provisioned; kept in its handle for later starts.

    `env` is persisted with the handle, so it is for plain settings only: pass secrets (API keys,
    the engine secret) to `start(..., env=...)`, which is never stored.
    `ro_binds` are host paths made visible read-only at the same path inside the sandbox, even when
    they lie in a hidden area such as the data dir: the shared agent tools directory, the Python
    environment that holds the `replicas` package.
    `base_home`: the home of a base snapshot to start from, copy-on-write (runtime/layers.py); inside the
    sandbox the workspace's home is also seen at that path. Only for a runtime whose
    `base_snapshot_refusal()` is None.
    """

    size: WorkspaceSize = "small"
    env: Mapping[str, str] = field(default_factory=dict)
    ro_binds: Sequence[str] = ()
    base_home: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", dict(self.env))
        object.__setattr__(self, "ro_binds", tuple(str(p) for p in self.ro_binds))
        if self.size not in WORKSPACE_SIZES:
            raise BadRequest("Invalid workspace size", f"{self.size!r} is not one of {WORKSPACE_SIZES}")

    def to_state(self) -> dict[str, Any]:
        return {"size": self.size, "env": dict(self.env), "ro_binds": [str(p) for p in self.ro_binds],
                "base_home": self.base_home}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> WorkspaceSpec:
        return cls(size=state.get("size", "small"), env=dict(state.get("env") or {}),
                   ro_binds=tuple(state.get("ro_binds") or ()), base_home=state.get("base_home"))


@dataclass
class WorkspaceHandle:
    """What a backend needs to find a workspace again. Each backend extends it with its own fields."""

    workspace_id: str
    spec: WorkspaceSpec


@dataclass(frozen=True)
class EngineEndpoint:
    """How the control plane reaches a workspace's engine.

    Local: `uds` is the unix socket path and `base_url` a placeholder host (`http://engine`), as
    `httpx.AsyncHTTPTransport(uds=...)` expects. Remote backends: `uds` is None and `base_url` is
    the engine's TCP address.
    """

    base_url: str
    uds: str | None = None


@dataclass(frozen=True)
class PortEndpoint:
    """Where the control plane connects to reach a port served inside the workspace."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class ExecResult:
    """The outcome of `Runtime.exec`: exit code (negative: killed by that signal), combined output."""

    exit_code: int
    output: str
    timed_out: bool = False


class Runtime(ABC):
    """A workspace backend. Every method is safe to call again after a control-plane restart.

    Implementations keep no per-workspace state in memory: everything they need is in the handle,
    and the handle is what `get_state` returns. Methods that change the handle (`start`, `stop`)
    update it in place; the caller persists `get_state(handle)` after them.

    Lifecycle calls (`start`, `stop`, `destroy`) on one workspace are not safe concurrently: the
    caller serializes them (the service holds the workspace's lease in the store, as every
    control-plane process may act on it). `poll`, `exec` and the endpoints may run alongside.
    """

    name: str = "abstract"
    # Whether a workspace clones its repositories itself, from their origins, rather than have the control plane
    # check them out from its mirrors into the home: where the home is staged here and copied to a disk of
    # another machine (Kubernetes), which can reach the origins itself. Local paths are still checked out here.
    clones_in_workspace: bool = False

    @abstractmethod
    async def provision(self, workspace_id: str, spec: WorkspaceSpec) -> WorkspaceHandle:
        """Create the workspace's disk: a home (with `workspaces/` for checkouts) and a run dir.

        Called once, before anything else. Idempotent: provisioning an existing workspace returns
        its handle and keeps its files. Starts nothing; the workspace is `stopped` afterwards.
        """

    @abstractmethod
    async def start(self, handle: WorkspaceHandle, command: Sequence[str], env: Mapping[str, str]) -> None:
        """Start the engine's process tree with `command`, detached from the control plane.

        Valid when `poll` says `stopped` (first start, or wake after `stop`); raises `Conflict` when
        the workspace is running and `NotFound` when it is missing. Returns as soon as the process
        is started, not when the engine is ready: the caller waits for the engine endpoint to
        answer. `env` is added to the spec's env and is never persisted (use it for secrets).
        The started tree outlives the control plane: a restart does not stop it.
        """

    @abstractmethod
    async def stop(self, handle: WorkspaceHandle) -> None:
        """Sleep: end the whole process tree (SIGTERM, a grace period, then SIGKILL) and keep the disk.

        Returns when no process of the workspace is left. Idempotent: stopping a stopped workspace
        (or one whose tree died by itself) only cleans up.
        """

    @abstractmethod
    async def destroy(self, handle: WorkspaceHandle) -> None:
        """Kill everything without a grace period and remove the workspace's disk. Idempotent."""

    @abstractmethod
    async def poll(self, handle: WorkspaceHandle) -> RuntimeStatus:
        """Say whether the workspace is running, stopped or missing, from the system, not from memory.

        May be called at any time: before the first start, while starting, after the tree died by
        itself, and on a handle rebuilt by `load_state` after a control-plane restart (the handle's
        process identity is checked, so a recycled pid never reads as running). Cheap enough for a
        reconcile loop. Never changes anything.
        """

    @abstractmethod
    def engine_endpoint(self, handle: WorkspaceHandle) -> EngineEndpoint:
        """Where the engine listens. Computed from the handle; valid whether or not it is running."""

    @abstractmethod
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
        """Run `argv` inside the workspace with the engine's isolation and limits; wait for it.

        Valid when stopped or running. `cwd` defaults to the workspace home. On timeout the
        command's whole tree is killed and the result says `timed_out`. Output is stdout and stderr
        interleaved, decoded as UTF-8 with replacement, and bounded (the tail is kept).
        `on_output`, when given, is called on the event loop with each raw chunk as it arrives (for
        streaming); the result still holds the bounded tail. Cancelling the call kills the command.
        """

    @abstractmethod
    async def check_isolation(self) -> None:
        """Raise `SandboxUnavailable`, saying why, when a workspace of this runtime would not be isolated
        from the control plane's host (bubblewrap missing or broken, the Docker engine unreachable).
        Code a tenant supplies (hook scripts) runs only after this passed; never on the host instead."""

    @abstractmethod
    def port_endpoint(self, handle: WorkspaceHandle, port: int) -> PortEndpoint:
        """How the control plane reaches `port` served inside the workspace (preview URLs)."""

    async def base_snapshot_refusal(self) -> str | None:
        """Why this runtime cannot start workspaces from a base snapshot (`WorkspaceSpec.base_home`); None
        when it can. Creates then take the cold path. Backends that can override this."""
        return f"the {self.name} runtime has no base snapshots"

    def starts_before_home(self, handle: WorkspaceHandle) -> bool:
        """Whether the engine may be started on a first start while the control plane still lays out the home
        (the checkouts, the files, the warm hooks): true where the home the engine sees is the directory the
        control plane writes, live. The engine then waits for the home (`EngineConfig.start_after`), and its
        start-up overlaps the checkout. The default: not on this backend."""
        return False

    async def home_ready(self, handle: WorkspaceHandle) -> None:
        """The home was laid out while the engine was already started (`starts_before_home`): make what the
        control plane wrote fit for the engine, before it is told the home is ready. `exec` does the same for
        what it runs meanwhile (the warm hooks). The default has nothing to do."""
        return None

    async def seal_base(self, handle: WorkspaceHandle) -> None:
        """Make a provisioned, warmed, never started workspace disk fit to be a base snapshot (e.g. owned by the
        user workspaces run as, so that starting from it copies nothing up). It is never written again.
        The default has nothing to do."""
        return None

    async def read_log(self, handle: WorkspaceHandle, limit: int = 2000) -> str:
        """The tail of the engine's log (what it and the runtime's wrapper wrote), for error messages.
        Backends whose disk is on this host read the handle's `log_path`; others override this."""
        path = getattr(handle, "log_path", None)
        if not path:
            return "(none)"
        try:
            with open(path, "rb") as log:
                log.seek(0, 2)
                log.seek(max(0, log.tell() - limit))
                return log.read().decode(errors="replace")
        except OSError:
            return "(unreadable)"

    @abstractmethod
    def get_state(self, handle: WorkspaceHandle) -> dict[str, Any]:
        """The handle as a small JSON-able dict, for the store. Holds no secrets (see `WorkspaceSpec`)."""

    @abstractmethod
    def load_state(self, state: Mapping[str, Any]) -> WorkspaceHandle:
        """Rebuild a handle from `get_state`'s output (e.g. after a control-plane restart)."""
