"""Reading and writing inside a workspace's home without ever leaving it.

The home is the tenant's: a checked-out repository, an earlier hook or the agent itself may have left
a symlink anywhere in it (`~/.claude -> /etc`). Provisioning runs as the server's user, outside any
sandbox, so following one would write (or read) the host. Every path here is therefore walked from the
home one component at a time with O_NOFOLLOW: a symlink or a non-directory on the way is refused
(`PathRefused`), never followed. Files are replaced through a fresh temporary name and rename(2), so
neither a symlink nor a hard link planted at the file's own name is written through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from pathlib import Path, PurePosixPath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefused(ValueError):
    """A path that would leave the home: `..`, absolute, a NUL, or a symlink on the way."""


def parts_of(relative: str | PurePosixPath) -> list[str]:
    """The components of a home-relative path; PathRefused for one that could leave the home."""
    text = str(relative)
    if "\x00" in text:
        raise PathRefused(f"{text!r} contains a NUL byte")
    if text.startswith("/"):
        raise PathRefused(f"{text!r} is absolute; paths are relative to the home directory")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise PathRefused(f"{text!r} does not name something inside the home directory")
    return parts


def _open_dir(home: Path, parts: list[str], create: bool) -> int:
    """A descriptor of home/parts..., walked without following any symlink (made if `create`)."""
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, part in enumerate(parts):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    where = "~/" + "/".join(parts[:index + 1])
                    raise PathRefused(f"{where} is a symlink or not a directory; refusing to follow it") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_text(home: Path, relative: str | PurePosixPath, text: str, mode: int = 0o644) -> Path:
    """Write `text` at home/relative (parents made), replacing whatever file was there; return the path."""
    parts = parts_of(relative)
    folder = _open_dir(home, parts[:-1], create=True)
    temporary = f".{parts[-1][:200]}.replicas-{secrets.token_hex(6)}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                     dir_fd=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), mode)  # the umask would narrow it otherwise
                handle.write(text)
            os.rename(temporary, parts[-1], src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=folder)
            raise
    except IsADirectoryError:
        raise PathRefused(f"~/{'/'.join(parts)} is a directory") from None
    finally:
        os.close(folder)
    return home.joinpath(*parts)


def read_text(home: Path, relative: str | PurePosixPath) -> str | None:
    """The text of home/relative, None when it does not exist; PathRefused when it is a symlink."""
    parts = parts_of(relative)
    try:
        folder = _open_dir(home, parts[:-1], create=False)
    except FileNotFoundError:
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PathRefused(f"~/{'/'.join(parts)} is a symlink; refusing to read through it") from None
        raise
    finally:
        os.close(folder)
    with os.fdopen(fd, encoding="utf-8") as handle:
        return handle.read()


def ensure_dir(home: Path, relative: str | PurePosixPath) -> Path:
    """home/relative as a real directory of the home (made if missing); PathRefused for a symlink."""
    parts = parts_of(relative)
    os.close(_open_dir(home, parts, create=True))
    return home.joinpath(*parts)


def fresh_dir(home: Path, relative: str | PurePosixPath) -> Path:
    """An empty directory at home/relative: whatever was there (a tree, a file, a symlink) is removed
    without being followed. Returns its path."""
    parts = parts_of(relative)
    folder = _open_dir(home, parts[:-1], create=True)
    try:
        try:
            found = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            found = None
        if found is not None and stat.S_ISDIR(found.st_mode):
            shutil.rmtree(parts[-1], dir_fd=folder)  # fd-based on Linux: never follows a symlink inside
        elif found is not None:
            os.unlink(parts[-1], dir_fd=folder)  # a file or a symlink: the name goes, not its target
        os.mkdir(parts[-1], 0o755, dir_fd=folder)
    finally:
        os.close(folder)
    return home.joinpath(*parts)
