"""Git plumbing for the control plane: probing remotes, bare mirrors, reading trees without checkouts.

Every call runs `git` as an async subprocess with prompts disabled, so a remote that wants credentials
fails at once with git's own message instead of hanging. HTTPS credentials travel in the child's
environment (GIT_CONFIG_*), never on its command line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import functools
import os
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

from replicas import outbound
from replicas.errors import BadRequest
from replicas.services import repository_urls


class GitError(Exception):
    """A git command failed; `stderr` carries git's reason."""

    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str):
        self.returncode, self.stderr = returncode, stderr.strip()
        super().__init__(f"git {' '.join(args[:2])} failed ({returncode}): {self.stderr}")


def normalize_url(url: str) -> str:
    """Accept an absolute local path, `file://`, `https://` or `http://`; return the URL git is given.

    Local paths become `file://` URLs so that the stored value is a URI (the contract's format)."""
    url = (url or "").strip()
    if not url:
        raise BadRequest("Invalid repository URL", "url: must not be empty")
    problem = repository_urls.syntax_problem(url)
    if problem:  # before any parsing: a NUL byte or `ext::sh -c ...` must never reach Path or git
        raise BadRequest("Invalid repository URL", f"url: {problem}")
    if url.startswith("/"):
        return Path(url).resolve().as_uri()
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return url
    if parsed.scheme in ("https", "http") and parsed.netloc:
        return url
    raise BadRequest("Invalid repository URL",
                     f"url: {url!r} must be an absolute local path, a file:// URL or an https:// URL")


def display_url(url: str) -> str:
    """The URL without any user:password part, safe to store in logs and responses."""
    parsed = urlparse(url)
    if parsed.password or parsed.username:
        netloc = parsed.hostname or ""
        if parsed.port:
            netloc += f":{parsed.port}"
        return parsed._replace(netloc=netloc).geturl()
    return url


REMOTE_PROTOCOLS = ("https", "http", "ssh", "git")
# The only git variables of the server's own environment that reach git: an operator's private CA.
# Everything else (GIT_DIR, GIT_CONFIG_*, GIT_SSH_COMMAND, GIT_PROXY_COMMAND, ...) would change what git
# reads or runs for a tenant's URL.
_INHERITED_GIT_VARIABLES = frozenset({"GIT_SSL_CAINFO", "GIT_SSL_CAPATH"})
# Command-scope config wins over a repository's own: a checkout's `.git/config` is the agent's to write.
_HARDENED_CONFIG = (("core.fsmonitor", "false"), ("core.hooksPath", os.devnull))


@functools.cache
def scratch_home() -> str:
    """An empty HOME for git (0700, one per process): no user config, credential store or ssh keys of
    the host's account reach a tenant's fetch."""
    return tempfile.mkdtemp(prefix="replicas-git-home-")


def allowed_protocols(allow_local: bool) -> str:
    """GIT_ALLOW_PROTOCOL's value: the network transports, plus `file` when local repositories are on."""
    return ":".join((*REMOTE_PROTOCOLS, "file") if allow_local else REMOTE_PROTOCOLS)


def git_env(credential: str | None = None, url: str | None = None, *,
            allow_local: bool | None = None) -> dict[str, str]:
    """The environment of every git the control plane runs: no host config (system, user, XDG), no
    prompt of any kind, only the allowed transports (`ext::`, `fd::` never), and a credential as an
    HTTP header in command-scope config, never on a command line or in a URL.

    `allow_local=False` leaves out the `file` transport: git then refuses local paths and file:// URLs
    by itself, whatever reached it; None follows the running app's REPLICAS_ALLOW_LOCAL_REPOSITORIES."""
    if allow_local is None:
        allow_local = outbound.active_policy().allow_local_repositories
    home = scratch_home()
    env = {key: value for key, value in os.environ.items()
           if (not key.startswith("GIT_") or key in _INHERITED_GIT_VARIABLES)
           and key not in ("SSH_ASKPASS", "XDG_CONFIG_HOME")}
    env.update({
        "HOME": home,
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": allowed_protocols(allow_local),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        "GCM_INTERACTIVE": "never",
        "LC_ALL": "C",
    })
    config = list(_HARDENED_CONFIG)
    if credential and url and urlparse(url).scheme in ("https", "http"):
        user, _, secret = credential.partition(":") if ":" in credential else ("x-access-token", "", credential)
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        config.append(("http.extraHeader", f"Authorization: Basic {token}"))
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    return env


async def run_git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                  timeout: float = 60.0, remote: str | None = None) -> str:
    """Run git; return stdout or raise GitError (a timeout is reported as one, with exit code -1).

    The remote a command contacts (a URL among `args`, or `remote` for `fetch origin`) must pass the
    outbound policy; over http(s) git then connects only to the addresses that were checked."""
    try:
        pinned = await outbound.git_pin_args(args, remote)
    except (outbound.OutboundRefused, OSError) as exc:  # OSError: the host does not resolve
        raise GitError(args, -1, str(exc)) from exc
    process = await asyncio.create_subprocess_exec(
        "git", *pinned, *args, cwd=cwd, env=env or git_env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise GitError(args, -1, f"timed out after {timeout:.0f}s") from None
    if process.returncode != 0:
        raise GitError(args, process.returncode, stderr.decode(errors="replace"))
    return stdout.decode(errors="replace")


async def probe_remote(url: str, credential: str | None = None, timeout: float = 30.0,
                       env: dict[str, str] | None = None) -> str:
    """Check that `url` is a reachable git repository and return its default branch."""
    output = await run_git("ls-remote", "--symref", "--", url, "HEAD", "refs/heads/*",
                           env=env or git_env(credential, url), timeout=timeout)
    heads = []
    for line in output.splitlines():
        if line.startswith("ref: ") and line.endswith("\tHEAD"):
            return line[len("ref: refs/heads/"):].split("\t", 1)[0]
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].startswith("refs/heads/"):
            heads.append(parts[1][len("refs/heads/"):])
    for preferred in ("main", "master"):
        if preferred in heads:
            return preferred
    if heads:
        return heads[0]
    # An empty repository is reachable but has nothing to check out yet.
    return "main"


def mirror_path(data_dir: Path, key: str) -> Path:
    return data_dir / "mirrors" / f"{key}.git"


# In-process locks per mirror; a file lock beside each mirror covers other `replicas serve` processes.
_mirror_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


@contextlib.asynccontextmanager
async def mirror_lock(data_dir: Path, key: str) -> AsyncIterator[None]:
    """Hold the mirror of `key` exclusively: concurrent clones or fetches of one bare repository trip
    over each other's lock files and partial directories."""
    lock = _mirror_locks.get(key)
    if lock is None:
        lock = _mirror_locks[key] = asyncio.Lock()
    async with lock:
        lock_path = data_dir / "mirrors" / f"{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock


async def ensure_mirror(data_dir: Path, key: str, url: str, credential: str | None = None,
                        timeout: float = 300.0, *, allow_local: bool | None = None) -> Path:
    """Create or refresh a bare mirror of `url` under the data dir; return its path.

    `allow_local` None follows the running app's REPLICAS_ALLOW_LOCAL_REPOSITORIES (`outbound.active_policy`),
    so that no caller can forget it.

    `url` is checked again first (`repository_urls`): a symlink may now point into the data dir, or
    local repositories may have been turned off since it was registered; a refusal is a GitError
    and leaves the mirror as it was. Safe to call concurrently, from one process or several sharing
    the data dir."""
    if allow_local is None:
        allow_local = outbound.active_policy().allow_local_repositories
    problem = repository_urls.url_problem(url, allow_local=allow_local,
                                          roots=repository_urls.protected_roots(data_dir))
    if problem:
        raise GitError(("fetch", display_url(url)), 128, f"refused: {display_url(url)} {problem}")
    async with mirror_lock(data_dir, key):
        return await _ensure_mirror_locked(data_dir, key, url, credential, timeout, allow_local)


async def _ensure_mirror_locked(data_dir: Path, key: str, url: str, credential: str | None,
                                timeout: float, allow_local: bool) -> Path:
    path = mirror_path(data_dir, key)
    env = git_env(credential, url, allow_local=allow_local)
    if (path / "HEAD").exists():
        await run_git("remote", "set-url", "origin", url, cwd=path, env=env)
        await run_git("fetch", "--prune", "--quiet", "origin", cwd=path, env=env, timeout=timeout, remote=url)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    await run_git("clone", "--mirror", "--quiet", "--", url, str(partial), env=env, timeout=timeout)
    partial.rename(path)
    return path


async def list_files(repo: Path, ref: str) -> list[str]:
    output = await run_git("ls-tree", "-r", "--name-only", "-z", ref, cwd=repo)
    return [name for name in output.split("\0") if name]


async def read_file(repo: Path, ref: str, path: str) -> str:
    return await run_git("show", f"{ref}:{path}", cwd=repo)
