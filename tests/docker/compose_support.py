"""A compose tool and a local PostgreSQL image for running compose.yaml here, made when this machine allows.

No image registry is reachable from the test machines, so `postgres:16` cannot be pulled: a stand-in is
built instead, from a Debian rootfs with the `postgresql` package (mmdebstrap, then `docker import`) and
the small entrypoint in tests/docker/postgres/ (a `docker build`). Both are cached by their tags; the
final tag carries a hash of tests/docker/postgres/, so editing the entrypoint rebuilds only that layer.

Each helper returns `(value, None)` when ready, or `(None, reason)` to `pytest.skip` with; none raises::

    compose, reason = compose_command()          # ["docker", "compose"] or ["docker-compose"]
    image, reason = ensure_postgres_image()      # "replicas-test-postgres:bookworm-<hash>"
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
from pathlib import Path

from tests.docker_support import _apt_install, ensure_dockerd, import_rootfs

POSTGRES_DIR = Path(__file__).resolve().parent / "postgres"
POSTGRES_ROOTFS_TAG = "replicas-test-postgres-rootfs:bookworm-1"
# The Debian package creates a `main` cluster at install time; the entrypoint makes its own in $PGDATA.
_POSTGRES_MMDEBSTRAP_ARGS = [
    "--variant=minbase", "--include=postgresql",
    "--customize-hook=rm -rf \"$1\"/var/lib/postgresql/* \"$1\"/etc/postgresql/*",
    "bookworm",
]
_lock = threading.RLock()
_results: dict[str, tuple[object, str | None]] = {}


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _answers(argv: list[str]) -> bool:
    try:
        return _run([*argv, "version"], 60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _find_compose() -> list[str] | None:
    if _answers(["docker", "compose"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose") and _answers(["docker-compose"]):
        return ["docker-compose"]
    return None


def _compose_command() -> tuple[list[str] | None, str | None]:
    if reason := ensure_dockerd():
        return None, reason
    if found := _find_compose():
        return found, None
    if reason := _apt_install(["docker-compose"]):
        return None, f"neither `docker compose` nor `docker-compose` is here: {reason}"
    if found := _find_compose():
        return found, None
    return None, "Debian's docker-compose was installed but `docker-compose version` fails"


def compose_command() -> tuple[list[str] | None, str | None]:
    """`["docker", "compose"]` when the v2 plugin answers, else `["docker-compose"]` (Debian's package,
    installed if need be); or (None, why neither can be had)."""
    with _lock:
        if "compose" not in _results:
            _results["compose"] = _compose_command()
        return _results["compose"]  # type: ignore[return-value]


def postgres_image_tag() -> str:
    """The stand-in's tag: the rootfs's generation and a hash of the files it is built from."""
    digest = hashlib.sha256(POSTGRES_ROOTFS_TAG.encode())
    for path in sorted(POSTGRES_DIR.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"replicas-test-postgres:bookworm-{digest.hexdigest()[:12]}"


def _ensure_postgres_rootfs() -> str | None:
    if _run(["docker", "image", "inspect", POSTGRES_ROOTFS_TAG], 30).returncode == 0:
        return None
    return import_rootfs(POSTGRES_ROOTFS_TAG, _POSTGRES_MMDEBSTRAP_ARGS)


def _ensure_postgres_image() -> tuple[str | None, str | None]:
    if reason := ensure_dockerd() or _ensure_postgres_rootfs():
        return None, reason
    tag = postgres_image_tag()
    if _run(["docker", "image", "inspect", tag], 30).returncode == 0:
        return tag, None
    built = _run(["docker", "build", "--tag", tag, "--build-arg", f"BASE_IMAGE={POSTGRES_ROOTFS_TAG}",
                  str(POSTGRES_DIR)], 600)
    if built.returncode != 0:
        return None, f"docker build of {tag} failed: {(built.stdout + built.stderr).strip()[-600:]}"
    return tag, None


def ensure_postgres_image() -> tuple[str | None, str | None]:
    """(tag, None) once a local image that stands in for `postgres:16` exists (built once); else (None, why)."""
    with _lock:
        if "postgres" not in _results:
            _results["postgres"] = _ensure_postgres_image()
        return _results["postgres"]  # type: ignore[return-value]


if __name__ == "__main__":  # `python -m tests.docker.compose_support`: prepare the machine
    import time

    started = time.monotonic()
    for name, helper in (("compose", compose_command), ("postgres image", ensure_postgres_image)):
        value, why = helper()
        print(f"{name}: {value or 'UNAVAILABLE: ' + str(why)} ({time.monotonic() - started:.1f} s)")
