"""Workspace checkouts from a repository's bare mirror: no fetch from the origin, ever.

`checkout()` materialises a normal, independent, writable git checkout of one branch at `dest`. It
reads only the mirror that `git.ensure_mirror` keeps under `<data_dir>/mirrors/<key>.git`; refreshing
the mirror (a fetch from the origin) is the caller's decision, so a second workspace of the same
repository costs no network at all. The checkout's `origin` remote is then pointed at the
repository's real URL so that the agent can push a branch; user.name/email are left to the caller.

Methods (`CheckoutMethod`), all `git clone` from the mirror, differing in how objects get there:

    COPY         git clone --no-hardlinks MIRROR     objects copied: shares no inode with the mirror
    HARDLINK     git clone MIRROR                    objects hardlinked (git's implicit --local)
    SHARED       git clone --shared MIRROR           objects borrowed through objects/info/alternates
    UPLOAD_PACK  git clone file://MIRROR             objects packed and sent by upload-pack

Why COPY is the default. `python -m bench.checkout_bench --files 10000 --runs 7 --dir /dev/shm`, on
a generated 10,000-file repository (12.8 MiB of files, 3.5 MiB pack), 2 vCPUs, git 2.39; median
seconds of 7 interleaved runs, against a plain local `git clone` of the origin (bench/README.md has
the full tables, and the same on ext4, where the disk's noise of 0.7 to 1.9 s swamps every
difference below):

    plain local `git clone` of the origin (baseline)    0.471   1.00x
    COPY (default)                                      0.446   0.95x
    HARDLINK                                            0.454   0.96x
    SHARED                                              0.506   1.07x
    UPLOAD_PACK                                         0.718   1.52x
    bench only: `git worktree add` from the mirror      0.448   0.95x  (not independent, see below)
    bench only: `cp -a` of a prepared tree              0.441   0.94x
    bench only: overlayfs over a prepared tree          0.003   0.01x  (+0.22 s first `git status`)

Writing 10,000 files and the index is the whole cost; how a few MiB of objects arrive is noise, so
the three local clones tie and the choice is made on correctness. COPY pays for copying the
mirror's packs (time and disk grow with the history, not with the file count).

- HARDLINK shares the mirror's pack inodes with the workspace. A local-runtime sandbox runs as the
  uid that owns the mirror (bubblewrap drops capabilities, not file ownership), and a runtime that
  chowns a checkout to its sandbox user chowns the mirror's packs with it; either way an agent can
  `chmod u+w` a pack and rewrite objects that the mirror and every other workspace of that
  repository read. Use it only where the sandbox user cannot own the mirror's files and the disk
  saved matters (large histories). Across filesystems git copies instead, by itself; an explicit
  `--local` would die there ("Invalid cross-device link"), so it is not passed.
- SHARED makes the checkout depend on the mirror for ever: `git fetch --prune` plus `git gc` in the
  mirror deletes objects that a workspace still uses (a force-pushed branch), and the workspace is
  corrupt (tests/services/test_checkouts.py shows it). The sandbox must also read the mirror path,
  so the runtime would have to bind it read-only into every sandbox. Not worth what it saves.
- UPLOAD_PACK is the plain `git clone` from the mirror: correct, but it builds a pack for nothing.
- `git worktree add` (bench only) is not independent: the worktree's HEAD and index live in the
  mirror, its commits and branches are written into the mirror (whose `fetch --prune` with the
  mirror refspec deletes the agent's branches), its `origin` is the mirror's, and a branch can be
  checked out in one worktree only (the bench has to pass `--detach`).
- A copy of a prepared tree (`cp -a`; neither ext4 nor tmpfs can reflink, so a full copy) costs what
  git's own checkout costs and needs a prepared tree per commit, so it saves nothing. `cp -al` is
  wrong: the trees would share file inodes, and an in-place write (`open(O_TRUNC)`, `>>`) would
  change every tree at once.
- An overlay over a prepared tree of the same commit is the only real saving (a 3 ms mount plus a
  first `git status` that every method pays anyway), but it needs a prepared tree per
  (branch, commit) kept alive while any workspace uses it, and a mount re-made on every sandbox
  start (bubblewrap's `--overlay-src`/`--overlay` can make it at start). That is a runtime feature
  for warm pools, not a checkout method; a checkout here is a plain directory any backend can use.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from replicas.errors import BadRequest, Conflict, NotFound
from replicas.services import repository_urls
from replicas.services.git import GitError, display_url, run_git

log = logging.getLogger("replicas.checkouts")


class CheckoutMethod(enum.StrEnum):
    """How objects get from the mirror into a new checkout; see the module docstring."""

    COPY = "copy"
    HARDLINK = "hardlink"
    SHARED = "shared"
    UPLOAD_PACK = "upload-pack"


DEFAULT_METHOD = CheckoutMethod.COPY

_CLONE_SOURCE = {
    CheckoutMethod.COPY: ("--no-hardlinks",),
    CheckoutMethod.HARDLINK: (),
    CheckoutMethod.SHARED: ("--shared",),
    CheckoutMethod.UPLOAD_PACK: (),
}


class BranchNotFound(NotFound):
    """The branch to check out is not in the mirror (as of its last fetch)."""

    default_message = "Branch not found"


class DestinationNotEmpty(Conflict):
    """The checkout's destination already exists and holds something."""

    default_message = "Checkout destination is not empty"


@dataclass(frozen=True)
class CheckoutResult:
    """A finished checkout: where, which branch and commit, how, and how long it took."""

    path: Path
    branch: str
    commit: str
    method: CheckoutMethod
    seconds: float


def _destination_state(dest: Path) -> bool:
    """True if `dest` exists (as an empty directory); raise if it holds anything or is not a directory."""
    if not dest.exists() and not dest.is_symlink():
        return False
    if not dest.is_dir() or dest.is_symlink() or any(dest.iterdir()):
        raise DestinationNotEmpty(details=f"{dest} already exists and is not an empty directory")
    return True


def _discard(dest: Path, existed: bool) -> None:
    """Remove what a failed checkout left, keeping an empty `dest` the caller had made."""
    if not dest.exists():
        return
    if not existed:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


async def branch_commit(mirror: Path, branch: str, origin_url: str) -> str:
    """The commit `branch` of the bare `mirror` is at; `BranchNotFound` carrying git's reason when it has none."""
    try:
        return (await run_git("rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}", cwd=mirror)).strip()
    except GitError as exc:
        raise BranchNotFound(details=f"{branch!r} is not a branch of {display_url(origin_url)} "
                                     f"(mirror {mirror}): {exc.stderr}") from exc


async def checkout(mirror: Path, dest: Path, branch: str, *, origin_url: str,
                   method: CheckoutMethod = DEFAULT_METHOD, timeout: float = 600.0) -> CheckoutResult:
    """Check out `branch` of the bare `mirror` at `dest`, with `origin` set to `origin_url`.

    Reads only the mirror (never the origin). `dest` must not exist or be an empty directory
    (`DestinationNotEmpty` otherwise); its parent is created. A branch the mirror lacks raises
    `BranchNotFound` carrying git's reason, before anything is written. On any failure, `dest` is
    left as it was found. `origin_url` is stored in the checkout's config as given: pass the URL
    without credentials (pushes authenticate through the environment, as `git.git_env` does)."""
    method = CheckoutMethod(method)
    problem = repository_urls.syntax_problem(origin_url)
    if problem:  # it lands in the checkout's config, where the agent's git would run it
        raise BadRequest("Invalid repository URL", f"origin_url: {problem}")
    if mirror.is_symlink():  # mirrors are made by git.ensure_mirror, never as links to somewhere else
        raise BadRequest("Invalid mirror", f"{mirror} is a symlink")
    started = time.perf_counter()
    existed = await asyncio.to_thread(_destination_state, dest)
    await branch_commit(mirror, branch, origin_url)
    if not existed:
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    source = mirror.resolve().as_uri() if method is CheckoutMethod.UPLOAD_PACK else str(mirror)
    try:
        await run_git("clone", "--quiet", *_CLONE_SOURCE[method], "--branch", branch, "--",
                      source, str(dest), timeout=timeout)
        await run_git("remote", "set-url", "origin", origin_url, cwd=dest)
        commit = (await run_git("rev-parse", "HEAD", cwd=dest)).strip()
    except BaseException:
        await asyncio.shield(asyncio.to_thread(_discard, dest, existed))
        raise
    seconds = time.perf_counter() - started
    log.info("checkout path=%s branch=%s commit=%s method=%s seconds=%.3f",
             dest, branch, commit, method.value, seconds)
    return CheckoutResult(path=dest, branch=branch, commit=commit, method=method, seconds=seconds)
