"""Git status and diffs for the repositories checked out under `~/workspaces`.

Each repository's diff is taken against the merge base of HEAD and its default branch, so committed
work on a feature branch counts as well as edits in the working tree; untracked files are included as
added files (read through `git diff --no-index`, which touches neither the index nor the tree).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}


async def _git(cwd: Path, *args: str, ok_codes=(0,)) -> str:
    process = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env={**os.environ, **_GIT_ENV}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, _ = await process.communicate()
    if process.returncode not in ok_codes:
        return ""
    return stdout.decode(errors="replace")


def discover(workspaces_dir: Path) -> list[Path]:
    """Repositories are the git checkouts directly under `~/workspaces`."""
    if not workspaces_dir.is_dir():
        return []
    return sorted(p for p in workspaces_dir.iterdir() if (p / ".git").exists())


async def default_branch(repo: Path) -> str:
    ref = (await _git(repo, "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD")).strip()
    if ref:
        return ref.rsplit("/", 1)[-1]
    configured = (await _git(repo, "config", "--get", "replicas.defaultBranch")).strip()
    return configured or "main"


async def _base(repo: Path, branch: str) -> str | None:
    for candidate in (f"origin/{branch}", branch):
        base = (await _git(repo, "merge-base", "HEAD", candidate)).strip()
        if base:
            return base
    head = (await _git(repo, "rev-parse", "--verify", "--quiet", "HEAD")).strip()
    return head or None


def _count(numstat: str) -> tuple[int, int]:
    added = removed = 0
    for line in numstat.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            added, removed = added + int(parts[0]), removed + int(parts[1])
    return added, removed


async def repo_state(repo: Path, *, include_diff: bool, pr_urls: list[str] | None = None,
                     pull_requests: list[dict] | None = None, start_hooks_completed: bool = False) -> dict:
    """The contract's EngineRepoState for one checkout. `pull_requests` (`[{number, url, branch}]`, as
    `publish.Publisher.pull_requests` gives them) add their URLs to `prUrls` and, when there are any,
    appear as the extra field `pullRequests` (the control plane's `pull_requests` come from it)."""
    branch = await default_branch(repo)
    current = (await _git(repo, "rev-parse", "--abbrev-ref", "HEAD")).strip() or branch
    base = await _base(repo, branch)
    diff_args = [base] if base else []
    numstat = await _git(repo, "diff", "--numstat", *diff_args)
    full = await _git(repo, "diff", *diff_args) if include_diff else ""
    untracked = [f for f in (await _git(repo, "ls-files", "--others", "--exclude-standard", "-z")).split("\0") if f]
    added, removed = _count(numstat)
    for name in untracked:
        out = await _git(repo, "diff", "--no-index", "--numstat", "/dev/null", name, ok_codes=(0, 1))
        a, r = _count(out)
        added, removed = added + a, removed + r
        if include_diff:
            full += await _git(repo, "diff", "--no-index", "/dev/null", name, ok_codes=(0, 1))
    git_diff: dict = {"added": added, "removed": removed}
    if include_diff:
        git_diff["fullDiff"] = full
    urls = list(pr_urls or [])
    urls += [pr["url"] for pr in pull_requests or [] if pr["url"] not in urls]
    state = {
        "name": repo.name,
        "path": str(repo),
        "defaultBranch": branch,
        "currentBranch": current,
        "prUrls": urls,
        "gitDiff": git_diff,
        "startHooksCompleted": start_hooks_completed,
    }
    if pull_requests:
        state["pullRequests"] = [{"number": pr["number"], "url": pr["url"], "branch": pr["branch"]}
                                 for pr in pull_requests]
    return state
