"""A Docker engine and a test base image for the docker-backed tests, made here when this machine allows.

No image registry is reachable from the test machines, so the base image is built locally with
mmdebstrap and `docker import` (ARCHITECTURE.md, principle 4), once, and cached by its tag.

Both helpers return None when ready, or a reason string to `pytest.skip` with; they never raise::

    reason = ensure_dockerd() or ensure_base_image()
    if reason:
        pytest.skip(reason)
    image = BASE_IMAGE_TAG

`ensure_base_image_tag()` returns `(tag, None)` or `(None, reason)` for callers that want the tag.
Set `REPLICAS_TEST_DOCKER=0` to skip every docker test on purpose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
_lock = threading.RLock()
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
    if shutil.which("mmdebstrap") is None and (reason := _apt_install(["mmdebstrap"])):
        return reason
    with tempfile.TemporaryDirectory(prefix="replicas-base-") as tmp:
        tar = os.path.join(tmp, "base.tar")
        try:
            built = _run(["mmdebstrap", *_MMDEBSTRAP_ARGS, tar], 900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"mmdebstrap failed: {exc}"
        if built.returncode != 0:
            return f"mmdebstrap failed (is a Debian mirror reachable?): {built.stderr.strip()[-400:]}"
        imported = _run(["docker", "import", tar, BASE_IMAGE_TAG], 300)
        if imported.returncode != 0:
            return f"docker import failed: {imported.stderr.strip()[-400:]}"
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


if __name__ == "__main__":  # `python tests/docker_support.py`: prepare the machine (e.g. from .ci/run)
    started = time.monotonic()
    tag, why = ensure_base_image_tag()
    print(f"docker base image: {tag or 'UNAVAILABLE: ' + str(why)} ({time.monotonic() - started:.1f} s)")
    raise SystemExit(0 if tag else 1)
