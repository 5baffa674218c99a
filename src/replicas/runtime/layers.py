"""Copy-on-write homes over a base snapshot (ARCHITECTURE.md, principles 6 and 9).

A base snapshot is the `home/` of a workspace disk that was provisioned and warmed once and is never started
(services/base_snapshots.py). A workspace made from it gets a home of its own in one of two ways, chosen once
per process by a probe:

- `overlay`: an overlayfs mount at `<workspace>/home`, the base's home as the lower layer and
  `<workspace>/.layer/{upper,work}` for what the workspace changes. The mount takes about a millisecond
  whatever the size of the checkouts, and nothing is copied until written. It needs the right to mount
  (a control plane running as root, as the packaged deployments do); the mount lives in the host's mount
  namespace, so the control plane, the sandbox and a container on this host all see the same tree, and it
  is made again after a reboot (`ensure_layered`).
- `copy`: where overlayfs is refused, `cp -a --reflink=auto` of the base's home (a reflink where the
  filesystem has them, a plain copy otherwise): slower, always correct.

Paths: warm hooks ran with HOME at the base's home, and what they wrote may hold that absolute path (a
virtualenv's scripts, an editable install, a tool's config). So every backend that starts a workspace from a
base also shows the workspace's home at the base's path inside the sandbox (`SandboxPolicy.aliases`, a
second bind in the container): those paths resolve to the workspace's own copy, and the base stays out of
reach.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from replicas.runtime.base import RuntimeFailure

log = logging.getLogger("replicas.runtime")

LAYER_DIR = ".layer"
OVERLAY, COPY = "overlay", "copy"
_MNT_DETACH = 2
_probe_lock = threading.Lock()
_probed: dict[str, str | None] = {}
_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return _libc


def base_home_under(base_home: str | None, workspaces_root: Path) -> Path:
    """`base_home` (from a stored handle), which must be the home of a workspace disk under `workspaces_root`:
    a runtime never layers over, nor binds, anything else."""
    base = Path(base_home or "")
    if base.name != "home" or base.parent.parent != workspaces_root or ".." in base.parts:
        raise RuntimeFailure("Invalid base snapshot", f"{base} is not a workspace home under {workspaces_root}")
    return base


def _options_safe(*paths: Path) -> bool:
    """overlayfs options are comma- and colon-separated: such a path cannot be passed (copy instead)."""
    return not any(ch in str(p) for p in paths for ch in ",:\\")


def _mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    options = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    if _c().mount(b"overlay", str(target).encode(), b"overlay", 0, options) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"overlay mount on {target}: {os.strerror(code)}")


def _unmount(target: Path) -> None:
    if _c().umount2(str(target).encode(), 0) != 0:
        code = ctypes.get_errno()
        if code == errno.EBUSY:  # a process of the workspace still holds it: detach now, freed when it lets go
            _c().umount2(str(target).encode(), _MNT_DETACH)
        elif code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, f"unmount {target}: {os.strerror(code)}")


def overlay_refusal(root: Path) -> str | None:
    """Why overlay homes cannot be mounted under `root` (None: they can). Probed once per root and process."""
    key = str(root)
    with _probe_lock:
        if key not in _probed:
            _probed[key] = _probe(root)
            if _probed[key]:
                log.info("base snapshots: overlayfs unavailable under %s (%s); homes are copied", root, _probed[key])
        return _probed[key]


def _probe(root: Path) -> str | None:
    root.mkdir(parents=True, exist_ok=True)
    if not _options_safe(root):
        return f"the path {root} has a character overlayfs options cannot carry"
    with tempfile.TemporaryDirectory(prefix=".overlay-probe-", dir=root) as scratch:
        parts = {name: Path(scratch, name) for name in ("lower", "upper", "work", "merged")}
        for path in parts.values():
            path.mkdir()
        (parts["lower"] / "probe").write_text("lower\n")
        try:
            _mount_overlay(parts["lower"], parts["upper"], parts["work"], parts["merged"])
        except OSError as exc:
            return exc.strerror or str(exc)
        try:
            (parts["merged"] / "probe").write_text("upper\n")
            ok = (parts["lower"] / "probe").read_text() == "lower\n"
        finally:
            _unmount(parts["merged"])
        return None if ok else "writes reached the lower layer"


def layer_home(base_home: Path, workspace_dir: Path) -> str:
    """Make `<workspace_dir>/home` a copy-on-write view of `base_home`: `overlay` or `copy` (which one happened).
    `workspace_dir` must not have a home yet."""
    home = workspace_dir / "home"
    home.mkdir(parents=True)
    if overlay_refusal(workspace_dir.parent) is None and _options_safe(base_home, workspace_dir):
        layer = workspace_dir / LAYER_DIR
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()
        os.chmod(layer, 0o700)  # the raw upper layer is the control plane's; the workspace sees the mount
        _mount_overlay(base_home, layer / "upper", layer / "work", home)
        return OVERLAY
    _copy_tree(base_home, home)
    return COPY


def _copy_tree(source: Path, target: Path) -> None:
    """`cp -a` (owners, modes, times, links as they are), with reflinks where the filesystem has them."""
    if shutil.which("cp"):
        result = subprocess.run(["cp", "-a", "--reflink=auto", f"{source}/.", str(target)], capture_output=True,
                                text=True, check=False)
        if result.returncode == 0:
            return
        raise OSError(f"copying the base snapshot failed: {result.stderr.strip()[:500]}")
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)


def ensure_layered(base_home: str | None, workspace_dir: str) -> None:
    """Mount a workspace's overlay home again where it is gone (after a reboot); a no-op for copied homes."""
    layer = Path(workspace_dir, LAYER_DIR)
    home = Path(workspace_dir, "home")
    if base_home and layer.is_dir() and not os.path.ismount(home):
        work = layer / "work"
        shutil.rmtree(work, ignore_errors=True)  # overlayfs wants an empty work dir of its own
        work.mkdir()
        _mount_overlay(Path(base_home), layer / "upper", work, home)


def release(workspace_dir: str) -> None:
    """Unmount a workspace's overlay home (if mounted), so that its directory can be removed."""
    home = Path(workspace_dir, "home")
    if os.path.ismount(home):
        _unmount(home)
