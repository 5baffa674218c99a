"""Which repository URLs a tenant may hand to git, checked at registration and again at every fetch.

Git run by the control plane reads the host's file system with the server's own rights, so a local
path or `file://` URL is a request to read the host. Three rules follow:

- Nothing that resolves into the server's data directory (other tenants' mirrors and workspaces, the
  secret key, the SQLite database) or the SQLite database's own files, however it is spelt: `..`,
  symlinks, percent-encoding, git's `<path>.git` and `<path>/.git` fallbacks, and a repository whose
  `.git` file, `commondir` or `objects/info/alternates` points there.
- No local repositories at all when `REPLICAS_ALLOW_LOCAL_REPOSITORIES` is false (multi-tenant).
- None of git's transport tricks: `ext::` and `fd::` run commands or read descriptors, the general
  `<transport>::<address>` form selects a remote helper, and a leading `-` is read as an option.

Symlinks can change after registration, so `git.ensure_mirror` asks again before each clone or fetch.
The checks answer with a reason (a string), and each caller raises its own kind of error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

LOCAL_OFF = ("local paths and file:// URLs are disabled on this server "
             "(REPLICAS_ALLOW_LOCAL_REPOSITORIES=false)")
INSIDE_DATA_DIR = "resolves into this server's own data; it cannot be registered as a repository"
# `ext::sh -c ...`, `fd::3`, `https::example.com` (any remote helper): git picks a transport from the prefix.
_TRANSPORT_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_GIT_SUFFIXES = ("", ".git", "/.git", ".git/.git")  # what git tries for a local path, in its order
_MAX_LINK_DEPTH = 5  # git follows alternates five levels deep


def syntax_problem(url: str) -> str | None:
    """Why `url` may not be given to git at all, or None. Local and remote URLs alike."""
    if any(ord(ch) < 32 or ch == "\x7f" for ch in url):
        return "must not contain control characters"
    if url.startswith("-"):
        return "must not start with '-' (git would read it as an option)"
    if _TRANSPORT_PREFIX.match(url):
        return "git's <transport>::<address> form (ext::, fd::, remote helpers) is not allowed"
    return None


def local_path(url: str) -> str | None:
    """The file-system path of a local repository URL (a path or `file://`), or None for a remote one."""
    if url.startswith("/"):
        return url
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        return None
    return unquote(parts.path) or "/"


def sqlite_files(database_url: str | None) -> list[str]:
    """The SQLite database and its journal files, from a SQLAlchemy URL; [] for other databases."""
    if not database_url or not database_url.startswith("sqlite"):
        return []
    path = database_url.split(":///", 1)[-1].split("?", 1)[0]
    if not path or path == ":memory:":
        return []
    return [path + suffix for suffix in ("", "-wal", "-shm", "-journal")]


def protected_roots(data_dir: Path, database_files: Iterable[str] = ()) -> list[str]:
    """Real paths that no repository may resolve into: the data dir, and the SQLite database files.

    The database's directory is protected as a whole when it is a directory of its own; when it holds
    the data dir (the database beside it, as in a checkout or a test's tmp dir) it holds everything
    else the operator keeps there too, so only the database files themselves are protected."""
    data = os.path.realpath(data_dir)
    roots = [data]
    files = [os.path.realpath(f) for f in database_files]
    roots.extend(files)
    if files:
        folder = os.path.dirname(files[0])
        if not _inside(data, folder):
            roots.append(folder)
    return roots


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _read_pointer(path: str) -> str | None:
    """The first line of a small pointer file (`.git`, `commondir`), or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(4096).splitlines()[0].strip() if os.path.getsize(path) else None
    except (OSError, IndexError):
        return None


def _alternates(objects: str) -> list[str]:
    try:
        with open(os.path.join(objects, "info", "alternates"), encoding="utf-8", errors="replace") as handle:
            lines = handle.read(65536).splitlines()
    except OSError:
        return []
    return [os.path.join(objects, line.strip()) for line in lines
            if line.strip() and not line.startswith("#")]


def _linked_git_dirs(candidate: str) -> list[str]:
    """Real paths git would read when given `candidate`: the repository, the target of a `.git` file,
    its `commondir`, its object store and packs, and (transitively) `objects/info/alternates`."""
    found: list[str] = []
    pending = [("repo", candidate, 0)]
    while pending:
        kind, path, depth = pending.pop()
        real = os.path.realpath(path)
        if real in found or depth > _MAX_LINK_DEPTH:
            continue
        found.append(real)
        if kind == "objects":
            found.append(os.path.realpath(os.path.join(real, "pack")))
            pending.extend(("objects", alt, depth + 1) for alt in _alternates(real))
            continue
        if os.path.isfile(real):
            pointer = _read_pointer(real)
            if pointer and pointer.startswith("gitdir:"):
                target = pointer[len("gitdir:"):].strip()
                pending.append(("repo", os.path.join(os.path.dirname(real), target), depth + 1))
            continue
        common = _read_pointer(os.path.join(real, "commondir"))
        if common:
            pending.append(("repo", os.path.join(real, common), depth + 1))
        if os.path.isdir(os.path.join(real, "objects")):
            pending.append(("objects", os.path.join(real, "objects"), depth))
    return found


def local_problem(path: str, roots: list[str]) -> str | None:
    """Why the local repository at `path` may not be read, or None. Resolves symlinks and `..`."""
    spellings = {path, unquote(path)}
    for spelling in spellings:
        for suffix in _GIT_SUFFIXES:
            candidate = spelling.rstrip("/") + suffix if suffix else spelling
            for real in _linked_git_dirs(candidate):
                if any(_inside(real, root) for root in roots):
                    return INSIDE_DATA_DIR
    return None


def url_problem(url: str, *, allow_local: bool, roots: list[str]) -> str | None:
    """Why git may not be pointed at `url` for a tenant, or None: every rule of the module docstring."""
    problem = syntax_problem(url)
    if problem:
        return problem
    path = local_path(url)
    if path is None:
        return None
    if not allow_local:
        return LOCAL_OFF
    parts = urlsplit(url)
    if url.startswith("file:") and parts.netloc not in ("", "localhost"):
        return "file:// URLs must name a path on this host (file:///path)"
    return local_problem(path, roots)
