"""The engine's canvas routes (spec §3.4): files the agent drops in `~/.replicas/canvas/`.

    GET /canvas             -> {"items": [{"filename", "kind", "sizeBytes"}]}
    GET /canvas/{filename}  -> {"filename", "kind", "sizeBytes", "mimeType", content | base64 | tooLarge}

Decisions (the contract says only what the payloads look like):

- `kind` comes from the extension (case-insensitive), `mimeType` from a fixed table for the known kinds
  (the same answer in every workspace image, whatever its `/etc/mime.types`), `mimetypes` for the rest.
- No canvas directory (the agent never made one) is an empty list, and every file in it is 404.
- Only regular files at the top level are items. `{filename}` is one path segment (the contract's "basename
  of the file inside the Canvas directory"), so a file in a subdirectory could not be fetched, and
  flattening would let `a/x.md` and `b/x.md` collide: subdirectories are left out, not flattened.
- Dotfiles are left out too (editors' swap files, half-written temporary files); fetching one is 404.
- Nothing outside the canvas directory is ever read. `~/.replicas` and `~/.replicas/canvas` are opened one
  component at a time with `O_NOFOLLOW`, and each file relative to that directory's descriptor with
  `O_NOFOLLOW` (then checked to be a regular file with `fstat`). So a symlink, wherever it points, is not
  listed and not served (404), and a name with `/`, `..`, a NUL or an absolute path is 404 before any
  file is opened. The agent owns the directory; following its links would let it (or a prompt injected
  into it) have the engine read any file the engine can (on the local backend, the host's).
- At most 5 MiB (`MAX_CONTENT_BYTES`) is read; the read asks for one byte more to know a file is over.
  Such a file answers `tooLarge: true` with neither payload (and is still listed, with its size).
- A markdown or html file that is not valid UTF-8 is sent losslessly as `base64` instead of `content`
  (its `mimeType` then has no `charset=utf-8`), rather than as text with replacement characters.
- Items are sorted by filename (code point order), so the list is stable between calls.

All file work runs in a thread (`asyncio.to_thread`); errors are `ChatError(status, message)`, which the
app answers as `{"error": message}`.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import mimetypes
import os
import stat
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from replicas.engine.chats import ChatError

CANVAS_PARTS = (".replicas", "canvas")
MAX_CONTENT_BYTES = 5 * 1024 * 1024
TEXT_KINDS = ("markdown", "html")
NOT_FOUND = "Canvas item not found"

_KINDS: dict[str, tuple[str, str]] = {}  # extension -> (kind, MIME type)
for _kind, _table in {
    "markdown": {"md": "text/markdown", "markdown": "text/markdown", "mdx": "text/markdown"},
    "html": {"html": "text/html", "htm": "text/html"},
    "image": {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
              "webp": "image/webp", "svg": "image/svg+xml", "bmp": "image/bmp", "ico": "image/x-icon",
              "avif": "image/avif", "tif": "image/tiff", "tiff": "image/tiff"},
    "video": {"mp4": "video/mp4", "m4v": "video/mp4", "webm": "video/webm", "mov": "video/quicktime",
              "mkv": "video/x-matroska", "avi": "video/x-msvideo", "ogv": "video/ogg"},
    "audio": {"mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg", "oga": "audio/ogg",
              "opus": "audio/opus", "m4a": "audio/mp4", "aac": "audio/aac", "flac": "audio/flac",
              "weba": "audio/webm"},
}.items():
    for _extension, _mime in _table.items():
        _KINDS[_extension] = (_kind, _mime)


def kind_of(filename: str) -> tuple[str, str]:
    """(kind, MIME type) from the extension; text kinds' MIME type says `charset=utf-8`."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if extension in _KINDS:
        kind, mime = _KINDS[extension]
        return kind, f"{mime}; charset=utf-8" if kind in TEXT_KINDS else mime
    return "other", mimetypes.guess_type(filename, strict=False)[0] or "application/octet-stream"


def is_canvas_filename(filename: str) -> bool:
    """Whether `filename` can name a canvas item: one path segment, not hidden (so not `.` or `..`)."""
    return bool(filename) and "/" not in filename and "\\" not in filename and "\x00" not in filename \
        and not filename.startswith(".")


def _open_canvas_dir(home: Path) -> int | None:
    """A descriptor of `~/.replicas/canvas`, or None where there is no such directory (or a component of
    it is a symlink: never followed)."""
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in CANVAS_PARTS:
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return None
                raise
            os.close(fd)
            fd = child
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def list_items(home: Path) -> list[dict]:
    """The canvas's items (CanvasItem), sorted by filename."""
    directory = _open_canvas_dir(home)
    if directory is None:
        return []
    items = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if not is_canvas_filename(entry.name):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed while listing
                    continue
                if stat.S_ISREG(info.st_mode):
                    items.append({"filename": entry.name, "kind": kind_of(entry.name)[0], "sizeBytes": info.st_size})
    finally:
        os.close(directory)
    return sorted(items, key=lambda item: item["filename"])


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_item(home: Path, filename: str) -> dict:
    """One item (CanvasContentResponse); ChatError 404 for a name that is not a regular file in the canvas."""
    if not is_canvas_filename(filename):
        raise ChatError(404, NOT_FOUND)
    directory = _open_canvas_dir(home)
    if directory is None:
        raise ChatError(404, NOT_FOUND)
    try:
        # O_NONBLOCK: opening a FIFO left there must not hang the thread (it is refused below anyway).
        fd = os.open(filename, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ChatError(404, NOT_FOUND) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink
            raise ChatError(404, NOT_FOUND) from None
        raise
    finally:
        os.close(directory)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a directory, FIFO or device
            raise ChatError(404, NOT_FOUND)
        data = _read_at_most(fd, MAX_CONTENT_BYTES + 1)
    finally:
        os.close(fd)
    kind, mime = kind_of(filename)
    item = {"filename": filename, "kind": kind, "sizeBytes": len(data), "mimeType": mime}
    if len(data) > MAX_CONTENT_BYTES:
        item.update(sizeBytes=max(info.st_size, len(data)), tooLarge=True)
    elif kind in TEXT_KINDS:
        try:
            item["content"] = data.decode("utf-8")
        except UnicodeDecodeError:
            item.update(mimeType=mime.split(";")[0], base64=base64.b64encode(data).decode("ascii"))
    else:
        item["base64"] = base64.b64encode(data).decode("ascii")
    return item


def canvas_routes(engine) -> list[Route]:
    """`GET /canvas` and `GET /canvas/{filename}` over `engine.config.home`."""
    home = Path(engine.config.home)

    async def list_canvas(request: Request) -> Response:
        return JSONResponse({"items": await asyncio.to_thread(list_items, home)})

    async def get_canvas_item(request: Request) -> Response:
        # `:path`, so that a name with `/` reaches the check above and is answered in the error shape.
        return JSONResponse(await asyncio.to_thread(read_item, home, request.path_params["filename"]))

    return [Route("/canvas", list_canvas, methods=["GET"]),
            Route("/canvas/{filename:path}", get_canvas_item, methods=["GET"])]
