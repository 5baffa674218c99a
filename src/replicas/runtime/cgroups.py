"""CPU, memory and pids limits per workspace, through cgroups where this machine lets us write them.

Each workspace gets a `replicas/<workspace_id>` group, created under the control plane's own
cgroup (read from /proc/self/cgroup) so that whoever limits or accounts the control plane also
limits its workspaces. The tree's first process joins the groups before it execs, so everything it
starts is inside from the first instruction.

- cgroup v1 (a hierarchy per controller under /sys/fs/cgroup/{cpu,memory,pids}): the three groups
  get `cpu.cfs_quota_us`, `memory.limit_in_bytes` and `pids.max`.
- cgroup v2 (unified): one group with `cpu.max`, `memory.max` and `pids.max`; the controllers must be
  enabled down the tree, which works only with delegation (e.g. systemd `Delegate=yes`) or as root
  in a cgroup without processes of its own.

Where neither works (not root, v2 without delegation, a read-only /sys), `create` says so once in
the log and returns no groups: workspaces run without limits.

Under systemd, run the control plane with `KillMode=process` (or `mixed`): with the default
`control-group`, restarting the service kills the workspaces it started, which must survive it.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("replicas.runtime")

GIB = 1024**3
CPU_PERIOD_US = 100_000
CONTROLLERS = ("cpu", "memory", "pids")
GROUP_PARENT = "replicas"


@dataclass(frozen=True)
class ResourceLimits:
    cpus: int
    memory_bytes: int
    pids: int


# Workspace sizes (the API's `size`). pids counts threads too: a Node-based agent runs dozens.
SIZE_LIMITS: dict[str, ResourceLimits] = {
    "small": ResourceLimits(cpus=2, memory_bytes=4 * GIB, pids=4096),
    "large": ResourceLimits(cpus=4, memory_bytes=16 * GIB, pids=8192),
}

_said: set[str] = set()


def say_once(key: str, message: str, *args: object) -> None:
    """Log a warning the first time `key` is seen in this process, never again."""
    if key not in _said:
        _said.add(key)
        log.warning(message, *args)


def limit_files_v1(limits: ResourceLimits) -> dict[str, dict[str, str]]:
    """controller -> {file: content} for cgroup v1."""
    return {
        "cpu": {"cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(limits.cpus * CPU_PERIOD_US)},
        "memory": {"memory.limit_in_bytes": str(limits.memory_bytes)},
        "pids": {"pids.max": str(limits.pids)},
    }


def limit_files_v2(limits: ResourceLimits) -> dict[str, str]:
    """{file: content} for the one cgroup v2 group."""
    return {
        "cpu.max": f"{limits.cpus * CPU_PERIOD_US} {CPU_PERIOD_US}",
        "memory.max": str(limits.memory_bytes),
        "pids.max": str(limits.pids),
    }


def _own_cgroups(self_cgroup: str) -> dict[str, str]:
    """/proc/self/cgroup as {controller: path}; the v2 line is under the key ''."""
    own: dict[str, str] = {}
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                own[controller] = parts[2]
    return own


def _under(base: Path, cgroup_path: str) -> Path:
    return base / cgroup_path.lstrip("/")


class Cgroups:
    """Creates, lists and removes per-workspace groups; or says once why it cannot.

    `root` and `self_cgroup_file` exist for tests, which point them at a fake tree.
    """

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), self_cgroup_file: Path = Path("/proc/self/cgroup")):
        self.root = root
        self.self_cgroup_file = self_cgroup_file
        self.unavailable: str | None = None

    def create(self, workspace_id: str, limits: ResourceLimits) -> list[str]:
        """Create the workspace's groups with `limits` written; return their directories (maybe none)."""
        if self.unavailable:
            return []
        created: list[Path] = []
        try:
            if (self.root / "cgroup.controllers").exists():
                created = self._create_v2(workspace_id, limits)
            else:
                created = self._create_v1(workspace_id, limits)
        except OSError as exc:
            self.unavailable = f"{type(exc).__name__}: {exc}"
            self.remove([str(p) for p in created])
            say_once("cgroups", "cgroups not writable (%s): workspaces run without CPU/memory limits",
                      self.unavailable)
            return []
        return [str(p) for p in created]

    def _create_v1(self, workspace_id: str, limits: ResourceLimits) -> list[Path]:
        own = _own_cgroups(self.self_cgroup_file.read_text())
        groups: list[Path] = []
        files = limit_files_v1(limits)
        for controller in CONTROLLERS:
            hierarchy = self.root / controller
            if not (hierarchy / "cgroup.procs").exists():
                raise OSError(errno.ENOENT, f"no cgroup v1 hierarchy for {controller}", str(hierarchy))
            group = _under(hierarchy, own.get(controller, "/")) / GROUP_PARENT / workspace_id
            group.mkdir(parents=True, exist_ok=True)
            groups.append(group)
            for name, content in files[controller].items():
                (group / name).write_text(content)
        return groups

    def _create_v2(self, workspace_id: str, limits: ResourceLimits) -> list[Path]:
        own = _own_cgroups(self.self_cgroup_file.read_text())
        base = _under(self.root, own.get("", "/"))
        parent = base / GROUP_PARENT
        parent.mkdir(exist_ok=True)
        enable = " ".join(f"+{c}" for c in CONTROLLERS)
        for level in (base, parent):
            enabled = (level / "cgroup.subtree_control").read_text().split()
            if not set(CONTROLLERS) <= set(enabled):
                (level / "cgroup.subtree_control").write_text(enable)
        group = parent / workspace_id
        group.mkdir(exist_ok=True)
        for name, content in limit_files_v2(limits).items():
            (group / name).write_text(content)
        return [group]

    @staticmethod
    def procs_files(groups: list[str]) -> list[str]:
        return [str(Path(g) / "cgroup.procs") for g in groups]

    @staticmethod
    def members(groups: list[str]) -> set[int]:
        """Pids currently in any of the groups (a group already removed counts as empty)."""
        pids: set[int] = set()
        for group in groups:
            try:
                pids.update(int(p) for p in (Path(group) / "cgroup.procs").read_text().split())
            except (FileNotFoundError, ProcessLookupError):
                continue
        return pids

    @staticmethod
    def remove(groups: list[str], timeout: float = 2.0) -> None:
        """Remove the (emptied) groups. A group is busy for a moment after its last process exits."""
        deadline = time.monotonic() + timeout
        for group in groups:
            while True:
                try:
                    os.rmdir(group)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        log.warning("cgroup not removed group=%s error=%s", group, exc)
                        break
                    time.sleep(0.02)
