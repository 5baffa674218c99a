"""Serving the dashboard's files: `/` is the page, `/assets/...` its scripts, styles and vendored libraries.

The files are read once, at start-up, with their gzip form and a content hash: each answer is a dictionary
look-up, a gzip body for clients that accept it (the transfer budget counts gzipped bytes), and an ETag so a
reload costs 304s. The page gets a Content-Security-Policy that allows only this origin; the import map, the
page's one inline script, is allowed by its hash.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

from replicas.errors import NotFound

STATIC_DIR = Path(__file__).parent / "static"
ASSET_PREFIX = "/assets/"
_IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)
_TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml",
          ".json": "application/json", ".png": "image/png"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


def _asset(path: Path) -> Asset:
    body = path.read_bytes()
    media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    compressible = media_type.startswith(("text/", "application/json", "image/svg"))
    gzipped = gzip.compress(body, 9, mtime=0) if compressible and len(body) > 512 else None
    return Asset(body, gzipped, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def load_assets(root: Path = STATIC_DIR) -> dict[str, Asset]:
    """Every file under `root`, keyed by its path relative to it ("js/api.js")."""
    return {path.relative_to(root).as_posix(): _asset(path) for path in sorted(root.rglob("*")) if path.is_file()}


def content_security_policy(index_html: str) -> str:
    """Only this origin, for everything; the inline import map by its hash. Styles may be inline (xterm.js
    and highlighted code set element styles); frames show canvas HTML from `srcdoc` only (sandboxed)."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'"
                      for m in _IMPORT_MAP.findall(index_html))
    return ("default-src 'self'; "
            f"script-src 'self' {hashes}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
            "frame-src 'self' about: data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def _answer(request: Request, asset: Asset, cache_control: str, headers: dict[str, str] | None = None) -> Response:
    common = {"ETag": asset.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding",
              "X-Content-Type-Options": "nosniff", **(headers or {})}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=common)
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        return Response(asset.gzipped, media_type=asset.media_type, headers={**common, "Content-Encoding": "gzip"})
    return Response(asset.body, media_type=asset.media_type, headers=common)


def mount_dashboard(app: FastAPI, root: Path = STATIC_DIR) -> None:
    """Serve the page at `/` and its files under `/assets/` (404 in the API's error shape otherwise)."""
    assets = load_assets(root)
    index = assets["index.html"]
    page_headers = {"Content-Security-Policy": content_security_policy(index.body.decode()),
                    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}

    @app.get("/", include_in_schema=False)
    async def page(request: Request):
        return _answer(request, index, "no-cache", page_headers)

    @app.get(ASSET_PREFIX + "{path:path}", include_in_schema=False)
    async def asset(path: str, request: Request):
        found = assets.get(path)
        if found is None or path == "index.html":
            raise NotFound("Not found", f"no dashboard asset {path!r}")
        return _answer(request, found, "no-cache")
