"""A Docker engine and a test base image for the docker-backed tests, made here when this machine allows.

No image registry is reachable from the test machines, so the base image is built locally with
mmdebstrap and `docker import` (ARCHITECTURE.md, principle 4), once, and cached by its tag.

Both helpers return None when ready, or a reason string to `pytest.skip` with; they never raise::

    reason = ensure_dockerd() or ensure_base_image()
    if reason:
        pytest.skip(reason)
    image = BASE_IMAGE_TAG

`ensure_base_image_tag()` returns `(tag, None)` or `(None, reason)` for callers that want the tag, and so do
the images built on the base: `ensure_remote_image` (our source and Claude Code, for a remote Docker engine),
`ensure_workspace_image` (what `replicas images build` makes, as the README says) and `ensure_derived_image`
(a few Dockerfile lines, e.g. a stand-in engine). Each is tagged by the content it is built from, so a run
reuses what an earlier one built until that content changes.
Set `REPLICAS_TEST_DOCKER=0` to skip every docker test on purpose.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time

BASE_IMAGE_TAG = "replicas-test-base:bookworm-2"
# uid 1000 gets a passwd entry (Node's os.userInfo() and git want one); /root is made traversable so
# that a host Python under /root (pyenv) can be bind-mounted at its own path and run as that user.
_MMDEBSTRAP_ARGS = [
    "--variant=minbase", "--include=git,ca-certificates,python3,python3-venv,nodejs,npm",
    "--customize-hook=chroot \"$1\" useradd --uid 1000 --create-home --home-dir /home/replicas replicas",
    "--customize-hook=chmod 755 \"$1/root\"",
    "bookworm",
]
DOCKERD_LOG = "/tmp/dockerd.log"


class _MachineLock:
    """Re-entrant across threads of this process and exclusive across processes of this machine (pytest-xdist
    workers): one image build at a time, and a second worker finds the first one's image instead of building
    it again."""

    def __init__(self, path: str):
        self.path, self.thread_lock, self.depth, self.file = path, threading.RLock(), 0, None

    def __enter__(self) -> _MachineLock:
        import fcntl

        self.thread_lock.acquire()
        if self.depth == 0:
            self.file = open(self.path, "a+")  # noqa: SIM115 - held until the outermost exit
            fcntl.flock(self.file, fcntl.LOCK_EX)
        self.depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0 and self.file is not None:
            self.file.close()  # releases the flock
            self.file = None
        self.thread_lock.release()


_lock = _MachineLock(os.path.join(tempfile.gettempdir(), "replicas-tests-docker.lock"))
_results: dict[str, str | None] = {}


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _docker_answers() -> bool:
    try:
        return _run(["docker", "info", "--format", "{{.ServerVersion}}"], 20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _apt_install(packages: list[str]) -> str | None:
    if os.geteuid() != 0:
        return f"{' '.join(packages)} missing and not root to install them"
    if shutil.which("apt-get") is None:
        return f"{' '.join(packages)} missing and no apt-get to install them"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                              capture_output=True, text=True, timeout=600, env=env, check=False)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=300, env=env, check=False)
            done = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                                  capture_output=True, text=True, timeout=600, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"apt-get install {' '.join(packages)} failed: {exc}"
    if done.returncode != 0:
        return f"apt-get install {' '.join(packages)} failed: {done.stderr.strip()[-300:]}"
    return None


def _ensure_dockerd() -> str | None:
    if os.environ.get("REPLICAS_TEST_DOCKER") == "0":
        return "docker tests disabled (REPLICAS_TEST_DOCKER=0)"
    if shutil.which("docker") and _docker_answers():
        return None
    if os.environ.get("DOCKER_HOST"):
        return f"the Docker engine at DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer `docker info`"
    missing = [pkg for pkg, binary in (("docker.io", "dockerd"),) if shutil.which(binary) is None]
    if missing and (reason := _apt_install(missing)):
        return reason
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    if os.geteuid() != 0:
        return "dockerd is not running and starting it needs root"
    with open(DOCKERD_LOG, "ab") as out:
        subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if os.path.exists("/var/run/docker.sock") and _docker_answers():
            return None
        time.sleep(0.5)
    try:
        with open(DOCKERD_LOG, errors="replace") as f:
            tail = f.read()[-400:]
    except OSError:
        tail = ""
    return f"dockerd did not come up within 60 s: {tail.strip()}"


def _ensure_base_image() -> str | None:
    if reason := ensure_dockerd():
        return reason
    if _run(["docker", "image", "inspect", BASE_IMAGE_TAG], 30).returncode == 0:
        return None
    return import_rootfs(BASE_IMAGE_TAG, _MMDEBSTRAP_ARGS)


def import_rootfs(tag: str, mmdebstrap_args: list[str]) -> str | None:
    """Make image `tag` from a Debian tree: `mmdebstrap ARGS rootfs.tar`, then `docker import`. None, or why not."""
    if shutil.which("mmdebstrap") is None and (reason := _apt_install(["mmdebstrap"])):
        return reason
    with tempfile.TemporaryDirectory(prefix="replicas-rootfs-") as tmp:
        tar = os.path.join(tmp, "rootfs.tar")
        try:
            built = _run(["mmdebstrap", *mmdebstrap_args, tar], 900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"mmdebstrap for {tag} failed: {exc}"
        if built.returncode != 0:
            return f"mmdebstrap for {tag} failed (is a Debian mirror reachable?): {built.stderr.strip()[-400:]}"
        imported = _run(["docker", "import", tar, tag], 300)
        if imported.returncode != 0:
            return f"docker import {tag} failed: {imported.stderr.strip()[-400:]}"
    return None


def ensure_dockerd() -> str | None:
    """None when a Docker engine answers (starting Debian's dockerd, installed if need be); else why not."""
    with _lock:
        if "dockerd" not in _results:
            _results["dockerd"] = _ensure_dockerd()
        return _results["dockerd"]


def ensure_base_image() -> str | None:
    """None when `BASE_IMAGE_TAG` exists (built with mmdebstrap and imported, once); else why not."""
    if reason := ensure_dockerd():
        return reason
    with _lock:
        if "image" not in _results:
            _results["image"] = _ensure_base_image()
        return _results["image"]


def ensure_base_image_tag() -> tuple[str | None, str | None]:
    """(tag, None) when the base image is ready, (None, reason) otherwise."""
    reason = ensure_base_image()
    return (None, reason) if reason else (BASE_IMAGE_TAG, None)


class DockerTcpProxy:
    """`tcp://127.0.0.1:PORT` in front of the local Docker socket: a Docker engine that, to the control plane,
    is remote (it shares no disk and no unix socket with it), while everything stays on loopback.
    Bytes are passed through both ways, so hijacked connections (exec, attach) work too."""

    def __init__(self, socket_path: str = "/var/run/docker.sock"):
        import socketserver

        target = socket_path

        class Pipe(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    upstream.connect(target)
                except OSError:
                    return
                def pump(src: socket.socket, dst: socket.socket) -> None:
                    # One direction; its end is passed on as a half-close, the other direction goes on.
                    try:
                        while data := src.recv(65536):
                            dst.sendall(data)
                    except OSError:
                        pass
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass

                back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
                back.start()
                pump(self.request, upstream)
                back.join()
                upstream.close()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Pipe)
        self.url = f"tcp://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# A workspace image that carries the engine and the Claude Code CLI itself, for the remote path (which
# mounts nothing of this machine): Debian's python3 (3.11, the same ABI as ours) runs our package and the
# test venv's dependencies from /opt/replicas-test, as the real image runs them from /opt/replicas.
REMOTE_IMAGE_REPO = "replicas-test-remote-2"
_REMOTE_ROOT = "/opt/replicas-test"


def _tree_key(*paths: str, contents: bool) -> str:
    digest = hashlib.sha256()
    for root in paths:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                digest.update(os.path.relpath(full, root).encode())
                if contents:
                    with open(full, "rb") as f:
                        digest.update(f.read())
                else:
                    digest.update(str(os.lstat(full).st_size).encode())
    return digest.hexdigest()[:12]


def _docker_build(tag: str, dockerfile: str, files: dict[str, str]) -> str | None:
    """`docker build` of a context made of `files` (arcname -> host path) and `dockerfile`."""
    with tempfile.TemporaryFile() as spool:
        with tarfile.open(fileobj=spool, mode="w") as tar:
            data = dockerfile.encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            for arcname, path in files.items():
                tar.add(path, arcname=arcname,
                        filter=lambda i: None if "__pycache__" in i.name or "__editable__" in i.name else i)
        spool.seek(0)
        try:
            done = subprocess.run(["docker", "build", "-q", "-t", tag, "-"], stdin=spool, capture_output=True,
                                  timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"docker build {tag} failed: {exc}"
    return None if done.returncode == 0 else f"docker build {tag} failed: {done.stderr.decode()[-400:]}"


def _ensure_remote_image(tools_dir: str) -> tuple[str | None, str | None]:
    import sysconfig

    if reason := ensure_base_image():
        return None, reason
    site_packages = sysconfig.get_paths()["purelib"]
    claude = os.path.join(tools_dir, "claude")
    if not os.path.isdir(claude):
        return None, f"no Claude Code CLI in {tools_dir}"
    deps_tag = f"{REMOTE_IMAGE_REPO}:deps-{_tree_key(site_packages, claude, contents=False)}"
    if _run(["docker", "image", "inspect", deps_tag], 30).returncode != 0:
        reason = _docker_build(deps_tag, f"FROM {BASE_IMAGE_TAG}\n"
                                         f"COPY site-packages {_REMOTE_ROOT}/site-packages\n"
                                         f"COPY claude {_REMOTE_ROOT}/tools/claude\n"
                                         f"RUN python3 -m compileall -q {_REMOTE_ROOT}/site-packages\n",
                               {"site-packages": site_packages, "claude": claude})
        if reason:
            return None, reason
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "replicas")
    tag = f"{REMOTE_IMAGE_REPO}:{_tree_key(src, contents=True)}-{deps_tag.rsplit('-', 1)[1]}"
    if _run(["docker", "image", "inspect", tag], 30).returncode != 0:
        reason = _docker_build(tag, f"FROM {deps_tag}\n"
                                    f"COPY replicas {_REMOTE_ROOT}/src/replicas\n"
                                    f"RUN python3 -m compileall -q {_REMOTE_ROOT}/src\n"
                                    f"ENV PYTHONPATH={_REMOTE_ROOT}/src:{_REMOTE_ROOT}/site-packages "
                                    f"REPLICAS_TOOLS_DIR={_REMOTE_ROOT}/tools "
                                    f"PATH=/usr/local/bin:/usr/bin:/bin\n"
                                    'CMD ["/usr/bin/python3", "-m", "replicas.engine.main"]\n',
                               {"replicas": src})
        if reason:
            return None, reason
    return tag, None


def ensure_remote_image(tools_dir: str) -> tuple[str | None, str | None]:
    """(tag, None) for a workspace image with the engine and Claude Code inside, or (None, reason)."""
    with _lock:
        key = f"remote:{tools_dir}"
        if key not in _results:
            tag, reason = _ensure_remote_image(str(tools_dir))
            _results[key] = reason
            _results[key + ":tag"] = tag
        return _results.get(key + ":tag"), _results[key]


def ensure_derived_image(repo: str, dockerfile_body: str, files: dict[str, str] | None = None,
                         ) -> tuple[str | None, str | None]:
    """(tag, None) for a small image FROM the base image with `dockerfile_body` (and `files`, arcname ->
    host path), built once and tagged `repo:<content key>`; or (None, reason)."""
    if reason := ensure_base_image():
        return None, reason
    digest = hashlib.sha256(f"{BASE_IMAGE_TAG}\n{dockerfile_body}".encode())
    for arcname, path in sorted((files or {}).items()):
        digest.update(arcname.encode() + b"\0")
        if os.path.isdir(path):  # a tools dir: its names and sizes (an install changes them), not 400 MB read
            digest.update(_tree_key(path, contents=False).encode())
        else:
            with open(path, "rb") as f:
                digest.update(f.read())
    tag = f"{repo}:{digest.hexdigest()[:12]}"
    with _lock:
        if _run(["docker", "image", "inspect", tag], 30).returncode != 0:
            if reason := _docker_build(tag, f"FROM {BASE_IMAGE_TAG}\n{dockerfile_body}", files or {}):
                return None, reason
    return tag, None


# The workspace image as the README makes it: `replicas images build` (images/workspace/Dockerfile), its engine
# in /opt/replicas and its CMD the engine. Two things differ, both to build without a registry: the base is the
# mmdebstrap one with /root made private again (as in debian:bookworm-slim, where the control plane's Python
# under /root is out of reach of uid 1000), and the pinned Claude Code CLI (the test cache's, the version
# `replicas agents install` pins) is already in $REPLICAS_TOOLS_DIR there, so `--no-agents` is passed instead of
# downloading every agent again. Tagged by content: a run reuses the image until the sources change.
WORKSPACE_IMAGE_REPO = "replicas-test-workspace"
EXTRA_CA_DIR = "/usr/local/share/ca-certificates"


def extra_ca_certs() -> str:
    """The CA certificates added to this machine's trust store (a TLS-intercepting proxy's), for image builds."""
    found = []
    for root, _, names in sorted(os.walk(EXTRA_CA_DIR)) if os.path.isdir(EXTRA_CA_DIR) else ():
        for name in sorted(names):
            if name.endswith(".crt"):
                with open(os.path.join(root, name)) as f:
                    found.append(f.read())
    return "".join(found)


def _ensure_workspace_image(tools_dir: str) -> tuple[str | None, str | None]:
    import sys

    claude = os.path.join(tools_dir, "claude")
    if not os.path.isdir(claude):
        return None, f"no Claude Code CLI in {tools_dir}"
    base, reason = ensure_derived_image("replicas-test-slim", "RUN chmod 700 /root\n"
                                        "COPY claude /opt/replicas/tools/claude\n", {"claude": claude})
    if reason:
        return None, reason
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha256(base.encode())
    for name in ("images/workspace/Dockerfile", "pyproject.toml", "README.md", ".dockerignore"):
        with open(os.path.join(repo_root, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    digest.update(_tree_key(os.path.join(repo_root, "src", "replicas"), contents=True).encode())
    tag = f"{WORKSPACE_IMAGE_REPO}:{digest.hexdigest()[:12]}"
    if _run(["docker", "image", "inspect", tag], 30).returncode == 0:
        return tag, None
    argv = [sys.executable, "-m", "replicas.cli.main", "images", "build", "--no-agents", "--base", base,
            "--tag", tag, "--context", repo_root]
    with tempfile.TemporaryDirectory(prefix="replicas-image-") as tmp:
        if certificates := extra_ca_certs():
            with open(os.path.join(tmp, "ca.crt"), "w") as f:
                f.write(certificates)
            argv += ["--extra-ca-certs", os.path.join(tmp, "ca.crt")]
        try:
            built = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=tmp, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"replicas images build {tag} failed: {exc}"
    if built.returncode != 0 or built.stdout.strip() != tag:
        return None, f"replicas images build {tag} failed: {built.stderr[-600:]}"
    return tag, None


def ensure_workspace_image(tools_dir: str) -> tuple[str | None, str | None]:
    """(tag, None) for the README's workspace image (`replicas images build`, see above), or (None, reason)."""
    with _lock:
        key = f"workspace:{tools_dir}"
        if key not in _results:
            tag, reason = _ensure_workspace_image(str(tools_dir))
            _results[key] = reason
            _results[key + ":tag"] = tag
        return _results.get(key + ":tag"), _results[key]


if __name__ == "__main__":  # `python tests/docker_support.py`: prepare the machine (e.g. from .ci/run)
    started = time.monotonic()
    tag, why = ensure_base_image_tag()
    print(f"docker base image: {tag or 'UNAVAILABLE: ' + str(why)} ({time.monotonic() - started:.1f} s)")
    raise SystemExit(0 if tag else 1)
