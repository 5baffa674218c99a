"""How fast is a workspace checkout? Candidate methods against a plain local `git clone`.

    .venv/bin/python -m bench.checkout_bench [--files 10000] [--runs 5] [--dir /tmp]

Generates (once, cached under `<dir>/replicas-checkout-bench/`) a repository of N files in nested
directories, makes its bare mirror with `git.ensure_mirror`, then times, in rounds whose order
rotates so that no candidate always runs first or last:

- the baseline the issue names: a plain local `git clone` of the origin;
- each `checkouts.CheckoutMethod` from the mirror;
- the bench-only candidates that are not checkout methods (see the `checkouts` docstring for why):
  `git worktree add` from the mirror, `cp -a` of a prepared tree, overlayfs over a prepared tree
  (needs root or a user namespace that may mount overlayfs; reported as unavailable otherwise).

Every candidate's first `git status` is timed too, and must be clean on the expected commit. Then
the origin is moved away, and two more workspaces are checked out from the mirror alone, while a
refresh of the mirror fails: a second workspace costs no fetch from the origin.
Dirty pages are written out (`sync`) before each timed step, and every tree is kept until the end
(deleting 10,000 files made the next checkouts on this machine's ext4 ten times slower). Nothing
here asserts a time; bench/README.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from replicas.services import git
from replicas.services.checkouts import DEFAULT_METHOD, CheckoutMethod, checkout

CACHE_VERSION = 1
BRANCH = "main"
BASELINE = "baseline: git clone ORIGIN"


@dataclass
class Candidate:
    """One way to get a working tree at `dest`; `undo` releases a tree (unmount, prune) at the end."""

    name: str
    make: Callable[[Path], Awaitable[None]]
    undo: Callable[[Path], Awaitable[None]] | None = None
    note: str = ""
    made: list[Path] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    status_times: list[float] = field(default_factory=list)
    failure: str | None = None


def _source_text(rng: random.Random, index: int) -> bytes:
    lines = [f'"""Module {index}."""', "", f"VALUE_{index} = {rng.randrange(10**6)}", ""]
    for n in range(rng.randint(2, 40)):
        lines += [f"def function_{n}(argument):", f"    return argument * {rng.random():.10f}", ""]
    return ("\n".join(lines) + "\n").encode()


def _fast_import_stream(files: int, seed: int = 1) -> bytes:
    """Two commits on main (every file, then 1% of them changed) and a `feature` branch at the first."""
    rng = random.Random(seed)
    paths = [f"pkg{i % 20:02d}/mod{i // 20 % 25:02d}/part{i // 500 % 5}/file_{i:06d}.py"
             for i in range(files)]
    out = bytearray()

    def commit(mark: int, message: str, when: int, changes: list[tuple[str, bytes]], parent=None):
        out.extend(f"commit refs/heads/{BRANCH}\nmark :{mark}\n"
                   f"committer Bench <bench@example.com> {when} +0000\n"
                   f"data {len(message)}\n{message}\n".encode())
        if parent:
            out.extend(f"from :{parent}\n".encode())
        for path, body in changes:
            out.extend(f"M 100644 inline {path}\ndata {len(body)}\n".encode() + body + b"\n")

    commit(1, "initial", 1_700_000_000, [(p, _source_text(rng, i)) for i, p in enumerate(paths)])
    changed = rng.sample(range(files), max(1, files // 100))
    commit(2, "change some files", 1_700_000_100,
           [(paths[i], _source_text(rng, i + files)) for i in changed], parent=1)
    out.extend(b"reset refs/heads/feature\nfrom :1\n\n")
    return bytes(out)


async def _run(*argv: str, cwd: Path | None = None, data: bytes | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=git.git_env())
    stdout, stderr = await process.communicate(data)
    if process.returncode:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({process.returncode}): {stderr.decode().strip()}")
    return stdout.decode()


async def make_origin(root: Path, files: int) -> Path:
    """The generated origin (bare), built once per file count and cached under `root`."""
    origin = root / f"origin-{files}-v{CACHE_VERSION}.git"
    if (origin / "bench-complete").exists():
        return origin
    shutil.rmtree(origin, ignore_errors=True)
    started = time.perf_counter()
    await _run("git", "init", "--quiet", "--bare", "--initial-branch", BRANCH, str(origin))
    await _run("git", "fast-import", "--quiet", cwd=origin, data=_fast_import_stream(files))
    await _run("git", "repack", "-adq", cwd=origin)
    (origin / "bench-complete").touch()
    print(f"generated {origin} ({files} files) in {time.perf_counter() - started:.1f} s")
    return origin


async def _sync() -> None:
    await asyncio.to_thread(os.sync)


async def _remove(path: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, path, True)


def candidates(origin: Path, url: str, mirror: Path, work: Path, prepared: Path) -> list[Candidate]:
    async def baseline(dest: Path) -> None:
        await git.run_git("clone", "--quiet", str(origin), str(dest), timeout=600)

    def method(m: CheckoutMethod) -> Callable[[Path], Awaitable[None]]:
        async def make(dest: Path) -> None:
            await checkout(mirror, dest, BRANCH, origin_url=url, method=m)
        return make

    async def worktree(dest: Path) -> None:
        # --detach: a branch can be checked out in one worktree only, so a second workspace of
        # the same branch could not use it at all.
        await git.run_git("worktree", "add", "--quiet", "--detach", str(dest), BRANCH, cwd=mirror)

    async def worktree_undo(dest: Path) -> None:
        await git.run_git("worktree", "remove", "--force", str(dest), cwd=mirror)

    async def copy_prepared(dest: Path) -> None:
        await _run("cp", "--reflink=auto", "-a", str(prepared), str(dest))

    async def overlay(dest: Path) -> None:
        layers = dest.with_name(dest.name + ".layers")
        for sub in ("upper", "work"):
            (layers / sub).mkdir(parents=True)
        dest.mkdir()
        try:
            await _run("mount", "-t", "overlay", "overlay", "-o",
                       f"lowerdir={prepared},upperdir={layers / 'upper'},workdir={layers / 'work'}",
                       str(dest))
        except Exception:
            await _remove(layers)
            raise

    async def overlay_undo(dest: Path) -> None:
        await _run("umount", str(dest))
        await _remove(dest.with_name(dest.name + ".layers"))

    notes = {
        CheckoutMethod.COPY: "objects copied; shares nothing with the mirror",
        CheckoutMethod.HARDLINK: "objects hardlinked: pack inodes shared with the mirror",
        CheckoutMethod.SHARED: "alternates: breaks when the mirror prunes",
        CheckoutMethod.UPLOAD_PACK: "plain `git clone file://` of the mirror",
    }
    found = [Candidate(BASELINE, baseline, note="plain local `git clone` of the origin")]
    for m in CheckoutMethod:
        default = " (default)" if m is DEFAULT_METHOD else ""
        found.append(Candidate(f"checkout {m.value}{default}", method(m), note=notes[m]))
    found += [
        Candidate("bench: git worktree add", worktree, worktree_undo,
                  note="NOT independent: state and objects in the mirror"),
        Candidate("bench: cp -a prepared tree", copy_prepared,
                  note="needs a prepared tree per commit"),
        Candidate("bench: overlayfs on prepared tree", overlay, overlay_undo,
                  note="mount; needs a prepared tree per commit"),
    ]
    return found


async def time_round(candidate: Candidate, dest: Path, commit: str) -> None:
    await _sync()
    started = time.perf_counter()
    try:
        await candidate.make(dest)
    except Exception as exc:  # noqa: BLE001 - reported in the table, the other candidates go on
        candidate.failure = str(exc).splitlines()[0][:70]
        await _remove(dest)
        return
    candidate.made.append(dest)
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    status = await git.run_git("status", "--porcelain", cwd=dest)
    status_elapsed = time.perf_counter() - started
    head = (await git.run_git("rev-parse", "HEAD", cwd=dest)).strip()
    if status.strip() or head != commit:
        candidate.failure = f"not a clean checkout of {commit[:10]}"
    candidate.times.append(elapsed)
    candidate.status_times.append(status_elapsed)


async def release(found: list[Candidate]) -> None:
    for c in found:
        for dest in c.made if c.undo else ():
            await c.undo(dest)
        c.made.clear()


def print_table(found: list[Candidate]) -> None:
    def ready(c: Candidate) -> float:
        return statistics.median(t + s for t, s in zip(c.times, c.status_times, strict=True))

    base = statistics.median(found[0].times) if found[0].times else float("nan")
    base_ready = ready(found[0]) if found[0].times else float("nan")
    header = (f"{'candidate':36} {'median s':>8} {'min s':>7} {'ratio':>6} {'status s':>8} "
              f"{'ready':>6}  note")
    print(header)
    print("-" * len(header))
    for c in found:
        if not c.times:
            print(f"{c.name:36} {'unavailable':>40}  {c.failure}")
            continue
        median = statistics.median(c.times)
        note = c.note if not c.failure else f"FAILED: {c.failure}"
        print(f"{c.name:36} {median:8.3f} {min(c.times):7.3f} {median / base:5.2f}x "
              f"{statistics.median(c.status_times):8.3f} {ready(c) / base_ready:5.2f}x  {note}")


async def second_workspace(origin: Path, url: str, data_dir: Path, mirror: Path, work: Path,
                           commit: str) -> None:
    """Move the origin away; workspaces still check out from the mirror, and a refresh fails."""
    moved = origin.with_name(origin.name + ".unreachable")
    origin.rename(moved)
    try:
        try:
            await git.ensure_mirror(data_dir, "bench", url)
            refresh = "refresh of the mirror SUCCEEDED: the origin is still reachable?"
        except git.GitError as exc:
            refresh = f"refresh of the mirror fails as it should: {exc.stderr.splitlines()[0][:70]}"
        print(f"\nsecond workspace, origin moved away ({refresh})")
        for name in ("workspace-2", "workspace-3"):
            dest = work / name
            await _sync()
            result = await checkout(mirror, dest, BRANCH, origin_url=url)
            ok = result.commit == commit and not (await git.run_git("status", "--porcelain", cwd=dest))
            print(f"  {name}: {result.method.value} checkout in {result.seconds:.3f} s, "
                  f"{'clean checkout of ' + commit[:10] if ok else 'WRONG CHECKOUT'}")
    finally:
        moved.rename(origin)


async def main(files: int, runs: int, base_dir: Path) -> None:
    root = base_dir / "replicas-checkout-bench"
    root.mkdir(parents=True, exist_ok=True)
    origin = await make_origin(root, files)
    url = git.normalize_url(str(origin))
    data_dir = root / f"data-{files}"
    work = root / "runs"
    await _remove(work)
    work.mkdir()
    fresh = not git.mirror_path(data_dir, "bench").exists()
    started = time.perf_counter()
    mirror = await git.ensure_mirror(data_dir, "bench", url)
    print(f"ensure_mirror ({'clone --mirror' if fresh else 'refresh: fetch --prune'}): "
          f"{time.perf_counter() - started:.3f} s")
    commit = (await git.run_git("rev-parse", BRANCH, cwd=mirror)).strip()
    prepared = work / "prepared"
    await checkout(mirror, prepared, BRANCH, origin_url=url)
    await git.run_git("status", "--porcelain", cwd=prepared)  # settle the index once

    version = (await git.run_git("--version")).strip()
    print(f"{files} files, {runs} runs, {version}, {os.cpu_count()} CPUs, work dir {work}\n")
    found = candidates(origin, url, mirror, work, prepared)
    try:
        for run in range(runs):
            order = found[run % len(found):] + found[:run % len(found)]
            for number, c in enumerate(order):
                if c.failure and not c.times:
                    continue
                await time_round(c, work / f"run{run}-{number}", commit)
        print_table(found)
        await second_workspace(origin, url, data_dir, mirror, work, commit)
    finally:
        await release(found)
        await _remove(work)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the cached repository and the checkouts go (one filesystem)")
    args = parser.parse_args()
    asyncio.run(main(args.files, args.runs, args.dir))


if __name__ == "__main__":
    cli()
