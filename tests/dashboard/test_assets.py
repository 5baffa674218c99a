"""The dashboard's shipped assets: the vendored libraries are byte for byte what the pinned npm tarballs hold
(their SHA-256 against vendor.lock.json, recorded by `make dashboard-vendor`, which also checks each tarball's
npm integrity), nothing unlisted sits in vendor/, the page loads nothing from another origin, and the
JS+CSS a first visit fetches fits the 300 KB gzipped budget."""

from __future__ import annotations

import gzip
import re

from replicas.dashboard.routes import STATIC_DIR, load_assets
from replicas.dashboard.vendoring import LOCK, VENDOR_DIR, load_lock, sha256


def test_vendored_files_match_the_lock():
    lock = load_lock(LOCK)
    listed = {}
    for package in lock["packages"]:
        assert package["integrity"].startswith("sha512-"), package["name"]
        for source, entry in package["files"].items():
            listed[entry["to"]] = (f"{package['name']}@{package['version']}/{source}", entry["sha256"])
    present = {path.name for path in VENDOR_DIR.iterdir()}
    assert present == set(listed), f"vendor/ holds {sorted(present ^ set(listed))} outside the lock"
    for name, (origin, digest) in listed.items():
        assert sha256((VENDOR_DIR / name).read_bytes()) == digest, f"{name} is not {origin}"


def test_no_asset_refers_to_another_origin():
    remote = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|@import\s+url\(\s*["']?https?:|fonts\.googleapis""")
    for path in STATIC_DIR.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".css", ".js"}:
            assert not remote.search(path.read_text()), f"{path} loads from another origin"


def test_first_load_fits_the_transfer_budget():
    """Everything the replicas page can fetch up front (all app modules and the vendored JS and CSS, even
    those loaded only on other pages), gzipped as served, is under 300 KB."""
    assets = load_assets()
    total = sum(len(asset.gzipped or asset.body) for name, asset in assets.items()
                if name.endswith((".js", ".mjs", ".css")))
    assert total < 300 * 1024, total
    assert all(asset.gzipped is None or gzip.decompress(asset.gzipped) == asset.body for asset in assets.values())
