"""Copy the dashboard's libraries from npm into static/vendor/, at the versions pinned in vendor.lock.json.

    python -m replicas.dashboard.vendoring          # (make dashboard-vendor) fetch, verify, copy, re-lock
    python -m replicas.dashboard.vendoring --check  # fetch and verify only: exit 1 if any file differs
                                                    # (exit 2: npm could not fetch a package)

Each package is fetched with `npm pack <name>@<version>` (the npm client, through the configured registry),
its tarball checked against the lock's `integrity` (npm's sha512; recorded the first time), and the listed
files copied byte for byte. The lock also holds each copied file's SHA-256, which tests/dashboard checks
without a network: the committed files are what the pinned tarballs hold.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
LOCK = HERE / "vendor.lock.json"
VENDOR_DIR = HERE / "static" / "vendor"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_lock(path: Path = LOCK) -> dict:
    return json.loads(path.read_text())


def _pack(name: str, version: str, workdir: Path) -> tuple[Path, str]:
    """The package tarball from npm and its sha512 integrity string."""
    done = subprocess.run(["npm", "pack", "--json", "--silent", f"{name}@{version}"], cwd=workdir,
                          capture_output=True, text=True, check=True, timeout=300)
    tarball = workdir / json.loads(done.stdout)[0]["filename"]
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    return tarball, integrity


def _files_of(tarball: Path, wanted: list[str]) -> dict[str, bytes]:
    with tarfile.open(tarball) as archive:
        found = {}
        for source in wanted:
            member = archive.extractfile(f"package/{source}")
            if member is None:
                raise SystemExit(f"{tarball.name}: no {source}")
            found[source] = member.read()
    return found


def vendor(check: bool) -> int:
    lock = load_lock()
    problems = []
    with tempfile.TemporaryDirectory() as scratch:
        for package in lock["packages"]:
            name, version = package["name"], package["version"]
            try:
                tarball, integrity = _pack(name, version, Path(scratch))
            except (subprocess.SubprocessError, OSError) as exc:
                print(f"npm pack {name}@{version} failed: {exc}", file=sys.stderr)
                return 2
            if package.get("integrity") and package["integrity"] != integrity:
                problems.append(f"{name}@{version}: the tarball's integrity {integrity} is not the locked one")
                continue
            package["integrity"] = integrity
            contents = _files_of(tarball, list(package["files"]))
            for source, data in contents.items():
                entry = package["files"][source]
                target = VENDOR_DIR / entry["to"]
                if check:
                    if not target.is_file() or target.read_bytes() != data or entry.get("sha256") != sha256(data):
                        problems.append(f"{entry['to']} differs from {name}@{version}/{source}")
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                entry["sha256"] = sha256(data)
    if not check:
        LOCK.write_text(json.dumps(lock, indent=2) + "\n")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the vendored files, change nothing")
    sys.exit(vendor(parser.parse_args().check))


if __name__ == "__main__":
    main()
